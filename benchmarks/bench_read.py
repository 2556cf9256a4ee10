"""Read throughput against the limits on the same files, measured side by side in one run.

Usage::

    python benchmarks/bench_read.py [--quick] [--reps 3] [--only columns,ndarray,jpeg] [--no-original]

1. ``columns``: ``make_batch_reader``, 20 float32 columns, thread pool, 2 workers, vs
   ``ParquetFile.read_row_group`` in 2 threads + ``to_numpy`` per column.           target >= 0.8x
2. ``ndarray``: ``make_reader``, a (64, 64) float32 ``NdarrayCodec`` field, 2 workers, vs a single-thread
   loop of ``read_row_group`` + one ``np.frombuffer`` view per cell, npy header parsed once.  >= 1.0x
3. ``jpeg``: ``make_reader``, 224x224x3 JPEG field, 2 workers, vs 2x the single-thread ``cv2.imdecode``
   rate of the same stored bytes.                                                      >= 0.85x
4. process pool vs thread pool (2 workers) on ``ndarray`` and ``jpeg``.                  >= 0.8x

Rates are rows/s from the ``make_*reader`` call to the last row (start-up included; imports and the
page cache are warmed by a throw-away reader first), best of ``--reps`` runs that alternate limit and
reader (JPEG: one run fewer). With each in-process figure goes the CPU time per row of the whole process
(all threads): "CPU-time ratio" = limit CPU/row / ours CPU/row is the load-insensitive companion of the
wall-clock ratio on this shared machine. Every consumer reads the last element of the big field of each row (batch), so results that are
mapped lazily are paid for. When ``.venv-original`` exists, the original 0.12.1 runs the same read in a
fresh interpreter (``read_pass.py --warmup``) and its fraction of the same limit is printed in brackets.
"""
from __future__ import annotations

import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

# --- limits ------------------------------------------------------------------------------------------------------

def limit_ndarray(path: str) -> int:
    """Rows read in one thread: ``read_row_group``, then one ``np.frombuffer`` view per cell."""
    header = None
    rows, check = 0, 0.0
    for table in common.row_group_tables(path, ["id", "arr"]):
        ids = table.column("id").to_numpy()
        offsets, data = common.binary_column(table, "arr")
        if header is None:
            header = common.npy_header(data[offsets[0]:offsets[1]].tobytes())
        skip, shape, dtype, count = header
        for i in range(len(ids)):
            a = np.frombuffer(data, dtype=dtype, count=count, offset=int(offsets[i]) + skip).reshape(shape)
            check += float(a[-1, -1])
        rows += len(ids)
    return rows


def limit_jpeg(path: str) -> int:
    """Rows decoded in one thread: ``read_row_group`` then ``cv2.imdecode`` of every stored image."""
    import cv2

    rows, check = 0, 0.0
    for table in common.row_group_tables(path, ["id", "image"]):
        ids = table.column("id").to_numpy()
        offsets, data = common.binary_column(table, "image")
        for i in range(len(ids)):
            img = cv2.imdecode(data[offsets[i]:offsets[i + 1]], cv2.IMREAD_UNCHANGED)
            check += float(img[-1, -1, -1])
        rows += len(ids)
    return rows


# --- our reader ----------------------------------------------------------------------------------------------------

def ours(path: str, mode: str, pool: str, touch: str, workers: int = 2) -> tuple[int, float]:
    """(rows, seconds to first row) of one full pass."""
    from petastorm import make_batch_reader, make_reader

    factory = make_reader if mode == "reader" else make_batch_reader
    t0 = time.perf_counter()
    first = None
    rows, check = 0, 0.0
    with factory("file://" + path, reader_pool_type=pool, workers_count=workers, num_epochs=1) as reader:
        for out in reader:
            if first is None:
                first = time.perf_counter() - t0
            value = getattr(out, touch)
            check += float(value.reshape(-1)[-1])
            rows += len(value) if mode == "batch" else 1
    return rows, first


def _rate(fn) -> tuple[float, int, float]:
    """(rows/s, rows, CPU microseconds per row of this process, all its threads)."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    rows = out[0] if isinstance(out, tuple) else out
    return rows / dt, rows, cpu / rows * 1e6


CPU = {}  # case name -> least CPU us/row seen (in-process cases only: worker processes are not counted)


def measure(cases: dict, reps: int) -> dict:
    """Alternate the cases ``reps`` times; best rows/s of each (least CPU per row into ``CPU``)."""
    CPU.clear()
    rates: dict = {k: [] for k in cases}
    for _ in range(reps):
        for name, fn in cases.items():
            r, rows, cpu = _rate(fn)
            rates[name].append(r)
            note = "" if "process" in name else f"  CPU {cpu:8.3g} us/row"
            if "process" not in name:
                CPU[name] = min(CPU.get(name, cpu), cpu)
            print(f"    {name:<28} {r:>12,.0f} rows/s{note}  ({rows:,} rows)", flush=True)
    return {k: common.best_rate(v) for k, v in rates.items()}


def _cpu_report(figure: str, limit_case: str, ours_case: str) -> None:
    """Load-insensitive companion figure: limit CPU per row / our CPU per row (1.0 = as lean as the limit;
    with two idle cores the wall ratio would approach it)."""
    lim, us = CPU.get(limit_case), CPU.get(ours_case)
    if lim and us:
        common.report(f"{figure}, CPU-time ratio", lim / us, None,
                      detail=f"CPU us/row: limit {lim:.3g}, ours {us:.3g}")


def _original(path: str, mode: str, pool: str, touch: str, limit: float, use: bool) -> dict | None:
    if not use:
        return None
    res = common.run_read_pass(common.ORIGINAL_PYTHON, path, mode=mode, pool=pool, touch=touch, warmup=True)
    if res:
        print(f"    original 0.12.1 {pool:<11} {res['rows_per_s']:>12,.0f} rows/s  (first row "
              f"{res['first_row_s']:.2f} s, = {res['rows_per_s'] / limit:.2f}x the limit)", flush=True)
    return res


def _warm(path: str, mode: str, pool: str) -> None:
    """One row through a throw-away reader: imports and lazy set-up are not part of the timed passes."""
    from petastorm import make_batch_reader, make_reader

    factory = make_reader if mode == "reader" else make_batch_reader
    with factory("file://" + path, reader_pool_type=pool, workers_count=2, num_epochs=1) as r:
        next(r)


def bench_columns(quick: bool, reps: int, use_original: bool) -> list:
    path = common.columns_dataset(quick)
    print(f"[1] make_batch_reader, 20 float32 columns ({path})", flush=True)
    _warm(path, "batch", "thread")
    common.limit_columns(path)
    best = measure({"limit: pyarrow 2 threads": lambda: common.limit_columns(path),
                    "ours: batch thread x2": lambda: ours(path, "batch", "thread", "c00")}, reps)
    limit = best["limit: pyarrow 2 threads"]
    orig = _original(path, "batch", "thread", "c00", limit, use_original)
    out = [common.report("1 batch reader 20xfloat32 / pyarrow 2 threads", best["ours: batch thread x2"] / limit, 0.8,
                         original=orig and orig["rows_per_s"] / limit, detail=f"limit {limit:,.0f} rows/s")]
    _cpu_report("1 batch reader", "limit: pyarrow 2 threads", "ours: batch thread x2")
    return out


def _bench_reader_field(path: str, touch: str, limit_name: str, limit_fn, limit_factor: int, reps: int,
                        use_original: bool, processes: bool, figure: str, cpu_figure: str, process_figure: str,
                        target: float) -> list:
    """``make_reader`` over ``path`` in threads (and processes) against ``limit_factor`` x the limit loop."""
    _warm(path, "reader", "thread")
    ours_thread, ours_process = "ours: reader thread x2", "ours: reader process x2"
    cases = {limit_name: limit_fn, ours_thread: lambda: ours(path, "reader", "thread", touch)}
    if processes:
        _warm(path, "reader", "process")
        cases[ours_process] = lambda: ours(path, "reader", "process", touch)
    best = measure(cases, reps)
    limit = limit_factor * best[limit_name]
    orig = _original(path, "reader", "thread", touch, limit, use_original)
    detail = (f"limit {limit_factor} x {limit / limit_factor:,.0f} rows/s" if limit_factor != 1
              else f"limit {limit:,.0f} rows/s")
    out = [common.report(figure, best[ours_thread] / limit, target, original=orig and orig["rows_per_s"] / limit,
                         detail=detail)]
    _cpu_report(cpu_figure, limit_name, ours_thread)
    if processes:
        origp = _original(path, "reader", "process", touch, limit, use_original)
        out.append(common.report(process_figure, best[ours_process] / best[ours_thread], 0.8,
                                 original=(orig and origp and origp["rows_per_s"] / orig["rows_per_s"]) or None))
    return out


def bench_ndarray(quick: bool, reps: int, use_original: bool, processes: bool = True) -> list:
    path = common.ndarray_dataset(quick)
    print(f"[2] make_reader, (64, 64) float32 NdarrayCodec ({path})", flush=True)
    return _bench_reader_field(path, "arr", "limit: frombuffer 1 thread", lambda: limit_ndarray(path), 1, reps,
                               use_original, processes, "2 reader ndarray(64,64) / frombuffer 1 thread",
                               "2 reader ndarray", "4a process / thread pool, ndarray", 1.0)


def bench_jpeg(quick: bool, reps: int, use_original: bool, processes: bool = True) -> list:
    path = common.jpeg_dataset(quick)
    print(f"[3] make_reader, 224x224x3 JPEG ({path})", flush=True)
    return _bench_reader_field(path, "image", "limit: imdecode 1 thread", lambda: limit_jpeg(path), 2,
                               max(1, reps - 1), use_original, processes,
                               "3 reader jpeg 224x224x3 / 2x imdecode 1 thread", "3 reader jpeg",
                               "4b process / thread pool, jpeg", 0.85)


def main(argv=None) -> int:
    p = common.bench_parser("Read throughput of make_reader/make_batch_reader vs the limits.",
                            "small datasets (about 50 MB each), 2 repetitions", 4, "columns,ndarray,jpeg")
    p.add_argument("--no-process", action="store_true", help="skip the process-pool passes")
    args = p.parse_args(argv)
    reps, use_original = common.start("bench_read", args)
    parts = {"columns": lambda: bench_columns(args.quick, reps, use_original),
             "ndarray": lambda: bench_ndarray(args.quick, reps, use_original, not args.no_process),
             "jpeg": lambda: bench_jpeg(args.quick, reps, use_original, not args.no_process)}
    return common.run_parts(parts, args.only.split(","))


if __name__ == "__main__":
    sys.exit(main())
