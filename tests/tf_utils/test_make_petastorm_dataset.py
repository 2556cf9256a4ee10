"""petastorm.tf_utils.make_petastorm_dataset in TensorFlow 2 (eager, tf.function, Keras 3).

Expected values marked "recorded" were recorded from the original petastorm 0.12.1 (with TensorFlow 2.16.2,
numpy 1.26) on the same datasets, through its public API. TF1 graph mode (tf_tensors, make_one_shot_iterator
in a Session) is tested in a subprocess in tests/tf_utils/test_graph_mode.py.
"""
import datetime
import os
import subprocess
import sys
import threading
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tensorflow as tf
from _fixtures.datasets import write_synthetic_dataset

from petastorm import TransformSpec, make_batch_reader, make_reader
from petastorm.codecs import CompressedImageCodec, CompressedNdarrayCodec, NdarrayCodec, ScalarCodec
from petastorm.errors import PetastormArgumentError, PetastormReaderError, PetastormSchemaError
from petastorm.ngram import NGram
from petastorm.spark_types import spark_type
from petastorm.test_util.reader_mock import ReaderMock
from petastorm.tf_utils import make_petastorm_dataset, tf_tensors
from petastorm.unischema import Unischema, UnischemaField

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def _s(name, *args):
    return ScalarCodec(spark_type(name, *args))


AllTypes = Unischema("AllTypes", [
    UnischemaField("id", np.int64, (), _s("LongType"), False),
    UnischemaField("b", np.bool_, (), _s("BooleanType"), False),
    UnischemaField("i8", np.int8, (), _s("ByteType"), False),
    UnischemaField("i16", np.int16, (), _s("ShortType"), False),
    UnischemaField("i32", np.int32, (), _s("IntegerType"), False),
    UnischemaField("u8", np.uint8, (), _s("ShortType"), False),
    UnischemaField("u16", np.uint16, (), _s("IntegerType"), False),
    UnischemaField("u32", np.uint32, (), _s("LongType"), False),
    UnischemaField("f32", np.float32, (), _s("FloatType"), False),
    UnischemaField("f64", np.float64, (), _s("DoubleType"), False),
    UnischemaField("s", np.str_, (), _s("StringType"), False),
    UnischemaField("by", np.bytes_, (), _s("BinaryType"), False),
    UnischemaField("dec", Decimal, (), _s("DecimalType", 10, 3), False),
    UnischemaField("ts", np.datetime64, (), _s("TimestampType"), False),
    UnischemaField("dt", np.datetime64, (), _s("DateType"), False),
    UnischemaField("a_u16", np.uint16, (3,), NdarrayCodec(), False),
    UnischemaField("a_f32", np.float32, (2, 3), NdarrayCodec(), False),
    UnischemaField("a_b", np.bool_, (2,), NdarrayCodec(), False),
    UnischemaField("a_i8", np.int8, (2,), CompressedNdarrayCodec(), False),
    UnischemaField("var", np.int32, (None,), NdarrayCodec(), False),
    UnischemaField("var2", np.float64, (None, 2), NdarrayCodec(), False),
    UnischemaField("img", np.uint8, (4, 5, 3), CompressedImageCodec("png"), False),
    UnischemaField("a_str", np.str_, (2,), NdarrayCodec(), False),
])


def all_types_row(i):
    return dict(id=i, b=bool(i % 2), i8=i - 5, i16=i * 100, i32=i * 1000, u8=200 + i, u16=60000 + i,
                u32=4000000000 + i, f32=i / 2, f64=i / 4, s=f"s{i}", by=b"b%d" % i, dec=Decimal(i) / Decimal(1000),
                ts=datetime.datetime(2020, 1, 1, 0, 0, i, 1), dt=datetime.date(2020, 1, 1 + i),
                a_u16=np.array([60000, i, 1], np.uint16), a_f32=np.full((2, 3), i, np.float32),
                a_b=np.array([True, i % 2 == 0]), a_i8=np.array([i, -i], np.int8),
                var=np.arange(i % 4, dtype=np.int32), var2=np.ones((i % 3, 2)),
                img=np.full((4, 5, 3), i, np.uint8), a_str=np.array(["x", str(i)]))


Nullable = Unischema("Nullable", [
    UnischemaField("id", np.int64, (), _s("LongType"), False),
    UnischemaField("maybe", np.int32, (), _s("IntegerType"), True),
    UnischemaField("maybe_s", np.str_, (), _s("StringType"), True),
])

DecimalSchema = Unischema("Dec", [UnischemaField("id", np.int64, (), _s("LongType"), False),
                                  UnischemaField("dec", Decimal, (), _s("DecimalType", 10, 3), False)])
DECIMALS = ["0", "1.5", "100", "-2.25", "12345.678", "0.001", "10", "7.000"]

SCALARS = ["id", "b", "i8", "i16", "i32", "u8", "u16", "u32", "f32", "f64", "s", "by", "dec", "ts", "dt"]


def write_tf_datasets(root):
    """The datasets of these tests (and of test_graph_mode.py); returns {name: url}."""
    urls = {
        "all": write_synthetic_dataset(os.path.join(root, "all"), rows=10, rows_per_group=5, groups_per_file=1,
                                       schema=AllTypes, row_fn=all_types_row),
        "nul": write_synthetic_dataset(
            os.path.join(root, "nul"), rows=9, rows_per_group=9, groups_per_file=1, schema=Nullable,
            row_fn=lambda i: dict(id=i, maybe=None if i % 3 == 0 else i, maybe_s=None if i % 3 == 1 else f"s{i}")),
        "dec": write_synthetic_dataset(os.path.join(root, "dec"), rows=len(DECIMALS), rows_per_group=len(DECIMALS),
                                       groups_per_file=1, schema=DecimalSchema,
                                       row_fn=lambda i: {"id": i, "dec": Decimal(DECIMALS[i])}),
        "syn": write_synthetic_dataset(os.path.join(root, "syn"), rows=20, rows_per_group=10, groups_per_file=1),
    }
    plain = os.path.join(root, "plain")
    os.makedirs(plain)
    table = pa.table({
        "id": pa.array(range(10), pa.int64()), "f": pa.array(np.arange(10) / 3, pa.float32()),
        "u16": pa.array(np.arange(10, dtype=np.uint16)), "bo": pa.array([i % 2 == 0 for i in range(10)]),
        "st": pa.array([f"x{i}" for i in range(10)]), "bi": pa.array([b"y%d" % i for i in range(10)]),
        "de": pa.array([Decimal(i) for i in range(10)], pa.decimal128(5, 1)),
        "ts": pa.array(np.arange(10).astype("datetime64[ms]")), "d32": pa.array(np.arange(10).astype("datetime64[D]")),
        "lst": pa.array([[i, i + 1] for i in range(10)], pa.list_(pa.int32())),
        "ragged": pa.array([list(range(i % 3)) for i in range(10)], pa.list_(pa.int64())),
    })
    pq.write_table(table, os.path.join(plain, "p.parquet"), row_group_size=5)
    urls["plain"] = "file://" + plain
    return urls


@pytest.fixture(scope="module")
def urls(tmp_path_factory):
    return write_tf_datasets(str(tmp_path_factory.mktemp("tf_datasets")))


def _spec(ds):
    """{field: (dtype name, shape)} of a namedtuple element spec."""
    return {name: (s.dtype.name, tuple(s.shape.as_list())) for name, s in ds.element_spec._asdict().items()}


def _first(ds):
    return next(iter(ds))


def _rows(url, **kwargs):
    return make_reader(url, reader_pool_type="dummy", shuffle_row_groups=False, **kwargs)


def _batches(url, **kwargs):
    return make_batch_reader(url, reader_pool_type="dummy", shuffle_row_groups=False, **kwargs)


# --- types and element structure --------------------------------------------------------------------------

# recorded from 0.12.1: element_spec of make_petastorm_dataset(make_reader(all))
RECORDED_ROW_SPEC = {
    "id": ("int64", ()), "b": ("bool", ()), "i8": ("int8", ()), "i16": ("int16", ()), "i32": ("int32", ()),
    "u8": ("uint8", ()), "u16": ("int32", ()), "u32": ("int64", ()), "f32": ("float32", ()),
    "f64": ("float64", ()), "s": ("string", ()), "by": ("string", ()), "dec": ("string", ()),
    "ts": ("int64", ()), "dt": ("int64", ()), "a_u16": ("int32", (3,)), "a_f32": ("float32", (2, 3)),
    "a_b": ("bool", (2,)), "a_i8": ("int8", (2,)), "var": ("int32", (None,)), "var2": ("float64", (None, 2)),
    "img": ("uint8", (4, 5, 3)), "a_str": ("string", (2,)),
}


def test_row_dataset_has_the_originals_element_spec_from_the_unischema(urls):
    with _rows(urls["all"]) as reader:
        ds = make_petastorm_dataset(reader)
        assert _spec(ds) == RECORDED_ROW_SPEC
        assert list(ds.element_spec._fields) == list(AllTypes.fields)  # schema order
        element = _first(ds)
        # recorded: the element is a namedtuple named after the reader's schema view ('AllTypes_view')
        assert type(element).__name__ == "AllTypes_view"


def test_row_values_are_converted_as_the_original(urls):
    with _rows(urls["all"]) as reader:
        rows = [{k: v.numpy() for k, v in r._asdict().items()} for r in make_petastorm_dataset(reader)]
    first, second = rows[0], rows[1]
    # recorded from 0.12.1 (row 0 and row 1)
    assert first["u16"] == 60000 and first["u16"].dtype == np.int32
    assert first["u32"] == 4000000000 and first["u32"].dtype == np.int64
    assert first["u8"] == 200 and first["i8"] == -5
    assert first["s"] == b"s0" and first["by"] == b"b0"
    assert first["dec"] == b"0" and second["dec"] == b"0.001"
    assert first["ts"] == 1577836800000001 and second["ts"] == 1577836801000001  # microseconds
    assert first["dt"] == 18262 and second["dt"] == 18263  # days
    np.testing.assert_array_equal(first["a_u16"], np.array([60000, 0, 1], np.int32))
    assert first["a_u16"].dtype == np.int32
    np.testing.assert_array_equal(second["a_b"], [True, False])
    np.testing.assert_array_equal(second["a_i8"], [1, -1])
    assert first["var"].shape == (0,) and first["var2"].shape == (0, 2)
    np.testing.assert_array_equal(second["var2"], [[1.0, 1.0]])
    assert list(second["a_str"]) == [b"x", b"1"]
    assert second["img"].dtype == np.uint8 and (second["img"] == 1).all()
    assert [r["id"] for r in rows] == list(range(10))


def test_batch_dataset_has_a_leading_none_dimension_and_the_originals_values(urls):
    fields = SCALARS + ["a_u16", "a_f32", "a_str", "img"]
    with _batches(urls["all"], schema_fields=fields) as reader:
        ds = make_petastorm_dataset(reader)
        spec = _spec(ds)
        for name in fields:
            dtype, shape = RECORDED_ROW_SPEC[name]
            assert spec[name] == (dtype, (None,) + shape), name  # recorded: (None,) + field shape
        batches = [{k: v.numpy() for k, v in b._asdict().items()} for b in ds]
    assert [len(b["id"]) for b in batches] == [5, 5]
    b = batches[0]
    # recorded from 0.12.1 (first batch)
    assert list(b["u16"]) == [60000, 60001, 60002, 60003, 60004] and b["u16"].dtype == np.int32
    assert list(b["u32"]) == [4000000000 + i for i in range(5)] and b["u32"].dtype == np.int64
    assert list(b["s"]) == [b"s0", b"s1", b"s2", b"s3", b"s4"]
    assert list(b["by"]) == [b"b0", b"b1", b"b2", b"b3", b"b4"]
    assert b["ts"][0] == 1577836800000001000 and b["ts"][1] == 1577836801000001000  # nanoseconds in batches
    assert b["dt"][0] == 1577836800000000000 and b["dt"][1] == 1577923200000000000  # nanoseconds in batches
    # the original failed on Decimal batch columns ('Unsupported object type decimal.Decimal'): we give the
    # row path's strings
    assert list(b["dec"]) == [b"0", b"0.001", b"0.002", b"0.003", b"0.004"]
    assert b["a_f32"].shape == (5, 2, 3) and b["img"].shape == (5, 4, 5, 3)
    assert b["a_str"].tolist() == [[b"x", str(i).encode()] for i in range(5)]


def test_decimals_become_normalized_strings_as_the_original(urls):
    recorded = [b"0", b"1.5", b"1E+2", b"-2.25", b"12345.678", b"0.001", b"1E+1", b"7"]  # recorded from 0.12.1
    with _rows(urls["dec"]) as reader:
        assert [r.dec.numpy() for r in make_petastorm_dataset(reader)] == recorded
    with _batches(urls["dec"]) as reader:
        assert [v for b in make_petastorm_dataset(reader) for v in b.dec.numpy()] == recorded


def test_plain_parquet_store_batches(urls):
    with _batches(urls["plain"], schema_fields=["id", "f", "u16", "bo", "st", "bi", "de", "ts", "d32", "lst"]) as r:
        ds = make_petastorm_dataset(r)
        first = _first(ds)
        # recorded from 0.12.1 (rows of a reader with schema_fields: "<schema>_view_view"; its inferred schema dropped uint16 columns; we read them, widened as in rows)
        assert type(first).__name__ == "inferred_schema_view_view"
        assert _spec(ds) == {"id": ("int64", (None,)), "f": ("float32", (None,)), "u16": ("int32", (None,)),
                             "bo": ("bool", (None,)), "st": ("string", (None,)), "bi": ("string", (None,)),
                             "de": ("string", (None,)), "ts": ("int64", (None,)), "d32": ("int64", (None,)),
                             "lst": ("int32", (None, None))}
        b = {k: v.numpy() for k, v in first._asdict().items()}
    assert list(b["ts"]) == [0, 1000000, 2000000, 3000000, 4000000]  # recorded: ms timestamps as ns
    assert list(b["d32"]) == [i * 86400000000000 for i in range(5)]  # recorded: dates as ns
    assert b["lst"].tolist() == [[i, i + 1] for i in range(5)]  # recorded
    assert list(b["st"]) == [b"x0", b"x1", b"x2", b"x3", b"x4"] and list(b["bo"]) == [True, False] * 2 + [True]
    assert list(b["de"]) == [b"0", b"1", b"2", b"3", b"4"]


def test_ngram_element_is_a_dict_of_namedtuples_per_offset(urls):
    ngram = NGram({-1: ["id", "timestamp", "matrix"], 0: ["id", "name"], 1: ["id", "image"]},
                  delta_threshold=10, timestamp_field="timestamp")
    with _rows(urls["syn"], schema_fields=ngram) as reader:
        ds = make_petastorm_dataset(reader)
        spec = ds.element_spec
        windows = list(ds)
    # recorded from 0.12.1: {offset: namedtuple of that offset's fields}, static shapes per field
    assert sorted(spec) == [-1, 0, 1]
    assert sorted(spec[-1]._fields) == ["id", "matrix", "timestamp"]
    assert sorted(spec[0]._fields) == ["id", "name"] and sorted(spec[1]._fields) == ["id", "image"]
    assert spec[-1].matrix.shape == (4, 3) and spec[1].image.shape == (8, 6, 3) and spec[0].name.dtype == tf.string
    first = windows[0]
    assert [int(first[k].id) for k in (-1, 0, 1)] == [0, 1, 2]  # recorded
    assert [int(windows[1][k].id) for k in (-1, 0, 1)] == [1, 2, 3]  # recorded
    assert first[0].name.numpy() == b"row_1" and first[1].image.dtype == tf.uint8
    assert len(windows) == 16  # 2 row groups of 10 rows: 8 windows of 3 in each


def test_fields_tensorflow_cannot_hold_raise_naming_the_field(urls):
    for dtype in (np.uint64, np.complex64, np.object_, np.timedelta64):
        spec = TransformSpec(lambda r: r, edit_fields=[("odd", dtype, (), False)], selected_fields=["id", "odd"])
        with _rows(urls["all"], transform_spec=spec) as reader:
            with pytest.raises(ValueError) as info:  # recorded: the original raised ValueError at this call
                make_petastorm_dataset(reader)
        assert isinstance(info.value, PetastormSchemaError)
        # recorded words of 0.12.1, then the field's name
        assert f"Unknown mapping of numpy {dtype!r} to tensorflow dtype" in str(info.value)
        assert "'odd'" in str(info.value)


def test_float16_field_is_a_float16_tensor(urls):
    # the original refused float16 ('Unknown mapping'); TensorFlow holds it, so we map it
    spec = TransformSpec(lambda r: {**r, "half": np.float16(r["id"]) / 2}, edit_fields=[("half", np.float16, (), False)],
                         selected_fields=["id", "half"])
    with _rows(urls["all"], transform_spec=spec) as reader:
        halves = [(r.half.dtype, float(r.half)) for r in make_petastorm_dataset(reader)]
    assert halves[3] == (tf.float16, 1.5)


# --- nulls, ragged batches, errors ---------------------------------------------------------------------------

def test_none_in_a_row_raises_the_originals_error_naming_the_field(urls):
    with _rows(urls["nul"]) as reader:
        with pytest.raises(tf.errors.OpError) as info:
            list(make_petastorm_dataset(reader))
    # recorded from 0.12.1: 'Encountered "maybe"=None. Tensorflow does not support None values as a tensor.'
    assert 'Encountered "maybe"=None. Tensorflow does not support None values as a tensor.' in info.value.message
    assert "PetastormSchemaError" in info.value.message


def test_none_in_a_batch_raises_naming_the_field(urls):
    # the original fed pandas' stand-ins (-2147483648, b'None') to the model; we refuse them
    with _batches(urls["nul"], schema_fields=["id", "maybe_s"]) as reader:
        with pytest.raises(tf.errors.OpError, match='Encountered "maybe_s"=None in row 1 of a batch'):
            list(make_petastorm_dataset(reader))


def test_nulls_in_a_float_batch_column_are_nan_as_in_the_original(tmp_path):
    # recorded from 0.12.1 (TF 2.16): a nullable float32 batch column with nulls -> float32 [1.5, nan, 2.5]; an
    # int32 one -> [1, -2147483648, 3] (pandas' NaN cast back: a made-up value, refused here). Before: both raised
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"id": pa.array(range(3), pa.int64()), "nf": pa.array([1.5, None, 2.5], pa.float32()),
                             "nd": pa.array([None, 2.0, 3.0], pa.float64()), "ni": pa.array([1, None, 3], pa.int32())}),
                   str(tmp_path / "p.parquet"))
    with _batches("file://" + str(tmp_path), schema_fields=["id", "nf", "nd"]) as reader:
        batch = next(iter(make_petastorm_dataset(reader)))
    assert batch.nf.dtype == tf.float32 and batch.nd.dtype == tf.float64
    assert np.isnan(batch.nf.numpy()[1]) and batch.nf.numpy()[[0, 2]].tolist() == [1.5, 2.5]
    assert np.isnan(batch.nd.numpy()[0]) and batch.nd.numpy()[1:].tolist() == [2.0, 3.0]
    with _batches("file://" + str(tmp_path), schema_fields=["id", "ni"]) as reader:
        with pytest.raises(tf.errors.OpError, match='Encountered "ni"=None in row 1 of a batch'):
            list(make_petastorm_dataset(reader))


def test_ragged_batch_column_raises_naming_the_field(urls):
    with _batches(urls["plain"], schema_fields=["ragged"]) as reader:
        with pytest.raises(tf.errors.OpError, match="field 'ragged' of shape \\(None,\\) holds values of different"):
            list(make_petastorm_dataset(reader))
    with _batches(urls["all"], schema_fields=["var"]) as reader:
        with pytest.raises(tf.errors.OpError, match="field 'var'"):
            list(make_petastorm_dataset(reader))


def test_a_value_of_another_shape_than_the_schema_raises_naming_the_field(urls):
    spec = TransformSpec(lambda r: {**r, "m": np.zeros(3)}, edit_fields=[("m", np.float64, (2,), False)],
                         selected_fields=["id", "m"])
    with _rows(urls["all"], transform_spec=spec) as reader:
        with pytest.raises(tf.errors.OpError, match="field 'm' has a value of shape \\(3,\\) where the schema says "
                                                    "\\(2,\\)"):
            list(make_petastorm_dataset(reader))


def test_an_error_in_the_reader_reaches_the_loop_and_nothing_is_left_running(urls):
    def boom(row):
        if row["id"] == 3:
            raise ZeroDivisionError("boom in transform")
        return row

    before = threading.active_count()
    with make_reader(urls["all"], reader_pool_type="thread", workers_count=2, schema_fields=["id"],
                     shuffle_row_groups=False, transform_spec=TransformSpec(boom)) as reader:
        seen = []
        with pytest.raises(tf.errors.OpError) as info:
            for row in make_petastorm_dataset(reader):
                seen.append(int(row.id))
    # recorded: the original's message holds the exception's class and words
    assert "ZeroDivisionError" in info.value.message and "boom in transform" in info.value.message
    assert 3 not in seen
    assert threading.active_count() <= before


def test_a_stopped_reader_raises_in_the_loop(urls):
    reader = _rows(urls["all"], schema_fields=["id"])
    ds = make_petastorm_dataset(reader)
    reader.stop()
    reader.join()
    with pytest.raises(tf.errors.OpError, match="has stopped"):
        list(ds)


# --- iteration semantics -----------------------------------------------------------------------------------

def test_iterating_again_after_the_last_row_resets_the_reader(urls):
    with _rows(urls["syn"], schema_fields=["id"]) as reader:
        ds = make_petastorm_dataset(reader)
        first = [int(r.id) for r in ds]
        second = [int(r.id) for r in ds]
        repeated = [int(r.id) for r in ds.repeat(2)]
    # recorded from 0.12.1: 20, 20, 40 rows
    assert first == second == list(range(20))
    assert repeated == list(range(20)) * 2


def test_a_new_iteration_after_a_partial_pass_continues_where_the_reader_is(urls):
    with _rows(urls["syn"], schema_fields=["id"]) as reader:
        ds = make_petastorm_dataset(reader)
        partial = [int(r.id) for r, _ in zip(ds, range(5))]
        rest = [int(r.id) for r in ds]
    # recorded from 0.12.1: [0..4], then a pass that continues (it gave 7..19: rows read ahead are dropped)
    assert partial == [0, 1, 2, 3, 4]
    assert rest and rest[0] > 4 and rest == list(range(rest[0], 20))


def test_an_ended_iterator_stays_ended(urls):
    with _rows(urls["syn"], schema_fields=["id"]) as reader:
        iterator = iter(make_petastorm_dataset(reader))
        assert len(list(iterator)) == 20
        with pytest.raises(StopIteration):  # no silent second pass from the same iterator
            next(iterator)


def test_an_iterator_abandoned_mid_pass_leaves_no_thread(urls):
    before = {t.ident for t in threading.enumerate()}
    with make_reader(urls["syn"], schema_fields=["id", "matrix"], workers_count=3) as reader:
        iterator = iter(make_petastorm_dataset(reader))
        assert int(next(iterator).id) >= 0
        del iterator
    left = [t for t in threading.enumerate() if t.ident not in before and t.is_alive()]
    assert not left, left


def test_an_endless_reader_feeds_take(urls):
    with make_batch_reader(urls["syn"], schema_fields=["id"], num_epochs=None, workers_count=2) as reader:
        batches = list(make_petastorm_dataset(reader).take(7))
    assert [int(b.id.shape[0]) for b in batches] == [10] * 7


def test_batch_reader_dataset_reads_every_row_once_per_pass(urls):
    with make_batch_reader(urls["syn"], schema_fields=["id", "value"], workers_count=2) as reader:
        ds = make_petastorm_dataset(reader)
        ids = sorted(int(i) for b in ds for i in b.id.numpy())
        assert ids == list(range(20))
        # recorded: batches of one row group each ([10, 10]), read again on a second pass
        assert sorted(int(b.id.shape[0]) for b in ds) == [10, 10]


def test_unbatch_and_batch_regroup_batch_reader_rows(urls):
    with _batches(urls["syn"], schema_fields=["id", "matrix"]) as reader:
        ds = make_petastorm_dataset(reader).unbatch().batch(6)
        sizes = [int(b.id.shape[0]) for b in ds]
        assert ds.element_spec.matrix.shape.as_list() == [None, 4, 3]
    assert sizes == [6, 6, 6, 2]


def test_dataset_has_make_one_shot_iterator_in_eager_mode_as_the_original(urls):
    with _rows(urls["syn"], schema_fields=["id"]) as reader:
        ds = make_petastorm_dataset(reader)
        # recorded: a DatasetV1Adapter (tf.compat.v1.data.Dataset), and make_one_shot_iterator() works eagerly
        assert isinstance(ds, tf.compat.v1.data.Dataset) and isinstance(ds, tf.data.Dataset)
        iterator = ds.make_one_shot_iterator()
        assert int(iterator.get_next().id) == 0
        assert isinstance(ds.map(lambda r: r.id), tf.compat.v1.data.Dataset)  # recorded


def test_reader_mock_feeds_a_dataset():
    schema = Unischema("Mock", [UnischemaField("x", np.float32, (2,), NdarrayCodec(), False),
                                UnischemaField("n", np.uint16, (), _s("IntegerType"), False)])
    reader = ReaderMock(schema, lambda s: {"x": np.ones(2, np.float32), "n": np.uint16(7)})
    ds = make_petastorm_dataset(reader)
    rows = [r for r, _ in zip(ds, range(3))]
    assert [int(r.n) for r in rows] == [7, 7, 7] and rows[0].n.dtype == tf.int32
    assert ds.element_spec.x.shape == (2,)


# --- TensorFlow 2 usage ------------------------------------------------------------------------------------

def test_dataset_in_a_tf_function(urls):
    @tf.function
    def total(dataset):
        s = tf.constant(0, tf.int64)
        for row in dataset:
            s += row.id + tf.cast(tf.reduce_sum(row.a_u16), tf.int64)
        return s

    with _rows(urls["all"], schema_fields=["id", "a_u16"]) as reader:
        assert int(total(make_petastorm_dataset(reader))) == sum(i + 60000 + i + 1 for i in range(10))


def test_keras_fit_over_a_mapped_dataset_for_several_epochs(urls):
    import keras

    class CountBatches(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.per_epoch = []

        def on_epoch_begin(self, epoch, logs=None):
            self.per_epoch.append(0)

        def on_train_batch_end(self, batch, logs=None):
            self.per_epoch[-1] += 1

    counter = CountBatches()
    with make_reader(urls["syn"], schema_fields=["matrix", "value"], num_epochs=1, workers_count=2) as reader:
        dataset = make_petastorm_dataset(reader).map(lambda r: (tf.reshape(r.matrix, (12,)) / 30.0, r.value)).batch(5)
        model = keras.Sequential([keras.Input((12,)), keras.layers.Dense(1)])
        model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
        # a finished pass resets the reader: each epoch reads the 20 rows (4 batches) again
        history = model.fit(dataset, epochs=3, verbose=0, callbacks=[counter])
    assert counter.per_epoch == [4, 4, 4]
    losses = history.history["loss"]
    assert len(losses) == 3 and all(np.isfinite(losses))
    assert losses[-1] < losses[0]


def test_tf_tensors_called_eagerly_raises_a_clear_error(urls):
    # the original returned one eager sample here; the issue asks for a clear error
    with _rows(urls["syn"], schema_fields=["id"]) as reader:
        with pytest.raises(RuntimeError) as info:
            tf_tensors(reader)
    assert isinstance(info.value, PetastormReaderError)
    assert "make_petastorm_dataset" in str(info.value) and "eagerly" in str(info.value)


def test_tf_tensors_in_a_v1_graph_of_a_tf2_program(urls):
    with _rows(urls["syn"], schema_fields=["id", "matrix"]) as reader, tf.Graph().as_default():
        row = tf_tensors(reader)
        assert row.matrix.shape == (4, 3)
        with tf.compat.v1.Session() as sess:
            assert [int(sess.run(row).id) for _ in range(3)] == [0, 1, 2]


def test_tf_tensors_argument_checks_come_first(urls):
    with _rows(urls["syn"], schema_fields=["id"]) as reader:
        with pytest.raises(PetastormArgumentError, match="shuffling_queue_capacity must be a non-negative"):
            tf_tensors(reader, shuffling_queue_capacity=-1)


def test_import_tf_utils_does_not_import_tensorflow():
    code = ("import sys, petastorm.tf_utils, petastorm.tf_impl.convert, petastorm.tf_impl.layout; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'tensorflow'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_without_tensorflow_the_functions_say_what_to_install(synthetic_dataset):
    # before: a bare ModuleNotFoundError from deep inside (petastorm.jax already said what to install)
    code = ("import sys; sys.modules['tensorflow'] = None\n"
            "from petastorm import make_reader\nfrom petastorm.tf_utils import make_petastorm_dataset, tf_tensors\n"
            f"with make_reader({synthetic_dataset!r}, reader_pool_type='dummy') as reader:\n"
            "    for fn in (make_petastorm_dataset, tf_tensors):\n"
            "        try:\n            fn(reader)\n"
            "        except ImportError as e:\n            print(type(e).__name__, e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 2 and all("needs TensorFlow" in line and "petastorm[tf]" in line for line in lines), lines
