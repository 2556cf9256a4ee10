"""Benchmark of the embedded writer: ``write_dataset`` rows/s with 1 and 2 workers, against a plain loop.

Usage::

    python benchmarks/bench_writer.py [--rows 2000] [--repeats 3] [--workers 2]

Rows follow the hello-world schema: an int32 ``id``, a 128x256x3 uint8 image stored as PNG and a
4x128x30x3 uint8 array stored as ``.npy`` (about 144 KB of raw data per row; the PNG encode dominates).
The same in-memory rows (256 distinct images and arrays, reused) are written by

- ``plain loop``: ``codec.encode`` per cell in one process, then one ``pyarrow.parquet.write_table``;
- ``write_dataset, 1 worker``: encoding in this process;
- ``write_dataset, N workers``: encoding in N processes (pool start-up included in the time).

Each variant runs ``--repeats`` times after one warm-up run; the best time counts (the machine may be
shared). Target: N=2 workers >= 1.7x one worker on a 2-core machine. The load average is printed because
other processes on the machine take cores away from the workers.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from petastorm.codecs import CompressedImageCodec, NdarrayCodec, ScalarCodec
from petastorm.etl.writer import write_dataset
from petastorm.spark_types import spark_type
from petastorm.unischema import Unischema, UnischemaField

TARGET = 1.7

SCHEMA = Unischema("HelloWorldLike", [
    UnischemaField("id", np.int32, (), ScalarCodec(spark_type("IntegerType")), False),
    UnischemaField("image1", np.uint8, (128, 256, 3), CompressedImageCodec("png"), False),
    UnischemaField("array_4d", np.uint8, (None, 128, 30, None), NdarrayCodec(), False),
])


def make_rows(n: int, distinct: int = 256) -> list:
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (128, 256, 3), dtype=np.uint8) for _ in range(min(n, distinct))]
    arrays = [rng.integers(0, 255, (4, 128, 30, 3), dtype=np.uint8) for _ in range(min(n, distinct))]
    return [{"id": i, "image1": images[i % len(images)], "array_4d": arrays[i % len(arrays)]} for i in range(n)]


def plain_loop(rows: list, path: str) -> None:
    """What one would write by hand: encode every cell, one table, one write_table."""
    columns = {name: [] for name in SCHEMA.fields}
    for row in rows:
        for name, field in SCHEMA.fields.items():
            columns[name].append(field.codec.encode(field, row[name]))
    table = pa.table({"id": pa.array(columns["id"], pa.int32()),
                      "image1": pa.array([bytes(v) for v in columns["image1"]], pa.binary()),
                      "array_4d": pa.array([bytes(v) for v in columns["array_4d"]], pa.binary())})
    os.makedirs(path, exist_ok=True)
    pq.write_table(table, os.path.join(path, "part-0.parquet"), row_group_size=len(rows))


def best_time(fn, repeats: int) -> float:
    fn()  # warm-up: imports, OpenCV, the fork server
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv: list | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)

    rows = make_rows(args.rows)
    work = tempfile.mkdtemp(prefix="bench_writer_")
    target = os.path.join(work, "ds")

    def run_plain() -> None:
        shutil.rmtree(target, ignore_errors=True)
        plain_loop(rows, target)

    def run_writer(workers: int):
        def run() -> None:
            write_dataset(target, SCHEMA, rows, workers_count=workers, progress=False, overwrite=True)
        return run

    try:
        results = [("plain loop (encode + write_table)", best_time(run_plain, args.repeats)),
                   ("write_dataset, 1 worker", best_time(run_writer(1), args.repeats)),
                   (f"write_dataset, {args.workers} workers", best_time(run_writer(args.workers), args.repeats))]
    finally:
        shutil.rmtree(work, ignore_errors=True)

    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"bench_writer: {args.rows} rows, best of {args.repeats}, {os.cpu_count()} CPUs, "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"{'variant':<38}{'seconds':>9}{'rows/s':>10}")
    for name, seconds in results:
        print(f"{name:<38}{seconds:>9.2f}{args.rows / seconds:>10.0f}")
    plain, one, many = (args.rows / s for _, s in results)
    print(f"ratio {args.workers} workers / 1 worker: {many / one:.2f}x (target >= {TARGET}x)")
    print(f"ratio 1 worker / plain loop: {one / plain:.2f}x; {args.workers} workers / plain loop: {many / plain:.2f}x")
    return 0


if __name__ == "__main__":  # the guard matters: encoding processes import this module
    sys.exit(main())
