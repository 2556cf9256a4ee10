"""The Spark converter's torch loader against ``BatchedDataLoader`` on the same cached files (issue 12).

Usage::

    python benchmarks/bench_converter.py [--quick] [--reps 3] [--rows N] [--epochs 3]

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
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
import warnings
from typing import Callable, Dict, List

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


def main() -> None:
    p = argparse.ArgumentParser(description="make_spark_converter's torch loader vs BatchedDataLoader (issue 12).")
    p.add_argument("--quick", action="store_true", help="200,000 rows, 2 repetitions")
    p.add_argument("--reps", type=int, default=None, help="alternating repetitions (default 3, 2 with --quick)")
    p.add_argument("--rows", type=int, default=None, help="DataFrame rows (default 1,000,000; 200,000 with --quick)")
    p.add_argument("--epochs", type=int, default=3, help="epochs per timed pass (default 3)")
    args = p.parse_args()
    rows = args.rows or (200_000 if args.quick else 1_000_000)
    reps = args.reps or (2 if args.quick else 3)
    print(f"bench_converter: {rows:,} rows x 20 float32 columns, batch {BATCH}, {WORKERS} reader threads, "
          f"{reps} reps; {common.machine_line()}", flush=True)

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
            common.report(label, rate / ref_rate, target,
                          detail=f"{rate:,.0f} vs {ref_rate:,.0f} rows/s; CPU-time ratio {ref_cpu / cpu:.2f}x")
        common.report("C3. make_spark_converter again (cache found) / first (materialised)", again_s / first_s, None,
                      op="<=", detail=f"{again_s:.2f} s vs {first_s:.1f} s")
    finally:
        if converter is not None:
            converter.delete()
        spark.stop()
        shutil.rmtree(cache_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
