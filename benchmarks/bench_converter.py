"""The Spark converter's torch loader against ``BatchedDataLoader`` on the same cached files (issue 12).

Usage::

    python benchmarks/bench_converter.py [--quick] [--reps 3] [--rows N] [--epochs 3] [--no-original]

A real local Spark session (``local[2]``, one per run) makes a DataFrame of 1,000,000 rows x 20 float
columns ``c00``..``c19`` (``rand``; 200,000 rows with ``--quick``), and ``make_spark_converter`` caches it
as Parquet under ``bench-out/converter-cache`` (removed at the end). Then, on the cached files:

C1. ``converter.make_torch_dataloader(batch_size=1024, num_epochs=3)`` (the default loader:
    ``petastorm.pytorch.DataLoader``, 4 reader threads) / ``BatchedDataLoader(make_batch_reader(
    converter.file_urls, workers_count=4, num_epochs=3), batch_size=1024)``.             target >= 0.5x
C2. ``make_torch_dataloader(..., data_loader_fn=BatchedDataLoader)`` / the same.          information
C3. A second ``make_spark_converter(df)`` of the same DataFrame (the cache is found, nothing is written)
    / the first one's time (materialisation).                                         information (<< 1)

A pass reads ``--epochs`` epochs (3: one epoch of 1M rows lasts only ~0.15 s). Rates are rows/s from
entering the loader's context (the reader's start-up included) to the last batch, best of ``--reps`` runs
that alternate the cases, after one untimed warm-up pass of each (imports, page cache). Every consumer reads the last element of ``c00`` of each batch. Each figure also gets a CPU-time
ratio (reference CPU per row / ours, all threads of this process): load-insensitive on this shared machine.

When ``.venv-original`` exists, the original 0.12.1 runs C1 as a black box first (its own interpreter and
JVM, the public API only, the same DataFrame, its own cache; one epoch per pass, at most 2 reps): its
converter's rate / its ``BatchedDataLoader``'s is printed in brackets, and C4 is our converter's rate / its.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import warnings
from typing import Callable, Dict, List, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
BATCH = 1024
WORKERS = 4  # the converter's default reader threads (recorded from 0.12.1)
COLUMNS = [f"c{i:02d}" for i in range(20)]


def start_spark():
    """The run's one local Spark session."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession

    spark = (SparkSession.builder.master("local[2]").appName("petastorm-bench-converter")
             .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
             .config("spark.sql.shuffle.partitions", "2").config("spark.driver.memory", "2g").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def make_dataframe(spark, rows: int):
    """``rows`` x 20 float32 columns of ``rand(seed=i)``, in 2 partitions (2 cached files)."""
    from pyspark.sql import functions as F

    return (spark.range(0, rows, numPartitions=2)
            .select(*[F.rand(seed=i).cast("float").alias(name) for i, name in enumerate(COLUMNS)]))


def _consume(loader) -> int:
    rows, check = 0, 0.0
    for batch in loader:
        value = batch["c00"]
        rows += int(value.shape[0])
        check += float(value.numpy().reshape(-1)[-1])
    return rows


def converter_pass(converter, epochs: int, data_loader_fn=None) -> int:
    """Rows of one pass of ``converter.make_torch_dataloader`` (batch 1024, ``epochs`` epochs)."""
    with converter.make_torch_dataloader(batch_size=BATCH, num_epochs=epochs, data_loader_fn=data_loader_fn) as loader:
        return _consume(loader)


def batched_pass(file_urls: List[str], epochs: int) -> int:
    """Rows of one pass of ``BatchedDataLoader`` over ``make_batch_reader`` on the same files and threads."""
    from petastorm import make_batch_reader
    from petastorm.pytorch import BatchedDataLoader

    with BatchedDataLoader(make_batch_reader(file_urls, workers_count=WORKERS, num_epochs=epochs),
                           batch_size=BATCH) as loader:
        return _consume(loader)


def measure(cases: Dict[str, Callable[[], int]], reps: int, expected_rows: int) -> Dict[str, tuple]:
    """``{case: (best rows/s, least CPU s per row)}`` over ``reps`` alternating runs (one warm-up each)."""
    for name, fn in cases.items():
        rows = fn()
        if rows != expected_rows:
            raise SystemExit(f"{name}: read {rows} rows, expected {expected_rows}")
    rates: Dict[str, list] = {name: [] for name in cases}
    cpus: Dict[str, list] = {name: [] for name in cases}
    for rep in range(reps):
        for name, fn in cases.items():
            c0, t0 = time.process_time(), time.perf_counter()
            rows = fn()
            seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
            rates[name].append(rows / seconds)
            cpus[name].append(cpu / rows)
            print(f"    rep {rep + 1} {name}: {rows / seconds:,.0f} rows/s ({cpu / rows * 1e6:.2f} us CPU/row)",
                  flush=True)
    return {name: (common.best_rate(rates[name]), min(cpus[name])) for name in cases}


# Run by the original's python (-P, cwd /): only the public API of petastorm 0.12.1.
_ORIGINAL_SCRIPT = r"""
import json, os, sys, time
rows, epochs, reps, batch, workers, cache_url = json.loads(sys.argv[1])
from pyspark.sql import SparkSession, functions as F
from petastorm import make_batch_reader
from petastorm.pytorch import BatchedDataLoader
from petastorm.spark import SparkDatasetConverter, make_spark_converter
spark = (SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false")
         .config("spark.ui.showConsoleProgress", "false").config("spark.driver.memory", "2g").getOrCreate())
spark.sparkContext.setLogLevel("ERROR")
spark.conf.set(SparkDatasetConverter.PARENT_CACHE_DIR_URL_CONF, cache_url)
df = spark.range(0, rows, numPartitions=2).select(
    *[F.rand(seed=i).cast("float").alias("c%02d" % i) for i in range(20)])
converter = make_spark_converter(df)
def consume(loader):
    n = 0
    for b in loader:
        n += int(b["c00"].shape[0]); float(b["c00"].numpy().reshape(-1)[-1])
    return n
def conv():
    with converter.make_torch_dataloader(batch_size=batch, num_epochs=epochs) as loader:
        return consume(loader)
def batched():
    with make_batch_reader(converter.file_urls, workers_count=workers, num_epochs=epochs) as reader:
        return consume(BatchedDataLoader(reader, batch_size=batch))
out = {}
for name, fn in (("converter", conv), ("BatchedDataLoader", batched)):
    fn()
    out[name] = []
for _ in range(reps):
    for name, fn in (("converter", conv), ("BatchedDataLoader", batched)):
        t0 = time.perf_counter(); n = fn(); out[name].append(n / (time.perf_counter() - t0))
converter.delete()
spark.stop()
print("ORIGINAL " + json.dumps({k: max(v) for k, v in out.items()}), flush=True)
"""


def original_rates(rows: int, epochs: int, reps: int) -> Optional[Dict[str, float]]:
    """``{'converter': rows/s, 'BatchedDataLoader': rows/s}`` of the original 0.12.1 (best of ``reps``), or
    None (with the reason printed) when it cannot run."""
    if not common.original_available():
        print("  (original 0.12.1: no usable .venv-original, skipped)", flush=True)
        return None
    cache_dir = os.path.join(common.BENCH_DIR, "converter-cache-original")
    shutil.rmtree(cache_dir, ignore_errors=True)
    os.makedirs(cache_dir)
    env = dict(common.subprocess_env(common.ORIGINAL_PYTHON), PYSPARK_PYTHON=common.ORIGINAL_PYTHON)
    env.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    cmd = [common.ORIGINAL_PYTHON, "-P", "-W", "ignore", "-c", _ORIGINAL_SCRIPT,
           json.dumps([rows, epochs, reps, BATCH, WORKERS, "file://" + cache_dir])]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd="/", env=env)
    except subprocess.TimeoutExpired:
        print("  ! original 0.12.1 converter pass timed out", flush=True)
        return None
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)
    for line in r.stdout.splitlines():
        if line.startswith("ORIGINAL "):
            rates = json.loads(line[len("ORIGINAL "):])
            print(f"  original 0.12.1: converter {rates['converter']:,.0f} rows/s, BatchedDataLoader "
                  f"{rates['BatchedDataLoader']:,.0f} rows/s", flush=True)
            return rates
    tail = (r.stderr or r.stdout).strip().splitlines()[-3:]
    print(f"  ! original 0.12.1 converter pass failed (rc {r.returncode}): {' | '.join(tail)}", flush=True)
    return None


def main() -> None:
    p = argparse.ArgumentParser(description="make_spark_converter's torch loader vs BatchedDataLoader (issue 12).")
    p.add_argument("--quick", action="store_true", help="200,000 rows, 2 repetitions")
    p.add_argument("--reps", type=int, default=None, help="alternating repetitions (default 3, 2 with --quick)")
    p.add_argument("--rows", type=int, default=None, help="DataFrame rows (default 1,000,000; 200,000 with --quick)")
    p.add_argument("--epochs", type=int, default=3, help="epochs per timed pass (default 3)")
    p.add_argument("--no-original", action="store_true", help="skip the original 0.12.1 even if its venv exists")
    args = p.parse_args()
    rows = args.rows or (200_000 if args.quick else 1_000_000)
    reps = args.reps or (2 if args.quick else 3)
    print(f"bench_converter: {rows:,} rows x 20 float32 columns, batch {BATCH}, {WORKERS} reader threads, "
          f"{reps} reps; {common.machine_line()}", flush=True)

    # the original first, before our JVM starts; one epoch per pass and at most 2 reps: its converter's
    # DataLoader collates row by row (~0.1 M rows/s here), a 3-epoch pass of 1M rows would take half a minute
    original = None if args.no_original else original_rates(rows, 1, min(reps, 2))

    from petastorm.pytorch import BatchedDataLoader
    from petastorm.spark import SparkDatasetConverter, make_spark_converter

    cache_dir = os.path.join(common.BENCH_DIR, "converter-cache")
    shutil.rmtree(cache_dir, ignore_errors=True)
    os.makedirs(cache_dir)
    spark = start_spark()
    converter = None
    try:
        spark.conf.set(SparkDatasetConverter.PARENT_CACHE_DIR_URL_CONF, "file://" + cache_dir)
        df = make_dataframe(spark, rows)
        first_s, converter = common.timed(lambda: make_spark_converter(df))
        again_s, again = common.timed(lambda: make_spark_converter(df))
        if again.cache_dir_url != converter.cache_dir_url:
            raise SystemExit("the second make_spark_converter(df) wrote the DataFrame again")
        if len(converter) != rows:
            raise SystemExit(f"the converter holds {len(converter)} rows, expected {rows}")
        print(f"  make_spark_converter: {first_s:.1f} s (materialised {len(converter.file_urls)} files), "
              f"again {again_s:.2f} s (cache found)", flush=True)

        figures = measure({
            "converter": lambda: converter_pass(converter, args.epochs),
            "converter+batched": lambda: converter_pass(converter, args.epochs, BatchedDataLoader),
            "BatchedDataLoader": lambda: batched_pass(converter.file_urls, args.epochs),
        }, reps, rows * args.epochs)
        ref_rate, ref_cpu = figures["BatchedDataLoader"]
        for name, label, target in (("converter", "C1. make_torch_dataloader (DataLoader) / BatchedDataLoader", 0.5),
                                    ("converter+batched",
                                     "C2. make_torch_dataloader(data_loader_fn=BatchedDataLoader) / BatchedDataLoader",
                                     None)):
            rate, cpu = figures[name]
            theirs = None
            if original is not None and name == "converter":
                theirs = original["converter"] / original["BatchedDataLoader"]
            common.report(label, rate / ref_rate, target, original=theirs,
                          detail=f"{rate:,.0f} vs {ref_rate:,.0f} rows/s; CPU-time ratio {ref_cpu / cpu:.2f}x")
        common.report("C3. make_spark_converter again (cache found) / first (materialised)", again_s / first_s, None,
                      op="<=", detail=f"{again_s:.2f} s vs {first_s:.1f} s")
        if original is not None:
            common.report("C4. make_torch_dataloader: ours / the original 0.12.1's (separate runs)",
                          figures["converter"][0] / original["converter"], None,
                          detail=f"{figures['converter'][0]:,.0f} vs {original['converter']:,.0f} rows/s")
    finally:
        if converter is not None:
            converter.delete()
        spark.stop()
        shutil.rmtree(cache_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
