"""The Hugging Face ``datasets`` peer: one pass over Parquet files as a user would write it; prints ``PASS {json}``.

Runs with the peers' venv (``benchmarks/peers/make_venv.sh``), never with petastorm's::

    bench-out/venv-peers/bin/python benchmarks/peers/hf_pass.py FILE.parquet ... --cache-dir DIR \
        [--batch-size 1024] [--workers 2] [--max-rows N] [--touch c00]

``load_dataset('parquet', data_files=[...], split='train', cache_dir=DIR)`` (converted to Arrow files in DIR
once; ``prepare_s`` is that call's time, the one-time conversion included when the cache was empty), then
``.with_format('torch')`` through ``torch.utils.data.DataLoader(batch_size, num_workers)`` (``--pattern
iter``: ``ds.iter(batch_size)``, contiguous slices in this process). Timed: from the
``DataLoader`` iterator's creation (its worker processes start there) to the last batch. ``cpu_s`` is the CPU
time of this process and of its finished worker processes. The versions of datasets, torch, pyarrow and
fsspec are in the result.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time


def _cpu_s() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="+")
    p.add_argument("--cache-dir", required=True)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--max-rows", type=int, default=0)
    p.add_argument("--touch", default="c00")
    p.add_argument("--pattern", choices=["rows", "iter"], default="rows",
                   help="rows: DataLoader(ds, batch_size, num_workers) as the docs show (each batch fetched by a "
                        "list of row indices and collated); iter: ds.iter(batch_size) in this process, a contiguous "
                        "slice per batch (its fastest sequential read; no workers)")
    args = p.parse_args(argv)
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

    import datasets
    import fsspec
    import pyarrow
    import torch
    from torch.utils.data import DataLoader

    datasets.disable_progress_bars()
    t0 = time.perf_counter()
    ds = datasets.load_dataset("parquet", data_files=list(args.files), split="train", cache_dir=args.cache_dir)
    prepare_s = time.perf_counter() - t0
    ds = ds.with_format("torch")

    if args.pattern == "rows":
        loader = DataLoader(ds, batch_size=args.batch_size, num_workers=args.workers)
    else:
        loader = ds.iter(batch_size=args.batch_size)
    rows, check, first = 0, 0.0, None
    t0, c0 = time.perf_counter(), _cpu_s()
    it = iter(loader)
    for batch in it:
        if first is None:
            first = time.perf_counter() - t0
        col = batch[args.touch]
        rows += len(col)
        check += float(col.reshape(-1)[-1])
        if args.max_rows and rows >= args.max_rows:
            break
    seconds = time.perf_counter() - t0
    del it  # joins the worker processes, so their CPU time is counted
    cpu = _cpu_s() - c0
    print("PASS " + json.dumps({
        "rows": rows, "seconds": seconds, "rows_per_s": rows / seconds if seconds else 0.0, "first_row_s": first,
        "prepare_s": prepare_s, "cpu_s": cpu, "check": check, "num_rows": ds.num_rows,
        "versions": {"datasets": datasets.__version__, "torch": torch.__version__, "pyarrow": pyarrow.__version__,
                     "fsspec": fsspec.__version__, "python": sys.version.split()[0]}}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
