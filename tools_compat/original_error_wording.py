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
import warnings
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # run with ``python -P``: the script's folder is not on sys.path by itself

from compat_cases import (  # noqa: E402
    CASES,
    FIRST_ITEM,
    N_ROWS,
    SHARD_DATASETS,
    Probe,
    _cls,
    _row,
    _schema,
    describe_exception,
    run_sharding,
)

DEFAULT_OUT = HERE / "out"
DEFAULT_JSON = HERE / "original_errors.json"
CASE_TIMEOUT_S = 90
HANG_TIMEOUT_S = 30  # cases known to hang in the original (workers_count <= 0)

# ---------------------------------------------------------------------------------------------------------
# Datasets
# ---------------------------------------------------------------------------------------------------------


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
# Recording
# ---------------------------------------------------------------------------------------------------------


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
    # PYTHONPATH: process-pool workers unpickle case functions (transforms, predicates) from compat_cases.
    pythonpath = os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH", "")) if p)
    env = dict(os.environ, PYTHONWARNINGS="ignore::FutureWarning", PYTHONPATH=pythonpath)
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

    import numpy
    import pandas
    import pyarrow
    import pyspark
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
