"""Record, as a black box, the errors and warnings of the ORIGINAL petastorm 0.12.1.

Run it with the original's venv (see ``tools_compat/make_original_venv.sh``)::

    SPARK_LOCAL_IP=127.0.0.1 .venv-original/bin/python -P tools_compat/original_error_wording.py

It writes small datasets under ``tools_compat/out/`` (with the original's ``materialize_dataset`` and with
plain pyarrow), then runs every condition of issue 3 ("Compatibility of errors", "Bad input") in its own
subprocess (so a hang is recorded as a timeout instead of stopping the run), and writes
``tools_compat/original_errors.json``: per case the exception class (module, qualname, MRO), its message,
the chained cause, the warnings and WARNING+ log records, or the rows read when nothing was raised.
It also records which ids each shard gets (``shard_count=3``) with and without ``shard_seed``.

Only the public API of the original is called; its source is not read.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "out"
DEFAULT_JSON = HERE / "original_errors.json"
CASE_TIMEOUT_S = 90
HANG_TIMEOUT_S = 30  # cases known to hang in the original (workers_count <= 0)
N_ROWS = 10

# ---------------------------------------------------------------------------------------------------------
# Datasets
# ---------------------------------------------------------------------------------------------------------


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


def _spark():
    from pyspark.sql import SparkSession
    return (SparkSession.builder.master("local[1]").appName("compat-original")
            .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false").config("spark.driver.memory", "1g")
            .config("spark.sql.shuffle.partitions", "10").getOrCreate())


def build_datasets(out: Path) -> dict:
    """Write every dataset the cases need; return a description of each (path -> facts)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from petastorm.etl.dataset_metadata import materialize_dataset
    from petastorm.unischema import dict_to_spark_row

    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    facts: dict[str, Any] = {}
    schema = _schema()
    spark = _spark()
    try:
        # 1. Petastorm dataset, Spark writer, 10 files with one single-row row group each; file k holds id k.
        url = (out / "petastorm_10files").as_uri()
        with materialize_dataset(spark, url, schema, row_group_size_mb=1):
            rows = [dict_to_spark_row(schema, _row(i)) for i in range(N_ROWS)]
            df = spark.createDataFrame(rows, schema.as_spark_schema())
            df.repartitionByRange(N_ROWS, "id").write.mode("overwrite").parquet(url)
        facts["petastorm_10files"] = _describe(out / "petastorm_10files")

        # 2. Petastorm dataset in ONE file with 10 single-row row groups: pyarrow writes the file inside
        #    materialize_dataset, which then adds the Petastorm metadata.
        path = out / "petastorm_1file_10rg"
        with materialize_dataset(spark, path.as_uri(), schema):
            path.mkdir()
            cols = {f: [] for f in schema.fields}
            for i in range(N_ROWS):
                for name, value in _row(i).items():
                    field = schema.fields[name]
                    cols[name].append(field.codec.encode(field, value))
            table = pa.table({
                "id": pa.array(cols["id"], pa.int64()), "value": pa.array(cols["value"], pa.float64()),
                "name": pa.array(cols["name"], pa.string()),
                "vec": pa.array([bytes(v) for v in cols["vec"]], pa.binary()),
            })
            pq.write_table(table, path / "part-00000.parquet", row_group_size=1)
        facts["petastorm_1file_10rg"] = _describe(path)
    finally:
        spark.stop()

    # 3. Plain parquet (no Petastorm metadata): one file, 10 row groups of one row.
    plain = pa.table({"id": pa.array(range(N_ROWS), pa.int64()),
                      "value": pa.array([i / 2.0 for i in range(N_ROWS)], pa.float64()),
                      "name": pa.array([f"row_{i}" for i in range(N_ROWS)], pa.string())})
    (out / "plain_1file_10rg").mkdir()
    pq.write_table(plain, out / "plain_1file_10rg" / "part-00000.parquet", row_group_size=1)
    facts["plain_1file_10rg"] = _describe(out / "plain_1file_10rg")

    # 4. Plain parquet, 10 files of one row.
    (out / "plain_10files").mkdir()
    for i in range(N_ROWS):
        pq.write_table(plain.slice(i, 1), out / "plain_10files" / f"part-{i:05d}.parquet")
    facts["plain_10files"] = _describe(out / "plain_10files")

    # 5. Bad stores.
    (out / "empty_dir").mkdir()
    (out / "no_parquet_dir").mkdir()
    (out / "no_parquet_dir" / "README.txt").write_text("not parquet\n")
    (out / "no_parquet_dir" / "_SUCCESS").write_text("")
    (out / "corrupt").mkdir()
    (out / "corrupt" / "part-00000.parquet").write_bytes(b"this is not a parquet file at all" * 8)
    (out / "corrupt_second").mkdir()
    pq.write_table(plain, out / "corrupt_second" / "part-00000.parquet", row_group_size=5)
    (out / "corrupt_second" / "part-00001.parquet").write_bytes(b"PAR1garbage-garbage-garbagePAR1")
    (out / "truncated").mkdir()
    good = (out / "plain_1file_10rg" / "part-00000.parquet").read_bytes()
    (out / "truncated" / "part-00000.parquet").write_bytes(good[: len(good) // 2])
    # 6. Unsupported column types for make_batch_reader.
    (out / "struct_col").mkdir()
    pq.write_table(pa.table({"id": pa.array([0, 1], pa.int64()),
                             "s": pa.array([{"a": 1, "b": "x"}, {"a": 2, "b": "y"}])}),
                   out / "struct_col" / "part-00000.parquet")
    (out / "map_col").mkdir()
    pq.write_table(pa.table({"id": pa.array([0, 1], pa.int64()),
                             "m": pa.array([[("k", 1)], [("k", 2)]], pa.map_(pa.string(), pa.int64()))}),
                   out / "map_col" / "part-00000.parquet")
    facts["bad_stores"] = ["empty_dir", "no_parquet_dir (README.txt, _SUCCESS)",
                           "corrupt (garbage part-00000.parquet)",
                           "corrupt_second (good part-00000 with 2 row groups + garbage part-00001 with PAR1 magic)",
                           "truncated (first half of a good file)", "struct_col", "map_col"]
    del np
    return facts


def _describe(path: Path) -> dict:
    import pyarrow.parquet as pq
    files = sorted(p for p in path.rglob("*.parquet"))
    desc = {"files": []}
    for f in files:
        pf = pq.ParquetFile(f)
        ids = [pf.read_row_group(k, columns=["id"]).column("id").to_pylist() for k in range(pf.num_row_groups)]
        desc["files"].append({"file": str(f.relative_to(path)), "row_group_ids": ids})
    desc["other_entries"] = sorted(str(p.relative_to(path)) for p in path.iterdir() if p.suffix != ".parquet")
    return desc


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

        def transform_wrong_type(p, f=f, ds=ds):
            from petastorm.transform import TransformSpec
            return _read(p, f(), ds, transform_spec=TransformSpec(lambda x: 42), **COMMON)
        case(f"{fname}.transform_returns_int", "TransformSpec(lambda x: 42)")(transform_wrong_type)

        def transform_none(p, f=f, ds=ds):
            from petastorm.transform import TransformSpec
            return _read(p, f(), ds, transform_spec=TransformSpec(lambda x: None), **COMMON)
        case(f"{fname}.transform_returns_none", "TransformSpec(lambda x: None)")(transform_none)

        def reset_early(p, f=f, ds=ds):
            p.stage = "construct"
            r = f()(p.url(ds), **COMMON)
            try:
                p.stage = "first_next"
                next(r)
                p.stage = "reset_before_exhaustion"
                r.reset()
                p.stage = "iterate_after_reset"
                return {"ids_after_reset": _ids(r)}
            finally:
                r.stop()
                r.join()
        case(f"{fname}.reset_before_exhaustion", "next(r) once, then r.reset()")(reset_early)

        def reset_after(p, f=f, ds=ds):
            p.stage = "construct"
            r = f()(p.url(ds), **COMMON)
            try:
                p.stage = "iterate"
                first = _ids(r)
                p.stage = "reset_after_exhaustion"
                r.reset()
                p.stage = "iterate_after_reset"
                return {"ids": first, "ids_after_reset": _ids(r)}
            finally:
                r.stop()
                r.join()
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
    from petastorm.ngram import NGram
    from petastorm.unischema import Unischema, UnischemaField
    import numpy as np
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


# ---------------------------------------------------------------------------------------------------------
# Recording
# ---------------------------------------------------------------------------------------------------------


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


class _LogCapture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.records: list[dict] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append({"logger": record.name, "level": record.levelname, "message": record.getMessage()})


def run_case_inline(name: str, out: Path) -> dict:
    probe = Probe(out)
    cap = _LogCapture()
    logging.getLogger().addHandler(cap)
    logging.getLogger().setLevel(logging.WARNING)
    result: dict[str, Any] = {}
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        try:
            if name.startswith("sharding:"):
                _, entry, ds = name.split(":")
                result["outcome"] = "ok"
                result["result"] = run_sharding(probe, entry, ds)
            else:
                ret = CASES[name][1](probe)
                result["outcome"] = "ok"
                result["result"] = ret
        except BaseException as e:  # noqa: BLE001 - we record everything, including StopIteration
            result["outcome"] = "raised"
            result["stage"] = probe.stage
            result["exception"] = describe_exception(e)
            if probe.after_error:
                result["stop_join_after_error"] = probe.after_error
    if FIRST_ITEM:
        result["first_item"] = dict(FIRST_ITEM)
    result["seconds"] = round(time.perf_counter() - t0, 3)
    # pyarrow-14 deprecation noise of the original's legacy-API use is counted, not listed.
    kept, seen, dropped = [], set(), 0
    for x in w:
        msg = str(x.message)
        if (issubclass(x.category, FutureWarning) and ("pyarrow" in msg or "ParquetDataset" in msg)) or (
                issubclass(x.category, ResourceWarning) and msg.startswith("unclosed file")):
            dropped += 1
            continue
        key = (_cls(x.category), msg)
        if key not in seen:
            seen.add(key)
            kept.append({"category": key[0], "message": msg, "file": os.path.basename(x.filename)})
    result["warnings"] = kept
    result["pyarrow_deprecation_warnings_dropped"] = dropped
    result["log_records"] = cap.records
    return result


def run_case_subprocess(name: str, out: Path, timeout: int) -> dict:
    cmd = [sys.executable, "-P", str(Path(__file__).resolve()), "--case", name, "--out-dir", str(out)]
    env = dict(os.environ, PYTHONWARNINGS="ignore::FutureWarning")
    # cwd must not be the repo root: there ``petastorm/`` (the rebuild) would shadow the original in the
    # process pool's worker processes. A new session lets us kill the case's worker processes too.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=out,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return {"outcome": "timeout", "timeout_s": timeout,
                "note": "the original neither raised nor finished within the timeout (hangs)"}
    for line in reversed(stdout.splitlines()):
        if line.startswith("@@RESULT@@"):
            return json.loads(line[len("@@RESULT@@"):])
    return {"outcome": "crashed", "returncode": proc.returncode, "stderr_tail": stderr[-3000:]}


def exception_catalogue() -> dict:
    """Public exception classes of the original and their bases (by import, not by reading source)."""
    import importlib
    cat = {}
    for mod in ("petastorm.errors", "petastorm.etl.dataset_metadata", "petastorm.workers_pool",
                "petastorm.workers_pool.ventilator", "petastorm.cache", "petastorm.unischema"):
        try:
            m = importlib.import_module(mod)
        except Exception as e:  # noqa: BLE001
            cat[mod] = f"import failed: {e!r}"
            continue
        for n in dir(m):
            obj = getattr(m, n)
            if isinstance(obj, type) and issubclass(obj, BaseException) and obj.__module__.startswith("petastorm"):
                cat[f"{mod}.{n}"] = {"defined_in": _cls(obj), "mro": [_cls(c) for c in obj.__mro__[1:]]}
    return cat


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--case", help="run one case inline and print its JSON (internal)")
    ap.add_argument("--out-dir", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--json", type=Path, default=DEFAULT_JSON)
    ap.add_argument("--reuse-datasets", action="store_true", help="do not rewrite tools_compat/out/")
    ap.add_argument("--only", default="", help="comma-separated substrings: run only matching cases")
    args = ap.parse_args()

    version = importlib.metadata.version("petastorm")
    import petastorm
    if version != "0.12.1" or "site-packages" not in petastorm.__file__:
        sys.exit(f"run this with the ORIGINAL petastorm 0.12.1 venv (found {version} at {petastorm.__file__})")
    warnings.filterwarnings("ignore", category=FutureWarning)
    if args.case:
        print("@@RESULT@@" + json.dumps(run_case_inline(args.case, args.out_dir), default=repr))
        return

    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYTHONWARNINGS", "ignore::FutureWarning")
    facts_path = args.out_dir / "datasets.json"
    if args.reuse_datasets and facts_path.exists():
        facts = json.loads(facts_path.read_text())
    else:
        facts = build_datasets(args.out_dir)
        facts_path.write_text(json.dumps(facts, indent=1))

    names = list(CASES) + [f"sharding:{e}:{d}" for e, ds in SHARD_DATASETS.items() for d in ds]
    if args.only:
        names = [n for n in names if any(s in n for s in args.only.split(","))]
    previous = json.loads(args.json.read_text()) if args.json.exists() and args.only else {}
    cases = previous.get("cases", {})
    sharding = previous.get("sharding", {})
    for n in names:
        t0 = time.perf_counter()
        timeout = CASE_TIMEOUT_S * 4 if n.startswith("sharding:") else (
            HANG_TIMEOUT_S if "workers_count" in n else CASE_TIMEOUT_S)
        res = run_case_subprocess(n, args.out_dir, timeout)
        if n.startswith("sharding:"):
            sharding[n[len("sharding:"):]] = res
        else:
            res = {"description": CASES[n][0], **res}
            cases[n] = res
        brief = res.get("exception", {}).get("class", "") + ": " + res.get("exception", {}).get("message", "")[:100]
        print(f"{n:60s} {res['outcome']:8s} {time.perf_counter() - t0:5.1f}s {brief}", flush=True)

    import numpy, pyarrow, pandas, pyspark
    doc = {
        "generated_by": "tools_compat/original_error_wording.py",
        "versions": {"petastorm": version, "python": sys.version.split()[0], "numpy": numpy.__version__,
                     "pyarrow": pyarrow.__version__, "pandas": pandas.__version__, "pyspark": pyspark.__version__},
        "note": "'stage' = step that raised: construct (make_reader/make_batch_reader call), iterate (next()), "
                "stop, ...; 'result' = what was read when nothing was raised. Dataset layouts in 'datasets'.",
        "datasets": facts,
        "exception_catalogue": exception_catalogue(),
        "cases": cases,
        "sharding": sharding,
    }
    args.json.write_text(json.dumps(doc, indent=1, default=repr) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
