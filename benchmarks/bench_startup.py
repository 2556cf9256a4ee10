"""Start-up and shut-down: many small files, and the process pool.

Usage::

    python benchmarks/bench_startup.py [--quick] [--files 2000] [--no-original]

5. A Petastorm dataset of ``--files`` one-row-group files (10 rows each): seconds from the
   ``make_reader(...)`` call to the first row (thread pool, 2 workers; imports and page cache warm), against
   the seconds ``pyarrow.dataset.dataset(path)`` takes to discover the same files.          target <= 2x
   Then ``stop(); join()`` right after the first row, with the workers busy.                target <= 1 s
4. Process-pool start-up: ``make_reader(..., reader_pool_type='process', workers_count=2)`` call to the
   first row on the (64, 64) ndarray dataset, in a fresh interpreter after ``import petastorm``
   ("cold": includes starting multiprocessing's fork server; best of 3 interpreters) and for a second
   reader in the same interpreter ("warm").                                                  target < 0.3 s

Also printed for information: the thread-pool first row in a fresh interpreter (every lazy import paid).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def discovery_seconds(path: str) -> float:
    import pyarrow.dataset as ds

    t0 = time.perf_counter()
    dataset = ds.dataset(path, format="parquet")
    dataset.files  # noqa: B018 - the listing is what discovery produces
    return time.perf_counter() - t0


def first_row_and_stop(url: str, factory, pool: str = "thread") -> tuple[float, float]:
    """(seconds to the first row, seconds of ``stop(); join()`` right after it)."""
    t0 = time.perf_counter()
    reader = factory(url, reader_pool_type=pool, workers_count=2, num_epochs=1)
    next(reader)
    first = time.perf_counter() - t0
    t1 = time.perf_counter()
    reader.stop()
    reader.join()
    return first, time.perf_counter() - t1


def bench_small_files(n_files: int, reps: int, use_original: bool) -> list:
    from petastorm import make_batch_reader, make_reader

    path = common.small_files_dataset(n_files)
    url = "file://" + path
    print(f"[5] start-up on {n_files} small files ({path})", flush=True)
    first_row_and_stop(url, make_reader)  # imports, page cache
    disc, firsts, stops, bfirsts = [], [], [], []
    for _ in range(reps):
        disc.append(discovery_seconds(path))
        f, s = first_row_and_stop(url, make_reader)
        firsts.append(f)
        stops.append(s)
        bfirsts.append(first_row_and_stop(url, make_batch_reader)[0])
    d, f, s, b = min(disc), min(firsts), max(stops), min(bfirsts)
    print(f"    pyarrow.dataset discovery {d:.3f} s; make_reader first row {f:.3f} s (all: "
          f"{', '.join(f'{x:.3f}' for x in firsts)}); make_batch_reader first row {b:.3f} s", flush=True)
    orig = None
    if use_original:
        orig = common.run_read_pass(common.ORIGINAL_PYTHON, path, mode="reader", pool="thread", warmup=True,
                                    max_rows=1)
        if orig:
            print(f"    original 0.12.1: first row {orig['first_row_s']:.3f} s, stop+join {orig['stop_join_s']:.3f} s",
                  flush=True)
    out = [common.report(f"5a first row, {n_files} files / pyarrow discovery", f / d, 2.0, op="<=",
                         original=orig and orig["first_row_s"] / d,
                         detail=f"first row {f:.3f} s, discovery {d:.3f} s"),
           common.report(f"5b batch reader first row, {n_files} files / discovery", b / d, 2.0, op="<="),
           common.report("5c stop(); join() after first row (thread, s)", s, 1.0, op="<=", unit="s",
                         original=orig and orig["stop_join_s"])]
    return out


def _best_cold(python: str, path: str, who: str, runs: int = 3, extra_env: "dict | None" = None) -> "dict | None":
    """The process-pool first-row pass with the best first row among ``runs`` fresh interpreters, like the
    other figures (one cold start moves by +-0.2 s with the load); all of them are printed."""
    colds = [c for c in (common.run_read_pass(python, path, mode="reader", pool="process", max_rows=1,
                                              extra_env=extra_env)
                         for _ in range(runs)) if c]
    if not colds:
        return None
    print(f"    {who}: process pool first row, fresh interpreters: "
          + ", ".join(f"{c['first_row_s']:.3f} s" for c in colds), flush=True)
    return min(colds, key=lambda c: c["first_row_s"])


def bench_process_startup(quick: bool, use_original: bool) -> list:
    path = common.ndarray_dataset(quick)
    print(f"[4c] process-pool start-up ({path})", flush=True)
    ours = sys.executable
    cold = _best_cold(ours, path, "ours")
    # the first row above comes from the start-up lane (the parent, while the workers start): this one is
    # the first row made by a worker process
    cold_worker = _best_cold(ours, path, "ours, start-up lane off", extra_env={"PETASTORM_STARTUP_LANE": "0"})
    warm = common.run_read_pass(ours, path, mode="reader", pool="process", max_rows=1, warmup=True)
    thread_cold = common.run_read_pass(ours, path, mode="reader", pool="thread", max_rows=1)
    thread_warm = common.run_read_pass(ours, path, mode="reader", pool="thread", max_rows=1, warmup=True)
    ocold = owarm = None
    if use_original:
        ocold = _best_cold(common.ORIGINAL_PYTHON, path, "original 0.12.1")
        owarm = common.run_read_pass(common.ORIGINAL_PYTHON, path, mode="reader", pool="process", max_rows=1,
                                     warmup=True)
    out = []
    if cold:
        out.append(common.report("4c process pool first row, fresh interpreter (s)", cold["first_row_s"], 0.3,
                                 op="<=", unit="s", original=ocold and ocold["first_row_s"],
                                 detail=f"stop+join {cold['stop_join_s']:.3f} s"))
    if cold_worker:
        out.append(common.report("info: 4c with PETASTORM_STARTUP_LANE=0, first row from a worker (s)",
                                 cold_worker["first_row_s"], None, unit="s"))
    if warm:
        out.append(common.report("4d process pool first row, second reader (s)", warm["first_row_s"], 0.3,
                                 op="<=", unit="s", original=owarm and owarm["first_row_s"],
                                 detail=f"stop+join {warm['stop_join_s']:.3f} s"))
    if thread_cold and thread_warm:
        out.append(common.report("info: thread pool first row, fresh interpreter (s)", thread_cold["first_row_s"],
                                 None, unit="s", detail=f"second reader {thread_warm['first_row_s']:.3f} s"))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Start-up and shut-down of the readers.")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--files", type=int, default=2000)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--no-original", action="store_true")
    args = p.parse_args(argv)
    use_original = common.original_wanted("bench_startup", args.no_original)
    return common.run_parts({"small_files": lambda: bench_small_files(args.files, args.reps, use_original),
                             "process_startup": lambda: bench_process_startup(args.quick, use_original)})

if __name__ == "__main__":
    sys.exit(main())
