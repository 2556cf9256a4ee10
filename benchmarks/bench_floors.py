"""What the frameworks charge per batch, alone: the floors under the loaders' figures that are still short.

Usage::

    python benchmarks/bench_floors.py [--quick] [--only torch,jax]

Nothing here reads a file. Each figure is the CPU time (this process, all threads; best of several passes)
of one framework call pattern a loader cannot avoid, per 1024-row batch of 20 float32 columns (dataset 1 of
``bench_loaders.py``), printed as information (no target) beside the share of the limit (~34 us of CPU per 1024
rows) that the loader's target leaves once the reader's ~29 us are paid:

``torch``
    20 tensors per batch as views (``unbind`` of a ``(k, 1024)`` view per column: how ``BatchedDataLoader``
    makes them), made and freed; one fresh copy of a ``(20, 1024)`` block of a column-major table plus its 20
    views, and the same from a batch-major table copied 8 batches at a time (how ``InMemBatchedDataLoader``
    serves a later epoch in order: 0.12.1 gives new memory every batch).
``jax``
    20 ``jax.Array`` per batch: a jitted cut of a placed page into 16 x 20 outputs; ``make_jax_iterator``'s own
    cutter (``G = 96 // 20`` batches a call, its outputs chained so that XLA runs the copies on one thread); and
    ``jax.device_put`` of each column's slice.

``benchmarks/README.md`` ("Floors of the four figures still short") compares these with the targets.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Callable

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

COLUMNS = 20
BATCH = 1024
GROUP_BATCHES = 128      # a reader batch of dataset 1: 131,072 rows
CUT_BATCHES = 16         # batches per jitted cut (more outputs per call cost more each: 128 -> 4.6 us per array)


def best_cpu_us(fn: Callable[[], object], calls: int, passes: int = 7) -> float:
    """Least CPU time of ``passes`` passes of ``calls`` calls of ``fn``, in us per call."""
    best = float("inf")
    for _ in range(passes):
        t = time.process_time()
        for _ in range(calls):
            fn()
        best = min(best, time.process_time() - t)
    return best * 1e6 / calls


def bench_torch(quick: bool) -> None:
    import torch

    rng = np.random.default_rng(0)
    group = [rng.random(BATCH * GROUP_BATCHES, dtype=np.float32) for _ in range(COLUMNS)]
    calls = 20 if quick else 200

    def views() -> None:  # every view of a reader batch made, then all freed
        per_column = [torch.from_numpy(c.reshape(GROUP_BATCHES, BATCH)).unbind(0) for c in group]
        del per_column
    us = best_cpu_us(views, calls) / GROUP_BATCHES
    common.report("torch: 20 views (unbind) made and freed, per batch", us, None, unit=" us",
                  detail="BatchedDataLoader's way; L1 (0.8x) leaves ~13 us per batch for batching and tensors")

    rows = BATCH * GROUP_BATCHES * (1 if quick else 8)
    block = rng.random((COLUMNS, rows), dtype=np.float32)
    starts = range(0, rows, BATCH)

    def served() -> None:  # a fresh copy per batch of a column-major table (20 strided slices), 20 views of it
        for s in starts:
            torch.from_numpy(block[:, s:s + BATCH].copy()).unbind(0)
    us = best_cpu_us(served, 1, passes=5) / len(starts)
    common.report("torch: a fresh (20, 1024) copy of a column-major table + 20 views, per batch", us, None,
                  unit=" us", detail="InMemBatchedDataLoader's later epochs before the batch-major table")

    batch_major = np.ascontiguousarray(block.reshape(COLUMNS, -1, BATCH).transpose(1, 0, 2))  # (batches, 20, 1024)
    group = 8  # inmem_table.GROUP_BATCHES

    def served_batch_major() -> None:  # copies of 8 contiguous batches, each batch 20 views of its own part
        for b in range(0, len(batch_major), group):
            copy = batch_major[b:b + group].copy()
            for i in range(len(copy)):
                torch.from_numpy(copy[i]).unbind(0)
    us = best_cpu_us(served_batch_major, 1, passes=5) / len(batch_major)
    common.report("torch: a batch-major table copied 8 batches at a time + 20 views, per batch", us, None,
                  unit=" us", detail="InMemBatchedDataLoader's later epochs (shuffle=False); L7 (5x) leaves ~12 us "
                                     "per batch")


def bench_jax(quick: bool) -> None:
    import jax

    rng = np.random.default_rng(0)
    batches = CUT_BATCHES
    page = jax.device_put(rng.random((COLUMNS, BATCH * batches), dtype=np.float32))
    cut = jax.jit(lambda p: [p[j, i * BATCH:(i + 1) * BATCH] for i in range(batches) for j in range(COLUMNS)])
    jax.block_until_ready(cut(page))  # compiled outside the timing
    us = best_cpu_us(lambda: jax.block_until_ready(cut(page)), 5 if quick else 40) / batches
    common.report("jax: 20 arrays cut by one jitted call, per batch", us, None, unit=" us",
                  detail="16 x 20 independent outputs: XLA spreads their copies over its threads")

    from petastorm.jax_impl.chunks import _cutter, batches_per_call

    g = batches_per_call(COLUMNS)  # make_jax_iterator's own cutter: g batches per call, outputs chained
    chained = _cutter((COLUMNS,), BATCH, g)
    pages = (page,)
    keep = np.bool_(True)
    starts = [np.int32(c * g * BATCH) for c in range(batches // g)]
    jax.block_until_ready(chained(pages, starts[0], keep))  # compiled outside the timing

    def iterator_cuts() -> None:
        for start in starts:
            jax.block_until_ready(chained(pages, start, keep)[-1])
    us = best_cpu_us(iterator_cuts, 5 if quick else 40) / batches
    common.report(f"jax: 20 arrays by make_jax_iterator's chained cutter ({g} batches a call), per batch", us, None,
                  unit=" us", detail="make_jax_iterator's way on a CPU device (page copy aside); L5 (0.5x) leaves ~39 us")

    cols = [rng.random(BATCH, dtype=np.float32) for _ in range(COLUMNS)]
    dev = jax.devices()[0]
    us = best_cpu_us(lambda: jax.block_until_ready([jax.device_put(c, dev) for c in cols]), 20 if quick else 100)
    common.report("jax: 20 jax.device_put calls, per batch", us, None, unit=" us")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--only", default="torch,jax")
    args = p.parse_args()
    print(f"bench_floors: {common.machine_line()}", flush=True)
    parts = {"torch": lambda: bench_torch(args.quick), "jax": lambda: bench_jax(args.quick)}
    return common.run_parts(parts, [s for s in args.only.split(",") if s])


if __name__ == "__main__":
    sys.exit(main())
