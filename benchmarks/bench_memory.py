"""Peak resident memory of a thread-pool read pass, ours against the original 0.12.1.

Usage::

    python benchmarks/bench_memory.py [--quick] [--no-original]

6. Each pass runs in a fresh interpreter (``read_pass.py``): ``make_reader(url, workers_count=2)`` with
   the default ``results_queue_size`` over the whole (64, 64) ndarray dataset and the whole JPEG dataset;
   the figure is ``ru_maxrss`` of that process. With ``.venv-original`` present the original runs the same
   script on the same files, and the ratio ours / original must be <= 1.0. Rows/s of both are printed too
   (a cold pass: imports and start-up included).
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def bench_rss(name: str, path: str, touch: str, use_original: bool) -> list:
    print(f"[6] peak RSS, thread pool x2, {name} ({path})", flush=True)
    ours = common.run_read_pass(sys.executable, path, mode="reader", pool="thread", touch=touch)
    orig = None
    if use_original:
        orig = common.run_read_pass(common.ORIGINAL_PYTHON, path, mode="reader", pool="thread", touch=touch)
    for who, res in (("ours", ours), ("original 0.12.1", orig)):
        if res:
            print(f"    {who:<16} peak {res['peak_rss_mb']:7.0f} MB (after imports {res['base_rss_mb']:5.0f} MB), "
                  f"{res['rows_per_s']:9,.0f} rows/s, first row {res['first_row_s']:.2f} s", flush=True)
    if not ours:
        return []
    out = [common.report(f"6 peak RSS {name}, thread pool (MB)", ours["peak_rss_mb"], None, unit="MB",
                         original=orig and orig["peak_rss_mb"])]
    if orig:
        out.append(common.report(f"6 peak RSS {name}: ours / original", ours["peak_rss_mb"] / orig["peak_rss_mb"],
                                 1.0, op="<=",
                                 detail=f"rows/s ours {ours['rows_per_s']:,.0f}, original {orig['rows_per_s']:,.0f}"))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Peak RSS of a thread-pool read pass, ours vs the original.")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--no-original", action="store_true")
    args = p.parse_args(argv)
    use_original = not args.no_original and common.original_available()
    print(f"bench_memory: {common.machine_line()}; original 0.12.1: {'yes' if use_original else 'no'}", flush=True)
    bench_rss("ndarray (64,64) float32", common.ndarray_dataset(args.quick), "arr", use_original)
    bench_rss("jpeg 224x224x3", common.jpeg_dataset(args.quick), "image", use_original)
    return 0


if __name__ == "__main__":
    sys.exit(main())
