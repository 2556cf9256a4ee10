"""The conditions that ``original_error_wording.py`` runs against the ORIGINAL petastorm 0.12.1.

Each case is a function of a :class:`Probe` (dataset locations + which step is running); it returns what was
read, or raises what the original raised. Only the original's public API is called.
"""
from __future__ import annotations

import contextlib
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Iterator

N_ROWS = 10


def _schema():
    import numpy as np
    from pyspark.sql.types import DoubleType, LongType, StringType

    from petastorm.codecs import NdarrayCodec, ScalarCodec
    from petastorm.unischema import Unischema, UnischemaField

    return Unischema("CompatSchema", [
        UnischemaField("id", np.int64, (), ScalarCodec(LongType()), False),
        UnischemaField("value", np.float64, (), ScalarCodec(DoubleType()), False),
        UnischemaField("name", np.str_, (), ScalarCodec(StringType()), False),
        UnischemaField("vec", np.float32, (4,), NdarrayCodec(), False),
    ])


def _row(i: int) -> dict:
    import numpy as np
    return {"id": i, "value": i / 2.0, "name": f"row_{i}", "vec": np.full(4, i, dtype=np.float32)}


# ---------------------------------------------------------------------------------------------------------
# Cases: each runs in its own subprocess. ``probe.stage`` says which step raised.
# ---------------------------------------------------------------------------------------------------------


class Probe:
    """Tracks which step of a case is running; ``freeze()`` keeps the step that raised."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self._stage = "setup"
        self.frozen = False
        self.after_error: dict = {}

    @property
    def stage(self) -> str:
        return self._stage

    @stage.setter
    def stage(self, value: str) -> None:
        if not self.frozen:
            self._stage = value

    def freeze(self) -> None:
        self.frozen = True

    def url(self, name: str) -> str:
        return (self.out / name).as_uri()


CASES: dict[str, tuple[str, Callable[[Probe], Any]]] = {}


def case(name: str, description: str):
    def deco(fn):
        CASES[name] = (description, fn)
        return fn
    return deco


FIRST_ITEM: dict = {}


def _ids(reader, limit: int = 1000) -> list:
    """Read every row/batch of ``reader``; return the ids in yield order."""
    ids: list = []
    for item in reader:
        if not FIRST_ITEM:
            FIRST_ITEM.update({"type": type(item).__name__, "fields": list(getattr(item, "_fields", [])),
                               "id_type": type(item.id).__name__})
        v = item.id
        if hasattr(v, "tolist") and getattr(v, "ndim", 0) > 0:
            ids.extend(v.tolist())
        else:
            ids.append(int(v))
        if len(ids) > limit:
            break
    return ids


@contextlib.contextmanager
def _opened(probe: Probe, fn, url_name: str) -> Iterator[Any]:
    """The reader ``fn(url, **COMMON)`` of dataset ``url_name`` (step ``construct``), stopped and joined on
    exit, whatever happened inside."""
    probe.stage = "construct"
    reader = fn(probe.url(url_name), **COMMON)
    try:
        yield reader
    finally:
        reader.stop()
        reader.join()


def _read(probe: Probe, fn, url_name: str, **kwargs) -> dict:
    return _read_url(probe, fn, probe.url(url_name), **kwargs)


def _read_url(probe: Probe, fn, url, **kwargs) -> dict:
    """Construct, iterate to the end, stop and join; an error freezes ``probe.stage`` at its step and
    what stop()/join() did afterwards is recorded in ``probe.after_error``."""
    probe.stage = "construct"
    try:
        reader = fn(url, **kwargs)
        probe.stage = "iterate"
        ids = _ids(reader)
    except BaseException:
        probe.freeze()
        if probe.stage == "iterate":
            t0 = time.perf_counter()
            try:
                reader.stop()
                reader.join()
                probe.after_error = {"stop_join": "ok"}
            except BaseException as e:  # noqa: BLE001
                probe.after_error = {"stop_join": "raised", "exception": describe_exception(e)}
            probe.after_error["seconds"] = round(time.perf_counter() - t0, 3)
        raise
    probe.stage = "stop"
    reader.stop()
    reader.join()
    return {"ids": ids}


def _mr():
    from petastorm import make_reader
    return make_reader


def _mbr():
    from petastorm import make_batch_reader
    return make_batch_reader


PS = "petastorm_10files"
PL = "plain_1file_10rg"
COMMON = {"reader_pool_type": "dummy", "shuffle_row_groups": False}

for _fname, _f, _ds in (("make_reader", _mr, PS), ("make_batch_reader", _mbr, PL)):
    def _register(fname=_fname, f=_f, ds=_ds):
        case(f"{fname}.cache_type_unknown", "cache_type='bogus'")(
            lambda p: _read(p, f(), ds, cache_type="bogus", **COMMON))
        case(f"{fname}.schema_fields_name_nomatch", "schema_fields=['nope'] (no field of that name)")(
            lambda p: _read(p, f(), ds, schema_fields=["nope"], **COMMON))
        case(f"{fname}.schema_fields_regex_nomatch", "schema_fields=['^zzz.*'] (regex matching nothing)")(
            lambda p: _read(p, f(), ds, schema_fields=["^zzz.*"], **COMMON))
        case(f"{fname}.schema_fields_partial_match", "schema_fields=['id', 'nope'] (one matches)")(
            lambda p: {**_read(p, f(), ds, schema_fields=["id", "nope"], **COMMON)})
        case(f"{fname}.schema_fields_empty_list", "schema_fields=[]")(
            lambda p: _read(p, f(), ds, schema_fields=[], **COMMON))

        def after_stop(p, f=f, ds=ds):
            p.stage = "construct"
            r = f()(p.url(ds), **COMMON)
            p.stage = "stop"
            r.stop()
            r.join()
            p.stage = "next_after_stop_join"
            return {"first": str(next(r))}
        case(f"{fname}.read_after_stop_join", "stop(); join(); next(reader)")(after_stop)

        def after_stop_nojoin(p, f=f, ds=ds):
            p.stage = "construct"
            r = f()(p.url(ds), reader_pool_type="thread", workers_count=2, shuffle_row_groups=False)
            p.stage = "stop"
            r.stop()
            p.stage = "next_after_stop"
            try:
                return {"first": str(next(r))}
            finally:
                r.join()
        case(f"{fname}.read_after_stop_thread", "thread pool: stop(); next(reader) (join later)")(after_stop_nojoin)

        def after_exit(p, f=f, ds=ds):
            p.stage = "construct"
            with f()(p.url(ds), **COMMON) as r:
                p.stage = "inside_with"
                next(r)
            p.stage = "next_after_exit"
            return {"second": str(next(r))}
        case(f"{fname}.read_after_context_exit", "with make_x(...) as r: next(r); then next(r) after the block")(
            after_exit)

        def iter_after_exit(p, f=f, ds=ds):
            p.stage = "construct"
            with f()(p.url(ds), reader_pool_type="thread", workers_count=2) as r:
                pass
            p.stage = "iterate_after_exit"
            return {"ids": _ids(r)}
        case(f"{fname}.iterate_after_context_exit_thread", "thread pool: with block exited unused, then iterate")(
            iter_after_exit)

        case(f"{fname}.cur_shard_eq_shard_count", "cur_shard=3, shard_count=3")(
            lambda p: _read(p, f(), ds, cur_shard=3, shard_count=3, **COMMON))
        case(f"{fname}.cur_shard_negative", "cur_shard=-1, shard_count=3")(
            lambda p: _read(p, f(), ds, cur_shard=-1, shard_count=3, **COMMON))
        case(f"{fname}.shard_count_without_cur_shard", "shard_count=3 only")(
            lambda p: _read(p, f(), ds, shard_count=3, **COMMON))
        case(f"{fname}.cur_shard_without_shard_count", "cur_shard=0 only")(
            lambda p: _read(p, f(), ds, cur_shard=0, **COMMON))
        case(f"{fname}.shard_count_zero", "cur_shard=0, shard_count=0")(
            lambda p: _read(p, f(), ds, cur_shard=0, shard_count=0, **COMMON))
        case(f"{fname}.too_many_shards_empty_shard", "10 row groups, shard_count=20, cur_shard=15")(
            lambda p: _read(p, f(), ds, cur_shard=15, shard_count=20, **COMMON))
        case(f"{fname}.too_many_shards_nonempty_shard", "10 row groups, shard_count=20, cur_shard=3")(
            lambda p: _read(p, f(), ds, cur_shard=3, shard_count=20, **COMMON))
        case(f"{fname}.shard_count_eq_rowgroups_plus_one", "10 row groups, shard_count=11, cur_shard=10")(
            lambda p: _read(p, f(), ds, cur_shard=10, shard_count=11, **COMMON))

        def pred_none(p, f=f, ds=ds):
            from petastorm.predicates import in_lambda
            return _read(p, f(), ds, predicate=in_lambda(["id"], lambda x: x < 0), **COMMON)
        case(f"{fname}.predicate_filters_everything", "predicate=in_lambda(['id'], lambda x: x < 0)")(pred_none)

        def pred_false(p, f=f, ds=ds):
            from petastorm.predicates import in_lambda
            return _read(p, f(), ds, predicate=in_lambda(["id"], lambda x: False), **COMMON)
        case(f"{fname}.predicate_scalar_false", "predicate=in_lambda(['id'], lambda x: False) (scalar result)")(
            pred_false)

        def pred_none_thread(p, f=f, ds=ds):
            from petastorm.predicates import in_lambda
            return _read(p, f(), ds, predicate=in_lambda(["id"], lambda x: x < 0), reader_pool_type="thread",
                         workers_count=2)
        case(f"{fname}.predicate_filters_everything_thread", "same, thread pool with 2 workers")(pred_none_thread)

        def pred_none_shard(p, f=f, ds=ds):
            from petastorm.predicates import in_lambda
            return _read(p, f(), ds, predicate=in_lambda(["id"], lambda x: x < 0), cur_shard=0, shard_count=2,
                         **COMMON)
        case(f"{fname}.predicate_filters_everything_sharded", "same, dummy pool, cur_shard=0, shard_count=2")(
            pred_none_shard)

        case(f"{fname}.process_pool_reference", "reference: process pool, 2 workers, plain read")(
            lambda p: _read(p, f(), ds, reader_pool_type="process", workers_count=2))

        def after_stop_process(p, f=f, ds=ds):
            p.stage = "construct"
            r = f()(p.url(ds), reader_pool_type="process", workers_count=2)
            p.stage = "stop"
            r.stop()
            r.join()
            p.stage = "next_after_stop_join"
            return {"first": str(next(r))}
        case(f"{fname}.read_after_stop_join_process", "process pool: stop(); join(); next(reader)")(
            after_stop_process)

        def pred_missing(p, f=f, ds=ds):
            from petastorm.predicates import in_lambda
            return _read(p, f(), ds, predicate=in_lambda(["nope"], lambda x: True), **COMMON)
        case(f"{fname}.predicate_field_not_in_schema", "predicate=in_lambda(['nope'], lambda x: True)")(pred_missing)

        for bad in (0, -1, "x", 1.5):
            case(f"{fname}.num_epochs_{bad!s}", f"num_epochs={bad!r}")(
                lambda p, bad=bad: _read(p, f(), ds, num_epochs=bad, **COMMON))
        case(f"{fname}.reader_pool_type_unknown", "reader_pool_type='bogus'")(
            lambda p: _read(p, f(), ds, reader_pool_type="bogus", shuffle_row_groups=False))
        for pool in ("thread", "process", "dummy"):
            for wc in (-1, 0):
                case(f"{fname}.workers_count_{wc}_{pool}", f"{pool} pool, workers_count={wc}")(
                    lambda p, pool=pool, wc=wc: _read(p, f(), ds, reader_pool_type=pool, workers_count=wc))
        case(f"{fname}.missing_path", "file:// URL of a path that does not exist")(
            lambda p: _read(p, f(), "does_not_exist", **COMMON))
        case(f"{fname}.empty_directory", "an empty directory")(lambda p: _read(p, f(), "empty_dir", **COMMON))
        case(f"{fname}.no_parquet_files", "a directory with README.txt and _SUCCESS only")(
            lambda p: _read(p, f(), "no_parquet_dir", **COMMON))
        case(f"{fname}.corrupt_parquet", "directory whose only .parquet file is garbage bytes")(
            lambda p: _read(p, f(), "corrupt", **COMMON))
        case(f"{fname}.corrupt_second_file", "good file + garbage file with PAR1 magic")(
            lambda p: _read(p, f(), "corrupt_second", **COMMON))
        case(f"{fname}.truncated_parquet", "first half of a good parquet file")(
            lambda p: _read(p, f(), "truncated", **COMMON))

        def transform_raises(p, f=f, ds=ds, pool="dummy"):
            from petastorm.transform import TransformSpec

            def boom(x):
                raise ValueError("boom from transform")
            return _read(p, f(), ds, transform_spec=TransformSpec(boom), reader_pool_type=pool,
                         shuffle_row_groups=False, workers_count=2)
        for pool in ("dummy", "thread", "process"):
            case(f"{fname}.transform_raises_{pool}", f"TransformSpec(func raising ValueError('boom from transform')),"
                 f" {pool} pool")(lambda p, pool=pool, tr=transform_raises: tr(p, pool=pool))

        for kind, value in (("int", 42), ("none", None)):
            def transform_returns(p, f=f, ds=ds, value=value):
                from petastorm.transform import TransformSpec
                return _read(p, f(), ds, transform_spec=TransformSpec(lambda x: value), **COMMON)
            case(f"{fname}.transform_returns_{kind}", f"TransformSpec(lambda x: {value})")(transform_returns)

        def reset_early(p, f=f, ds=ds):
            with _opened(p, f(), ds) as r:
                p.stage = "first_next"
                next(r)
                p.stage = "reset_before_exhaustion"
                r.reset()
                p.stage = "iterate_after_reset"
                return {"ids_after_reset": _ids(r)}
        case(f"{fname}.reset_before_exhaustion", "next(r) once, then r.reset()")(reset_early)

        def reset_after(p, f=f, ds=ds):
            with _opened(p, f(), ds) as r:
                p.stage = "iterate"
                first = _ids(r)
                p.stage = "reset_after_exhaustion"
                r.reset()
                p.stage = "iterate_after_reset"
                return {"ids": first, "ids_after_reset": _ids(r)}
        case(f"{fname}.reset_after_exhaustion", "read all, r.reset(), read again (for reference)")(reset_after)

        def selector_no_index(p, f=f, ds=ds):
            from petastorm.selectors import SingleIndexSelector
            return _read(p, f(), ds, rowgroup_selector=SingleIndexSelector("no_such_index", [1]), **COMMON)
        case(f"{fname}.rowgroup_selector_missing_index", "SingleIndexSelector on an index the dataset lacks")(
            selector_no_index)

        case(f"{fname}.zmq_copy_buffers_false", "zmq_copy_buffers=False (deprecated-ish argument)")(
            lambda p: _read(p, f(), ds, zmq_copy_buffers=False, **COMMON))
        case(f"{fname}.cache_local_disk_no_location", "cache_type='local-disk' without cache_location")(
            lambda p: _read(p, f(), ds, cache_type="local-disk", **COMMON))
        case(f"{fname}.shuffle_row_drop_partitions_zero", "shuffle_row_drop_partitions=0")(
            lambda p: _read(p, f(), ds, shuffle_row_drop_partitions=0, **COMMON))
        case(f"{fname}.unsupported_hdfs_scheme", "URL with an unknown scheme 'foo://bar/baz'")(
            lambda p: _read_url(p, f(), "foo://bar/baz", **COMMON))
        case(f"{fname}.relative_path_no_scheme", "a plain relative path (cwd is tools_compat/out)")(
            lambda p: _read_url(p, f(), ds, **COMMON))
        case(f"{fname}.absolute_path_no_scheme", "a plain absolute path (no file://)")(
            lambda p: _read_url(p, f(), str(p.out / ds), **COMMON))
    _register()


@case("make_reader.plain_parquet_no_metadata", "make_reader on a pyarrow-written store without Petastorm metadata")
def _c1(p):
    return _read(p, _mr(), PL, **COMMON)


@case("make_reader.schema_fields_unischemafield_not_in_dataset",
      "schema_fields=[UnischemaField('nope', np.int64, (), ScalarCodec(LongType()), False)]")
def _c11(p):
    import numpy as np
    from pyspark.sql.types import LongType

    from petastorm.codecs import ScalarCodec
    from petastorm.unischema import UnischemaField
    return _read(p, _mr(), PS, schema_fields=[UnischemaField("nope", np.int64, (), ScalarCodec(LongType()), False)],
                 **COMMON)


@case("make_reader.pyarrow_serialize_true", "make_reader(pyarrow_serialize=True)")
def _c2(p):
    return _read(p, _mr(), PS, pyarrow_serialize=True, **COMMON)


@case("make_reader.ngram_with_shuffle_rows", "make_reader(schema_fields=NGram, shuffle_rows=True)")
def _c3(p):
    from petastorm.ngram import NGram
    s = _schema()
    ng = NGram({0: [s.id], 1: [s.id]}, delta_threshold=10, timestamp_field=s.id)
    p.stage = "construct"
    r = _mr()(p.url(PS), schema_fields=ng, shuffle_rows=True, **COMMON)
    r.stop()
    r.join()
    return {}


@case("make_batch_reader.ngram", "make_batch_reader(schema_fields=NGram(...))")
def _c4(p):
    import numpy as np

    from petastorm.ngram import NGram
    from petastorm.unischema import Unischema, UnischemaField
    f_id = UnischemaField("id", np.int64, (), None, False)
    Unischema("S", [f_id])
    return _read(p, _mbr(), PL, schema_fields=NGram({0: [f_id], 1: [f_id]}, 10, f_id), **COMMON)


@case("make_batch_reader.struct_column", "make_batch_reader on a store with a struct<a:int64,b:string> column")
def _c5(p):
    return _read(p, _mbr(), "struct_col", **COMMON)


@case("make_batch_reader.map_column", "make_batch_reader on a store with a map<string,int64> column")
def _c6(p):
    return _read(p, _mbr(), "map_col", **COMMON)


@case("make_batch_reader.list_of_urls_one_missing", "make_batch_reader([good_file_url, missing_file_url])")
def _c7(p):
    good = (p.out / "plain_10files" / "part-00000.parquet").as_uri()
    bad = (p.out / "plain_10files" / "part-99999.parquet").as_uri()
    return _read_url(p, _mbr(), [good, bad], **COMMON)


@case("make_batch_reader.list_of_urls_mixed_schemes", "make_batch_reader([file://..., s3://...])")
def _c8(p):
    good = (p.out / "plain_10files" / "part-00000.parquet").as_uri()
    return _read_url(p, _mbr(), [good, "s3://bucket/x.parquet"], **COMMON)


@case("make_batch_reader.empty_url_list", "make_batch_reader([])")
def _c9(p):
    return _read_url(p, _mbr(), [], **COMMON)


def _order_store(out: Path, hive: bool) -> str:
    """Files whose creation, lexical and natural orders differ: names b, a, 10, 9 hold ids 0-1, 2-3, 4-5, 6-7."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    name = "hive_order" if hive else "plain_order"
    root = out / name
    if not root.exists():
        root.mkdir()
        for k, tag in enumerate(["b", "a", "10", "9"]):
            t = pa.table({"id": pa.array([2 * k, 2 * k + 1], pa.int64())})
            if hive:
                (root / f"k={tag}").mkdir()
                pq.write_table(t, root / f"k={tag}" / "part-0.parquet")
            else:
                pq.write_table(t, root / f"part-{tag}.parquet")
            time.sleep(0.05)
    return name


@case("make_batch_reader.file_order_plain", "files part-b (ids 0,1), part-a (2,3), part-10 (4,5), part-9 (6,7) "
      "written in that order; shuffle_row_groups=False: which order is read?")
def _c12(p):
    return _read(p, _mbr(), _order_store(p.out, hive=False), **COMMON)


@case("make_batch_reader.file_order_hive", "Hive dirs k=b (ids 0,1), k=a (2,3), k=10 (4,5), k=9 (6,7) written in "
      "that order; shuffle_row_groups=False: which order is read?")
def _c13(p):
    res = _read(p, _mbr(), _order_store(p.out, hive=True), **COMMON)
    return res


@case("make_batch_reader.file_order_plain_shard0of2", "same plain store, cur_shard=0, shard_count=2")
def _c14(p):
    return _read(p, _mbr(), _order_store(p.out, hive=False), cur_shard=0, shard_count=2, **COMMON)


@case("make_reader.petastorm_1file_10rg_reads", "reference: make_reader on the 1-file/10-row-group Petastorm store")
def _c10(p):
    return _read(p, _mr(), "petastorm_1file_10rg", **COMMON)


# ---------------------------------------------------------------------------------------------------------
# Sharding observations
# ---------------------------------------------------------------------------------------------------------

SHARD_DATASETS = {"make_reader": ["petastorm_10files", "petastorm_1file_10rg"],
                  "make_batch_reader": ["plain_1file_10rg", "plain_10files", "petastorm_10files"]}
SHARD_SEEDS = [None, 7, 0, 1, 42]
SHARD_COUNTS = [3, 4]


def run_sharding(probe: Probe, entry: str, ds: str) -> dict:
    fn = _mr() if entry == "make_reader" else _mbr()
    res: dict = {}
    for count in SHARD_COUNTS:
        for seed in SHARD_SEEDS:
            shards = []
            for cur in range(count):
                r = fn(probe.url(ds), reader_pool_type="dummy", shuffle_row_groups=False, cur_shard=cur,
                       shard_count=count, shard_seed=seed, num_epochs=1)
                try:
                    shards.append(_ids(r))
                finally:
                    r.stop()
                    r.join()
            res[f"shard_count={count},shard_seed={seed}"] = shards
    # Unsharded order with shuffle_row_groups=False, and shuffle_row_groups=True with seed (reference).
    for kw in ({"shuffle_row_groups": False}, {"shuffle_row_groups": True, "seed": 7}):
        r = fn(probe.url(ds), reader_pool_type="dummy", num_epochs=1, **kw)
        try:
            res["unsharded," + ",".join(f"{k}={v}" for k, v in kw.items())] = _ids(r)
        finally:
            r.stop()
            r.join()
    return res


def _cls(c: type) -> str:
    return f"{c.__module__}.{c.__qualname__}"


def describe_exception(e: BaseException) -> dict:
    tb = traceback.extract_tb(e.__traceback__)
    site = None
    if tb:
        fn = tb[-1].filename
        for marker in ("site-packages/", "lib/python3.11/"):
            if marker in fn:
                fn = fn.split(marker, 1)[1]
                break
        site = fn
    d = {"class": _cls(type(e)), "mro": [_cls(c) for c in type(e).__mro__[1:]], "message": str(e),
         "args": [repr(a) for a in e.args], "raised_in_file": site}
    chained = e.__cause__ or e.__context__
    if chained is not None and chained is not e:
        d["chained"] = {"kind": "cause" if e.__cause__ is not None else "context", "class": _cls(type(chained)),
                        "message": str(chained)}
    return d
