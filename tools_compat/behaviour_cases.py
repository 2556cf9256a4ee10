"""The public-API calls that ``behaviour_diff.py`` runs under the ORIGINAL petastorm 0.12.1 and under ours.

The same code runs under both libraries: every case is a function of a :class:`Ctx` (where the datasets
are) that calls only the public API and returns a JSON-able description of what it observed (value types,
counts). A case that raises is an observation too: its exception is described by built-in bases and the
lead of its message. The datasets are written once, with OUR ``petastorm.write_dataset``, by
:func:`build_datasets`; both libraries read the same files.

``behaviour_diff.py`` imports this module in a subprocess of each library's venv (``python -P``, from
outside the repository, so that the rebuild's ``./petastorm`` does not shadow the original) and runs the
cases there; this module imports petastorm only inside functions.
"""
from __future__ import annotations

import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable

CASES: dict[str, Callable[["Ctx"], Any]] = {}
#: why a case may differ on purpose (e.g. a 0.13 behaviour that 0.12.1 lacks); shown beside the difference.
NOTES: dict[str, str] = {}


def case(name: str, note: str = "") -> Callable:
    """Register a case under ``name``."""
    def deco(fn: Callable) -> Callable:
        CASES[name] = fn
        if note:
            NOTES[name] = note
        return fn
    return deco


class Ctx:
    """Where the datasets are, a scratch folder, and the step of the case that is running."""

    def __init__(self, datasets: Path, scratch: Path) -> None:
        self.datasets = datasets
        self.scratch = scratch
        self.stage = "call"

    def url(self, name: str) -> str:
        return (self.datasets / name).as_uri()

    def files(self, name: str) -> list[str]:
        """The ``file://`` URLs of the Parquet files of dataset ``name``, sorted."""
        return [p.as_uri() for p in sorted((self.datasets / name).rglob("*.parquet"))]


# ---------------------------------------------------------------------------------------------------------
# Schemas and datasets (the datasets are written with OUR library only)
# ---------------------------------------------------------------------------------------------------------

N_CODEC_ROWS = 4
N_IDS_ROWS = 100
IDS_ROWS_PER_FILE = 10


def codec_schema():
    """One field per codec and scalar type, and two nullable fields."""
    import numpy as np
    from pyspark.sql import types as T

    from petastorm.codecs import CompressedImageCodec, CompressedNdarrayCodec, NdarrayCodec, ScalarCodec
    from petastorm.unischema import Unischema, UnischemaField

    def scalar(name, np_type, spark_type, nullable=False):
        return UnischemaField(name, np_type, (), ScalarCodec(spark_type), nullable)

    return Unischema("CodecSchema", [
        scalar("id", np.int64, T.LongType()),
        scalar("i8", np.int8, T.ByteType()),
        scalar("i16", np.int16, T.ShortType()),
        scalar("i32", np.int32, T.IntegerType()),
        scalar("i64", np.int64, T.LongType()),
        scalar("f32", np.float32, T.FloatType()),
        scalar("f64", np.float64, T.DoubleType()),
        scalar("flag", np.bool_, T.BooleanType()),
        scalar("text", np.str_, T.StringType()),
        scalar("blob", np.bytes_, T.BinaryType()),
        scalar("dec", Decimal, T.DecimalType(10, 3)),
        scalar("day", np.datetime64, T.DateType()),
        scalar("ts", np.datetime64, T.TimestampType()),
        UnischemaField("nd", np.float32, (2, 3), NdarrayCodec(), False),
        UnischemaField("cnd", np.float64, (3,), CompressedNdarrayCodec(), False),
        UnischemaField("png", np.uint8, (8, 6, 3), CompressedImageCodec("png"), False),
        UnischemaField("jpeg", np.uint8, (8, 6, 3), CompressedImageCodec("jpeg"), False),
        scalar("maybe", np.int32, T.IntegerType(), nullable=True),
        scalar("maybe_text", np.str_, T.StringType(), nullable=True),
    ])


def ids_schema():
    """``id`` and ``ts`` (= id) int64, ``part`` a string (``p0``..``p2``)."""
    import numpy as np
    from pyspark.sql import types as T

    from petastorm.codecs import ScalarCodec
    from petastorm.unischema import Unischema, UnischemaField

    return Unischema("IdsSchema", [
        UnischemaField("id", np.int64, (), ScalarCodec(T.LongType()), False),
        UnischemaField("ts", np.int64, (), ScalarCodec(T.LongType()), False),
        UnischemaField("part", np.str_, (), ScalarCodec(T.StringType()), False),
    ])


def _codec_row(i: int) -> dict:
    import numpy as np
    rng = np.random.default_rng(i)
    return {"id": i, "i8": i, "i16": i, "i32": i, "i64": i, "f32": i / 2, "f64": i / 4, "flag": i % 2 == 0,
            "text": f"row_{i}", "blob": b"\x00b" + bytes([i]), "dec": Decimal(i) / Decimal(1000),
            "day": datetime.date(2020, 1, 1 + i), "ts": datetime.datetime(2020, 1, 1, 0, 0, i),
            "nd": np.full((2, 3), i, np.float32), "cnd": np.arange(3, dtype=np.float64) + i,
            "png": rng.integers(0, 255, (8, 6, 3), dtype=np.uint8),
            "jpeg": rng.integers(0, 255, (8, 6, 3), dtype=np.uint8),
            "maybe": None if i == 0 else i, "maybe_text": None if i == 0 else f"m{i}"}


def build_datasets(out: Path) -> None:
    """Write the datasets of the cases under ``out`` with OUR ``petastorm.write_dataset`` and pyarrow.

    - ``codecs``: :func:`codec_schema`, 4 rows in one file (row 0: ``None`` in the nullable fields).
    - ``ids``: :func:`ids_schema`, 100 rows, 10 files of one 10-row row group each.
    - ``parts``: :func:`ids_schema`, 12 rows, Hive-partitioned by ``part``.
    - ``plain``: a Parquet store without Petastorm metadata (pyarrow), 10 rows in 2 row groups.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from petastorm import write_dataset

    out.mkdir(parents=True, exist_ok=True)
    write_dataset((out / "codecs").as_uri(), codec_schema(), [_codec_row(i) for i in range(N_CODEC_ROWS)],
                  progress=False, workers_count=1)
    ids = [{"id": i, "ts": i, "part": f"p{i % 3}"} for i in range(N_IDS_ROWS)]
    write_dataset((out / "ids").as_uri(), ids_schema(), ids, progress=False, workers_count=1,
                  rows_per_file=IDS_ROWS_PER_FILE)
    write_dataset((out / "parts").as_uri(), ids_schema(), ids[:12], progress=False, workers_count=1,
                  partition_by=["part"])
    (out / "plain").mkdir(exist_ok=True)
    pq.write_table(pa.table({"id": pa.array(range(10), pa.int64()),
                             "value": pa.array([i / 2 for i in range(10)], pa.float64()),
                             "name": pa.array([f"row_{i}" for i in range(10)], pa.string())}),
                   out / "plain" / "part-00000.parquet", row_group_size=5)


# ---------------------------------------------------------------------------------------------------------
# Describing what was observed
# ---------------------------------------------------------------------------------------------------------


def describe_value(v: Any) -> str:
    """``'ndarray[float32](2, 3)'``, ``'str_'``, ``'int64'``, ``'Decimal'``, ``'None'``; object arrays also
    name the type of their first element (``'ndarray[object](4,) of str'``)."""
    import numpy as np
    if v is None:
        return "None"
    if isinstance(v, np.ndarray):
        d = f"ndarray[{v.dtype}]{tuple(v.shape)}"
        if v.dtype == object and v.size:
            d += f" of {describe_value(v.flat[0])}"
        return d
    if isinstance(v, np.generic) and v.dtype.kind in "mM":
        return f"{type(v).__name__}[{v.dtype}]"
    if isinstance(v, np.bool_):
        return "bool_"  # numpy 2 renamed the type's __name__ to 'bool'; numpy 1 (the original's) says 'bool_'
    return type(v).__name__


def describe_record(item: Any) -> dict:
    """Type of a row or batch (namedtuple) and of each of its fields; of an ngram (dict of offset -> row),
    its offsets and its first row."""
    if isinstance(item, dict):
        return {"type": "dict", "keys": sorted(item),
                "first": describe_record(item[min(item)]) if item else None}
    fields = getattr(item, "_fields", None)
    if fields is None:
        return {"type": type(item).__name__}
    return {"type": "namedtuple", "namedtuple_name": type(item).__name__,
            "fields": {f: describe_value(getattr(item, f)) for f in fields}}




# ---------------------------------------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------------------------------------

DUMMY = {"reader_pool_type": "dummy", "shuffle_row_groups": False}


def _readers() -> dict:
    from petastorm import make_batch_reader, make_reader
    return {"make_reader": make_reader, "make_batch_reader": make_batch_reader}


def _read_all(ctx: Ctx, entry: str, url: Any, **kwargs) -> dict:
    """Construct ``entry`` on ``url``, read to the end: items yielded, rows in them, the first one's types."""
    ctx.stage = "construct"
    with _readers()[entry](url, **{**DUMMY, **kwargs}) as reader:
        ctx.stage = "iterate"
        items, rows, first = 0, 0, None
        for item in reader:
            if first is None:
                first = describe_record(item)
            items += 1
            rows += len(item[0]) if entry == "make_batch_reader" else 1
    return {"items": items, "rows": rows, "first": first}


for _entry in ("make_reader", "make_batch_reader"):
    def _register(entry: str = _entry) -> None:
        @case(f"values/{entry}/codecs")
        def values_codecs(ctx: Ctx) -> dict:
            """Type of every field of the first row (batch) of the codec dataset (row 0 holds the Nones)."""
            ctx.stage = "construct"
            with _readers()[entry](ctx.url("codecs"), **DUMMY) as reader:
                ctx.stage = "iterate"
                first = next(reader)
                if entry == "make_reader":
                    second = next(reader)
                    return {"row0": describe_record(first),
                            "row1 nullables": {f: describe_value(getattr(second, f))
                                               for f in ("maybe", "maybe_text")}}
                return describe_record(first)

        @case(f"plain_store/{entry}")
        def plain_store(ctx: Ctx) -> dict:
            """A Parquet store without Petastorm metadata."""
            return _read_all(ctx, entry, ctx.url("plain"))

        @case(f"single_file_url/{entry}")
        def single_file(ctx: Ctx) -> dict:
            """The URL of one Parquet file (10 rows) of a Petastorm dataset."""
            return _read_all(ctx, entry, ctx.files("ids")[0])

        @case(f"file_url_list_same_twice/{entry}")
        def same_twice(ctx: Ctx) -> dict:
            """A list of file URLs: the same 10-row file listed twice."""
            f0 = ctx.files("ids")[0]
            return _read_all(ctx, entry, [f0, f0])

        @case(f"file_url_list_two_files/{entry}")
        def two_files(ctx: Ctx) -> dict:
            """A list of two distinct 10-row file URLs."""
            return _read_all(ctx, entry, ctx.files("ids")[:2])

        @case(f"predicate_excludes_all_row_groups/{entry}")
        def excludes_all(ctx: Ctx) -> dict:
            """A predicate on the partition key that no partition matches."""
            from petastorm.predicates import in_lambda
            return _read_all(ctx, entry, ctx.url("parts"),
                             predicate=in_lambda(["part"], lambda p: p == "none"))

        @case(f"predicate_in_lambda/{entry}")
        def in_lambda_case(ctx: Ctx) -> dict:
            """``in_lambda(['id'], lambda v: v < 5)`` on the 100-row dataset."""
            from petastorm.predicates import in_lambda
            return _read_all(ctx, entry, ctx.url("ids"), predicate=in_lambda(["id"], lambda v: v < 5))

        for _bad in (None, 123, []):
            @case(f"bad_url/{entry}({_bad!r})")
            def bad_url(ctx: Ctx, bad: Any = _bad) -> dict:
                return _read_all(ctx, entry, bad)

    _register()


@case("values/ReaderMock/codec_row")
def reader_mock(ctx: Ctx) -> dict:
    """A row of ``ReaderMock`` over the codec schema, fed a row of the codec dataset."""
    from petastorm.test_util.reader_mock import ReaderMock
    return describe_record(next(iter(ReaderMock(codec_schema(), lambda schema: _codec_row(1)))))


@case("predicate/make_batch_reader/what_it_receives")
def predicate_receives(ctx: Ctx) -> dict:
    """What a ``PredicateBase`` subclass's ``do_include`` gets from ``make_batch_reader``."""
    from petastorm.predicates import PredicateBase
    seen: dict = {}

    class Recording(PredicateBase):
        def get_fields(self):
            return {"id"}

        def do_include(self, values):
            if not seen:
                seen["type"] = type(values).__name__
                seen["len"] = len(values) if hasattr(values, "__len__") else "no len"
                column = values["id"] if hasattr(values, "__getitem__") else None
                seen["values['id']"] = describe_value(column) if column is not None else "not subscriptable"
            return values["id"] < 5

    out = _read_all(ctx, "make_batch_reader", ctx.url("ids"), predicate=Recording())
    return {"received": seen, "rows": out["rows"]}


def _ngram(fields: list, delta: int = 1, offsets: int = 5, timestamp: str = "ts"):
    from petastorm.ngram import NGram
    schema = ids_schema()
    return NGram({k: [schema.fields[f] for f in fields] for k in range(offsets)}, delta_threshold=delta,
                 timestamp_field=schema.fields[timestamp])


for _drop in (1, 2):
    @case(f"ngram/count/shuffle_row_drop_partitions={_drop}")
    def ngram_count(ctx: Ctx, drop: int = _drop) -> dict:
        """5-step NGram on 100 rows in 10 row groups of 10 (6 ngrams per row group)."""
        out = _read_all(ctx, "make_reader", ctx.url("ids"), schema_fields=_ngram(["id", "ts"]),
                        shuffle_row_drop_partitions=drop)
        return {"ngrams": out["items"], "first": out["first"]}


@case("ngram/equality")
def ngram_equality(ctx: Ctx) -> dict:
    a, b = _ngram(["id", "ts"]), _ngram(["id", "ts"])
    return {"same ==": a == b, "same !=": a != b, "other delta ==": a == _ngram(["id", "ts"], delta=2),
            "other fields ==": a == _ngram(["ts"]), "other length ==": a == _ngram(["id", "ts"], offsets=4),
            "other timestamp_field ==": a == _ngram(["id", "ts"], timestamp="id")}


for _entry in ("make_reader", "make_batch_reader"):
    @case(f"reader/convert_early_to_numpy/{_entry}", note="0.13 argument, absent from 0.12.1")
    def convert_early(ctx: Ctx, entry: str = _entry) -> dict:
        return _read_all(ctx, entry, ctx.url("ids"), convert_early_to_numpy=True)


@case("reader/local_disk_cache_removed_on_exit", note="0.13 cleanup_cache behaviour, absent from 0.12.1")
def cache_cleanup(ctx: Ctx) -> dict:
    location = ctx.scratch / "cache"
    out = _read_all(ctx, "make_reader", ctx.url("ids"), cache_type="local-disk", cache_location=str(location),
                    cache_size_limit=10 ** 8, cache_row_size_estimate=100)
    return {"rows": out["rows"], "cache dir exists after exit": location.exists()}


@case("get_schema_from_dataset_url/path_without_scheme_missing")
def schema_no_scheme(ctx: Ctx) -> Any:
    from petastorm.etl.dataset_metadata import get_schema_from_dataset_url
    return sorted(get_schema_from_dataset_url("/path/without/scheme").fields)


@case("get_schema_from_dataset_url/path_without_scheme_existing")
def schema_no_scheme_existing(ctx: Ctx) -> Any:
    from petastorm.etl.dataset_metadata import get_schema_from_dataset_url
    return sorted(get_schema_from_dataset_url(str(ctx.datasets / "ids")).fields)


@case("get_schema_from_dataset_url/missing_path")
def schema_missing(ctx: Ctx) -> Any:
    from petastorm.etl.dataset_metadata import get_schema_from_dataset_url
    return sorted(get_schema_from_dataset_url((ctx.scratch / "missing").as_uri()).fields)


def _int_field(name: str = "x", shape: tuple = (), nullable: bool = False):
    import numpy as np
    from pyspark.sql.types import IntegerType

    from petastorm.codecs import ScalarCodec
    from petastorm.unischema import UnischemaField
    return UnischemaField(name, np.int32, shape, ScalarCodec(IntegerType()), nullable)


@case("codec/scalar_codec_non_empty_shape")
def scalar_shape(ctx: Ctx) -> Any:
    """A ScalarCodec field of shape (2,): made, put in a schema, mapped to Spark, a scalar encoded."""
    from petastorm.unischema import Unischema, dict_to_spark_row
    ctx.stage = "UnischemaField"
    field = _int_field(shape=(2,))
    ctx.stage = "Unischema"
    schema = Unischema("S", [field])
    ctx.stage = "as_spark_schema"
    schema.as_spark_schema()
    ctx.stage = "codec.encode"
    field.codec.encode(field, 1)
    ctx.stage = "dict_to_spark_row"
    return repr(dict_to_spark_row(schema, {"x": 1}))


@case("codec/scalar_codec_encode_non_scalar")
def scalar_non_scalar(ctx: Ctx) -> Any:
    import numpy as np
    field = _int_field()
    return repr(field.codec.encode(field, np.array([1, 2], np.int32)))


def _encode_image(shape: tuple, dtype: str) -> str:
    import numpy as np

    from petastorm.codecs import CompressedImageCodec
    from petastorm.unischema import UnischemaField
    field = UnischemaField("img", np.uint8, (8, 6, 3), CompressedImageCodec("png"), False)
    return type(field.codec.encode(field, np.zeros(shape, dtype))).__name__


@case("codec/image_wrong_shape")
def image_shape(ctx: Ctx) -> Any:
    return _encode_image((4, 4, 3), "uint8")


@case("codec/image_wrong_dtype")
def image_dtype(ctx: Ctx) -> Any:
    return _encode_image((8, 6, 3), "float32")


def _to_row(row: dict) -> Any:
    from petastorm.unischema import dict_to_spark_row
    out = dict_to_spark_row(ids_schema(), row).asDict()
    return {k: describe_value(v) for k, v in out.items()}


@case("dict_to_spark_row/none_in_non_nullable")
def row_none(ctx: Ctx) -> Any:
    return _to_row({"id": None, "ts": 1, "part": "p"})


@case("dict_to_spark_row/str_in_int_field")
def row_str_in_int(ctx: Ctx) -> Any:
    return _to_row({"id": "abc", "ts": 1, "part": "p"})


@case("dict_to_spark_row/int_in_str_field")
def row_int_in_str(ctx: Ctx) -> Any:
    return _to_row({"id": 1, "ts": 1, "part": 5})


@case("dict_to_spark_row/list_in_int_field")
def row_list_in_int(ctx: Ctx) -> Any:
    return _to_row({"id": [1], "ts": 1, "part": "p"})


@case("dict_to_spark_row/missing_nullable_field")
def row_missing_nullable(ctx: Ctx) -> Any:
    from petastorm.unischema import Unischema, dict_to_spark_row
    schema = Unischema("S", [_int_field("x"), _int_field("y", nullable=True)])
    out = dict_to_spark_row(schema, {"x": 1}).asDict()
    return {k: describe_value(v) for k, v in out.items()}


@case("dict_to_spark_row/missing_non_nullable_field")
def row_missing_required(ctx: Ctx) -> Any:
    from petastorm.unischema import Unischema, dict_to_spark_row
    schema = Unischema("S", [_int_field("x"), _int_field("y", nullable=True)])
    return repr(dict_to_spark_row(schema, {"y": 1}))


for _arg in (123, [123]):
    @case(f"create_schema_view({_arg!r})")
    def schema_view(ctx: Ctx, arg: Any = _arg) -> Any:
        return sorted(ids_schema().create_schema_view(arg).fields)


@case("as_spark_schema/fields_without_codec")
def spark_no_codec(ctx: Ctx) -> Any:
    """Scalar fields without a codec: np.str_, np.bytes_, np.int32, np.float64."""
    import numpy as np

    from petastorm.unischema import Unischema, UnischemaField
    schema = Unischema("S", [UnischemaField(n, t, (), None, False)
                             for n, t in (("s", np.str_), ("b", np.bytes_), ("i", np.int32),
                                          ("f", np.float64))])
    return {f.name: f.dataType.simpleString() for f in schema.as_spark_schema().fields}


@case("as_spark_schema/non_scalar_without_codec")
def spark_non_scalar(ctx: Ctx) -> Any:
    import numpy as np

    from petastorm.unischema import Unischema, UnischemaField
    return repr(Unischema("S", [UnischemaField("a", np.int32, (3,), None, False)]).as_spark_schema())


@case("as_spark_schema/unmappable_type")
def spark_unmappable(ctx: Ctx) -> Any:
    import numpy as np

    from petastorm.unischema import Unischema, UnischemaField
    return repr(Unischema("S", [UnischemaField("c", np.complex64, (), None, False)]).as_spark_schema())


# Differences kept on purpose (each explained in docs/migration.md): shown beside the case in the table.
NOTES.update({
    "values/make_batch_reader/codecs": "kept: codec fields decoded, nullable columns hold None, no make_reader warning",
    "predicate_excludes_all_row_groups/make_batch_reader": "kept: no 'Please use make_reader' warning",
    "predicate_in_lambda/make_batch_reader": "kept: int columns stay int64 (the original's became float64), no "
                                             "'Please use make_reader' warning",
    "predicate/make_batch_reader/what_it_receives": "kept: no 'Please use make_reader' warning",
    "ngram/equality": "kept: issue 10 asks == to compare delta_threshold and timestamp_field",
})
