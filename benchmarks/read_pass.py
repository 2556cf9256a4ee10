"""One full read of a dataset in a fresh interpreter; prints ``PASS {json}``.

Runs with any Python that has a ``petastorm`` (ours, or the original 0.12.1 in its own venv as a black
box): it uses only the public ``make_reader`` / ``make_batch_reader`` API, so the same script measures
both. Figures: rows, seconds from the ``make_*reader`` call to the last row, rows/s, seconds to the first
row, ``stop(); join()`` seconds, the RSS after imports and the peak RSS of this process (``ru_maxrss``).

Usage::

    python benchmarks/read_pass.py URL --mode reader|batch --pool thread|process --workers 2 [--touch FIELD]

``--max-rows N`` stops after N rows (``stop(); join()`` is then timed mid-stream).
``--touch FIELD`` reads the last element of ``FIELD`` in every row (reader) or batch (batch), so lazily
mapped results are paid for by the consumer.
"""
import argparse
import json
import os
import resource
import sys
import time


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
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
    p.add_argument("--warmup", action="store_true",
                   help="first read one row with a throw-away reader (imports, page cache, lazy set-up)")
    args = p.parse_args(argv)

    import numpy  # noqa: F401 - imports are not part of the timed read

    import petastorm
    from petastorm import make_batch_reader, make_reader

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
    t0 = time.perf_counter()
    reader = factory(url, reader_pool_type=args.pool, workers_count=args.workers, num_epochs=args.epochs)
    rows, first, check = 0, None, 0.0
    for out in reader:
        if first is None:
            first = time.perf_counter() - t0
        if args.mode == "reader":
            rows += 1
            if args.touch:
                check += float(getattr(out, args.touch).reshape(-1)[-1])
        else:
            col = getattr(out, out._fields[0])
            rows += len(col)
            if args.touch:
                check += float(getattr(out, args.touch).reshape(-1)[-1])
        if args.max_rows and rows >= args.max_rows:
            break
    seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    reader.stop()
    reader.join()
    stop_s = time.perf_counter() - t1
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("PASS " + json.dumps({
        "version": getattr(petastorm, "__version__", "?"), "rows": rows, "seconds": seconds,
        "rows_per_s": rows / seconds if seconds else 0.0, "first_row_s": first, "warmup_first_row_s": warm_s,
        "stop_join_s": stop_s,
        "base_rss_mb": base_rss, "peak_rss_mb": peak, "check": check}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
