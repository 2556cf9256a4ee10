"""One full read of a dataset in a fresh interpreter; prints ``PASS {json}``.

Runs with any Python that has a ``petastorm`` (ours, or the original 0.12.1 in its own venv as a black
box): it uses only the public ``make_reader`` / ``make_batch_reader`` API, so the same script measures
both. Figures: rows, seconds from the ``make_*reader`` call to the last row, rows/s, seconds to the first
row, ``stop(); join()`` seconds, the RSS after imports and the peak RSS of this process (``ru_maxrss``;
``hwm_mb``: ``VmHWM``, the same peak without what Linux carries over from the parent: ``ru_maxrss`` after
``exec`` is at least the forking process's RSS at the fork, so a parent larger than the pass hides it).

Usage::

    python benchmarks/read_pass.py URL --mode reader|batch --pool thread|process --workers 2 [--touch FIELD]

``--max-rows N`` stops after N rows (``stop(); join()`` is then timed mid-stream).
``--touch FIELD`` reads the last element of ``FIELD`` in every row (reader) or batch (batch), so lazily
mapped results are paid for by the consumer.

``--loader`` puts a framework adapter over the reader and times its batches instead (the same public API in
ours and the original's, where it has it): ``batched`` (``petastorm.pytorch.BatchedDataLoader``),
``dataloader`` (``petastorm.pytorch.DataLoader``, default collate), ``inmem`` (``InMemBatchedDataLoader``
over ``--inmem-epochs`` epochs; ``epoch_seconds`` lists each epoch's time), ``tf``
(``petastorm.tf_utils.make_petastorm_dataset``, eager) and ``jax`` (``petastorm.jax.make_jax_iterator``),
with ``--batch-size`` and ``--shuffle`` (``shuffling_queue_capacity``). ``--import torch`` imports a module
before the RSS baseline is taken (so a reader-only pass can carry the framework's own memory too).
``cpu_s`` is the CPU time of this process (all threads) over the timed read.
"""
import argparse
import json
import os
import resource
import sys
import time


def _rss_mb(key: str = "VmRSS") -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("url")
    p.add_argument("--mode", choices=["reader", "batch"], default="reader")
    p.add_argument("--pool", choices=["thread", "process", "dummy"], default="thread")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--touch", default="")
    p.add_argument("--max-rows", type=int, default=0, help="stop after this many rows (then stop(); join())")
    p.add_argument("--queue", type=int, default=0, help="results_queue_size (default: the library's default)")
    p.add_argument("--loader", choices=["none", "batched", "dataloader", "inmem", "tf", "jax"], default="none")
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--shuffle", type=int, default=0, help="the loader's shuffling_queue_capacity")
    p.add_argument("--inmem-epochs", type=int, default=4)
    p.add_argument("--import", dest="imports", action="append", default=[],
                   help="module imported before the RSS baseline (repeatable), e.g. torch")
    p.add_argument("--warmup", action="store_true",
                   help="first read one row with a throw-away reader (imports, page cache, lazy set-up)")
    args = p.parse_args(argv)

    import importlib

    import numpy  # noqa: F401 - imports are not part of the timed read

    import petastorm
    from petastorm import make_batch_reader, make_reader

    for name in args.imports:
        importlib.import_module(name)
    wrap = _loader(args)

    base_rss = _rss_mb()
    url = args.url if "://" in args.url else "file://" + os.path.abspath(args.url)
    factory = make_reader if args.mode == "reader" else make_batch_reader
    if args.queue:
        import functools

        factory = functools.partial(factory, results_queue_size=args.queue)
    warm_s = None
    if args.warmup:
        t0 = time.perf_counter()
        warm = factory(url, reader_pool_type=args.pool, workers_count=args.workers, num_epochs=1)
        next(iter(warm))
        warm.stop()
        warm.join()
        warm_s = time.perf_counter() - t0
        del warm
    t0, c0 = time.perf_counter(), time.process_time()
    reader = factory(url, reader_pool_type=args.pool, workers_count=args.workers, num_epochs=args.epochs)
    rows, first, check = 0, None, 0.0
    epoch_rows = _dataset_rows(url) if args.loader == "inmem" else 0
    epoch_ends = []
    source = reader if wrap is None else wrap(reader)
    for out in source:
        if first is None:
            first = time.perf_counter() - t0
        if args.loader == "none" and args.mode == "reader":
            rows += 1
            if args.touch:
                check += float(getattr(out, args.touch).reshape(-1)[-1])
        else:
            rows += _length(out)
            if args.touch:
                check += _last(_field(out, args.touch))
        if epoch_rows and rows >= epoch_rows * (len(epoch_ends) + 1):
            epoch_ends.append(time.perf_counter() - t0)
        if args.max_rows and rows >= args.max_rows:
            break
    seconds = time.perf_counter() - t0
    cpu = time.process_time() - c0
    t1 = time.perf_counter()
    if wrap is not None and hasattr(source, "__exit__"):
        source.__exit__(None, None, None)
    reader.stop()
    reader.join()
    stop_s = time.perf_counter() - t1
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("PASS " + json.dumps({
        "version": getattr(petastorm, "__version__", "?"), "rows": rows, "seconds": seconds,
        "rows_per_s": rows / seconds if seconds else 0.0, "first_row_s": first, "warmup_first_row_s": warm_s,
        "stop_join_s": stop_s, "cpu_s": cpu, "loader": args.loader,
        "epoch_seconds": [b - a for a, b in zip([0.0] + epoch_ends, epoch_ends)],
        "base_rss_mb": base_rss, "peak_rss_mb": peak, "hwm_mb": _rss_mb("VmHWM"), "check": check}), flush=True)
    return 0


def _loader(args):
    """A callable reader -> iterable of batches for ``--loader``, or None for the plain reader."""
    kind, bs, shuffle = args.loader, args.batch_size, args.shuffle
    if kind == "none":
        return None
    if kind in ("batched", "dataloader", "inmem"):
        import petastorm.pytorch as pt

        if kind == "batched":
            return lambda r: pt.BatchedDataLoader(r, batch_size=bs, shuffling_queue_capacity=shuffle)
        if kind == "dataloader":
            return lambda r: pt.DataLoader(r, batch_size=bs, shuffling_queue_capacity=shuffle)
        return lambda r: pt.InMemBatchedDataLoader(r, batch_size=bs, num_epochs=args.inmem_epochs,
                                                   rows_capacity=_dataset_rows(args.url), shuffle=bool(shuffle))
    if kind == "tf":
        from petastorm.tf_utils import make_petastorm_dataset

        return make_petastorm_dataset
    from petastorm.jax import make_jax_iterator

    return lambda r: make_jax_iterator(r, batch_size=bs)


def _dataset_rows(url: str) -> int:
    """Rows in the dataset's ``.parquet`` files (from their footers)."""
    import pyarrow.parquet as pq

    path = url[len("file://"):] if url.startswith("file://") else url
    return sum(pq.ParquetFile(os.path.join(path, f)).metadata.num_rows
               for f in sorted(os.listdir(path)) if f.endswith(".parquet"))


def _field(out, name):
    return out[name] if isinstance(out, dict) else getattr(out, name)


def _length(out) -> int:
    first = next(iter(out.values())) if isinstance(out, dict) else out[0]
    shape = getattr(first, "shape", None)
    return int(shape[0]) if shape is not None and len(shape) else len(first)


def _last(value) -> float:
    import numpy as np

    return float(np.asarray(value).reshape(-1)[-1])


if __name__ == "__main__":
    sys.exit(main())
