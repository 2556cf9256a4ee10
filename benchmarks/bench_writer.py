"""Benchmark of the embedded writer: ``write_dataset`` rows/s with 1 and 2 workers, against a plain loop.

Usage::

    python benchmarks/bench_writer.py [--rows 2000] [--repeats 3] [--workers 2] [--dir DIR]

Rows follow the hello-world schema: an int32 ``id``, a 128x256x3 uint8 image stored as PNG and a
4x128x30x3 uint8 array stored as ``.npy`` (about 144 KB of raw data per row; the PNG encode dominates).
The same in-memory rows (256 distinct images and arrays, reused) are written by

- ``plain loop``: ``codec.encode`` per cell in one process, then one ``pyarrow.parquet.write_table``;
- ``write_dataset, 1 worker``: encoding in this process;
- ``write_dataset, N workers``: encoding in N processes (pool start-up included in the time).

Each variant runs ``--repeats`` times after one warm-up run; the best time counts (the machine may be
shared), and a pure-Python loop in 1 and N processes shows how much parallelism the machine gives at the
time (other processes take cores: the figures are only comparable to that). "CPU ms/row" sums this process and its descendants (psutil), measured in one more run (the
sampler costs CPU itself, so it stays out of the timed runs); "cores used" is that run's CPU / wall time. Note that ``write_dataset`` with 1 worker already writes Parquet in a second thread, so it uses
more than one core. Target: N=2 workers >= 1.7x one worker on a 2-core machine. The load average is printed because
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


class CpuMeter:
    """CPU seconds (user + system) of this process and all its descendants (the encoding workers are
    children of the fork server), sampled every 0.2 s by a thread; None without psutil."""

    def __init__(self) -> None:
        try:
            import psutil
        except ImportError:
            self._psutil = None
            return
        self._psutil = psutil
        self._me = psutil.Process()

    def measure(self, fn) -> tuple[float, float | None]:
        if self._psutil is None:
            start = time.perf_counter()
            fn()
            return time.perf_counter() - start, None
        import threading

        seen: dict = {}
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                for child in self._me.children(recursive=True):
                    try:
                        t = child.cpu_times()
                        seen[child.pid] = t.user + t.system
                    except self._psutil.Error:
                        pass
                done.wait(0.2)

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        time.sleep(0.05)
        base_children = dict(seen)
        own = self._me.cpu_times()
        start = time.perf_counter()
        fn()
        wall = time.perf_counter() - start
        own_after = self._me.cpu_times()
        done.set()
        thread.join()
        children = sum(v - base_children.get(pid, 0.0) for pid, v in seen.items())
        return wall, (own_after.user + own_after.system - own.user - own.system) + children


def _spin(n: int) -> int:
    x = 0
    for i in range(n):
        x += i
    return x


def parallel_capacity(workers: int, n: int = 10_000_000) -> float:
    """Speed-up of ``workers`` processes running a pure-Python loop over one process: what this machine
    gives right now to perfectly parallel work (below ``workers`` when other processes take cores)."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        pool.map(_spin, [1000] * workers)  # started
        start = time.perf_counter()
        _spin(n)
        one = time.perf_counter() - start
        start = time.perf_counter()
        pool.map(_spin, [n] * workers)
        many = time.perf_counter() - start
    return workers * one / many


def best_time(fn, repeats: int, meter: CpuMeter) -> tuple[float, float | None, float]:
    """Best wall time of ``repeats`` plain runs, and CPU seconds of one more run with the meter on (the
    sampler costs CPU itself, so it stays out of the timed runs)."""
    fn()  # warm-up: imports, OpenCV, the fork server
    walls = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        walls.append(time.perf_counter() - start)
    metered_wall, cpu = meter.measure(fn)
    return min(walls), cpu, metered_wall


def main(argv: list | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--dir", default=None, help="where to write (default: the system temp directory)")
    args = parser.parse_args(argv)

    rows = make_rows(args.rows)
    work = tempfile.mkdtemp(prefix="bench_writer_", dir=args.dir)
    target = os.path.join(work, "ds")

    def run_plain() -> None:
        shutil.rmtree(target, ignore_errors=True)
        plain_loop(rows, target)

    def run_writer(workers: int):
        def run() -> None:
            write_dataset(target, SCHEMA, rows, workers_count=workers, progress=False, overwrite=True)
        return run

    meter = CpuMeter()
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    capacity_before = parallel_capacity(args.workers)
    try:
        results = [("plain loop (encode + write_table)", best_time(run_plain, args.repeats, meter)),
                   ("write_dataset, 1 worker", best_time(run_writer(1), args.repeats, meter)),
                   (f"write_dataset, {args.workers} workers", best_time(run_writer(args.workers), args.repeats, meter))]
    finally:
        shutil.rmtree(work, ignore_errors=True)

    capacity = (capacity_before + parallel_capacity(args.workers)) / 2
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"bench_writer: {args.rows} rows, best of {args.repeats}, {os.cpu_count()} CPUs, "
          f"1-min load average {load_before[0]:.2f} before, {load[0]:.2f} after")
    print(f"{'variant':<38}{'seconds':>9}{'rows/s':>10}{'CPU ms/row':>12}{'cores used':>12}")
    for name, (seconds, cpu, metered_wall) in results:
        cpu_text = f"{cpu / args.rows * 1e3:>12.2f}{cpu / metered_wall:>12.2f}" if cpu is not None else f"{'n/a':>24}"
        print(f"{name:<38}{seconds:>9.2f}{args.rows / seconds:>10.0f}{cpu_text}")
    plain, one, many = (args.rows / s for _, (s, _, _) in results)
    print(f"ratio {args.workers} workers / 1 worker: {many / one:.2f}x (target >= {TARGET}x); this machine gave "
          f"{capacity:.2f}x to {args.workers} processes of a pure-Python loop during the run")
    print(f"ratio 1 worker / plain loop: {one / plain:.2f}x; {args.workers} workers / plain loop: {many / plain:.2f}x")
    cpu_one, cpu_many = results[1][1][1], results[2][1][1]
    if cpu_one and cpu_many:
        bound = min(args.workers, os.cpu_count() or 1) * cpu_one / cpu_many
        print(f"CPU per row, {args.workers} workers / 1 worker: {cpu_many / cpu_one:.2f}x; speed-up bound on "
              f"{min(args.workers, os.cpu_count() or 1)} idle cores: {bound:.2f}x")
    return 0


if __name__ == "__main__":  # the guard matters: encoding processes import this module
    sys.exit(main())
