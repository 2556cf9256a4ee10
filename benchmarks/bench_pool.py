"""Micro-benchmark of the pool stage: moving 4 MB float32 batches; process pool start-up time.

Usage::

    python benchmarks/bench_pool.py [--items 300] [--workers 2] [--mb 4]

Prints, for each pool (thread; process with shared memory; process with the in-band pipe fallback),
batches/s and MB/s with a consumer that reads every byte of each batch (``a.sum()``), the CPU time spent
per batch by the consumer and worker processes together (a figure that a busy machine does not skew),
and the ratio of process to thread throughput. Then, for each start method, the start-up time of a process pool
(create + start + first result), cold (first pool in a fresh interpreter: for 'forkserver' this includes
starting the fork server) and warm (a later pool in the same interpreter).
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

from petastorm.reader_impl.pool_factory import make_pool
from petastorm.reader_impl.process import ProcessPool
from petastorm.reader_impl.work_item import ColumnBatch, WorkItem


def batch_factory(nbytes, python_ms=0.0):
    def factory():
        template = np.arange(nbytes // 4, dtype=np.float32)

        def work(item):
            if python_ms:  # per-item work that holds the GIL (per-row Python in a decoder or transform)
                deadline = time.perf_counter() + python_ms / 1000
                while time.perf_counter() < deadline:
                    pass
            return ColumnBatch({"x": template + np.float32(item.position % 7)}, 1, item)  # one fresh array
        return work
    return factory


def tiny_factory():
    def work(item):
        return ColumnBatch({"x": np.zeros(1)}, 1, item)
    return work


def _items(n):
    return (WorkItem(0, i, i, 0, 1) for i in range(n))


def _cpu_s(pids):
    """User + system CPU seconds of these processes (psutil), or None without psutil."""
    try:
        import psutil
    except ImportError:
        return None
    return sum(sum(psutil.Process(p).cpu_times()[:2]) for p in pids)


def throughput(pool, n, nbytes, python_ms=0.0):
    """(batches/s, CPU ms per batch of the whole pool: consumer process + worker processes)."""
    pool.start(batch_factory(nbytes, python_ms))
    list(pool.imap(_items(4)))  # warm up: workers started, segments allocated
    pids = [os.getpid()] + list(pool.diagnostics.get("worker_pids", []))
    cpu0 = _cpu_s(pids)
    t0 = time.perf_counter()
    total = 0.0
    for batch in pool.imap(_items(n)):
        total += float(batch.columns["x"].sum(dtype=np.float64))
    dt = time.perf_counter() - t0
    cpu1 = _cpu_s(pids)
    pool.stop()
    pool.join()
    return n / dt, (None if cpu0 is None else (cpu1 - cpu0) / n * 1000)


def startup(method, reps=3):
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        pool = ProcessPool(2, 4, start_method=method)
        pool.start(tiny_factory)
        next(pool.imap(_items(1)))
        out.append(time.perf_counter() - t0)
        pool.stop()
        pool.join()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=300)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--queue", type=int, default=8)
    ap.add_argument("--mb", type=float, default=4.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--python-ms", type=float, default=0.0,
                    help="milliseconds of GIL-holding Python work per item in the worker (default 0)")
    ap.add_argument("--startup-only", metavar="METHOD", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.startup_only:
        print(json.dumps(startup(args.startup_only)))
        return
    nbytes = int(args.mb * 2 ** 20)
    print(f"{args.items} batches of {args.mb} MB float32, {args.workers} workers, results_queue_size "
          f"{args.queue}, {os.cpu_count()} CPUs, {args.python_ms} ms of Python per item; consumer sums every batch")
    makers = {
        "thread": lambda: make_pool("thread", args.workers, args.queue),
        "process/shm": lambda: ProcessPool(args.workers, args.queue, transport="shm"),
        "process/pipe": lambda: ProcessPool(args.workers, args.queue, transport="pipe"),
    }
    rates = {label: 0.0 for label in makers}
    cpu = {label: float("inf") for label in makers}
    for _round in range(args.rounds):  # interleaved rounds, best kept: the machine may be shared
        for label, make in makers.items():
            bps, cpu_ms = throughput(make(), args.items, nbytes, args.python_ms)
            rates[label] = max(rates[label], bps)
            cpu[label] = min(cpu[label], cpu_ms if cpu_ms is not None else float("inf"))
    for label, bps in rates.items():
        print(f"  {label:13s} {bps:8.1f} batches/s {bps * nbytes / 2 ** 20:9.0f} MB/s  "
              f"{cpu[label]:6.2f} CPU ms/batch  (best of {args.rounds})")
    print(f"  ratio process/shm : thread = {rates['process/shm'] / rates['thread']:.2f}, "
          f"process/pipe : thread = {rates['process/pipe'] / rates['thread']:.2f}")
    print("start-up, create + start + first result, 2 workers (s): cold, then warm x2")
    for method in ("forkserver", "spawn", "fork"):
        res = subprocess.run([sys.executable, __file__, "--startup-only", method], capture_output=True, text=True,
                             check=True)
        times = json.loads(res.stdout.strip().splitlines()[-1])
        print(f"  {method:10s} " + "  ".join(f"{t:.3f}" for t in times))


if __name__ == "__main__":
    main()
