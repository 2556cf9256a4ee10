"""The framework adapters (issue 11) against the limits on the same files, measured side by side in one run.

Usage::

    python benchmarks/bench_loaders.py [--quick] [--reps 3] [--only columns,hello,inmem,peer,rss]
                                       [--no-original] [--no-peer]

``columns`` (dataset 1 of bench_read: 20 float32 columns, 4.2 M rows; 524 k with --quick), batch 1024,
thread pool, 2 workers; the limit is ``ParquetFile.read_row_group`` in 2 threads + ``torch.from_numpy`` per
column:
  - ``BatchedDataLoader``                                                     >= 0.8x the limit
  - ``BatchedDataLoader(shuffling_queue_capacity=100_000)``                   >= 0.5x
  - ``DataLoader`` (default collate) over the batch reader                    >= 0.5x
  - ``make_petastorm_dataset`` over the batch reader, eager iteration         >= 0.5x
  - ``make_jax_iterator(batch_size=1024)``                                    >= 0.5x
``hello``: ``DataLoader(make_reader(hello world), batch_size=16)`` (examples/hello_world schema: 128x256x3 PNG
  and a (4, 128, 30, 3) npy per row) against 2 x the single-thread rate of ``read_row_group`` +
  ``cv2.imdecode`` + an ``np.frombuffer`` view per npy cell (header parsed once per row group). >= 0.8x
``inmem``: ``InMemBatchedDataLoader`` over 4 epochs: the later epochs' rate / the first epoch's. >= 5x
``peer``: Hugging Face ``datasets`` over the same Parquet files (``load_dataset('parquet')``,
  ``.with_format('torch')``, ``torch.utils.data.DataLoader(batch_size=1024, num_workers=2)``), run in its own
  venv (``benchmarks/peers/make_venv.sh``): our ``BatchedDataLoader`` rows/s / its rows/s.    >= 2x
``rss``: peak RSS (``VmHWM``, fresh interpreter, torch imported in both) of a ``BatchedDataLoader`` pass
  with a 100k-row shuffling buffer / (the reader alone's peak + 100k x the row's bytes).    <= 1.2x

Rates are rows/s from the ``make_*reader`` call to the last batch (start-up included; imports, page cache
and one-time set-up warmed by one untimed pass of each case). In each of ``--reps`` rounds the limit runs
just before each of our cases; a wall ratio is the median of these adjacent pairs (the best-of ratio is in
the detail); each in-process figure also gets a CPU-time ratio (limit CPU per row / ours, least CPU per row
of each, all threads), the load-insensitive companion on this shared machine. Every consumer reads the last element of ``c00``
(``image1``) of each batch. The original 0.12.1 (``.venv-original``, where it has the loader: not
TensorFlow, not JAX) runs the same pass in a fresh interpreter (``read_pass.py --loader ... --warmup``);
its fraction of the same limit is printed in brackets.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up banner
# torch warns once that a read-only Arrow buffer became a tensor: the limit does exactly that, on purpose
warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
HERE = os.path.dirname(os.path.abspath(__file__))
PEER_VENV = os.environ.get("PETASTORM_PEER_VENV", os.path.join(common.BENCH_DIR, "venv-peers"))
SHUFFLE = 100_000
BATCH = 1024


# --- limits ------------------------------------------------------------------------------------------------------

def limit_torch_columns(path: str, threads: int = 2) -> int:
    """Rows read: every row group with ``read_row_group`` in ``threads`` threads, ``torch.from_numpy`` per column."""
    import torch

    return common.limit_columns(path, threads, torch.from_numpy)


def limit_hello(path: str) -> int:
    """Rows decoded in one thread: ``read_row_group``, then ``cv2.imdecode`` of every PNG and one
    ``np.frombuffer`` view per npy cell, its header parsed once per row group (the limit of
    ``bench_reader_shapes.py``: the tightest loop a user could write for these files)."""
    import cv2

    rows, check = 0, 0.0
    for table in common.row_group_tables(path, ["id", "image1", "array_4d"]):
        images, arrays = common.binary_column(table, "image1"), common.binary_column(table, "array_4d")
        skip, shape, dtype, count = common.npy_header(arrays[1][arrays[0][0]:arrays[0][1]].tobytes())
        for i in range(table.num_rows):
            img = cv2.imdecode(images[1][images[0][i]:images[0][i + 1]], cv2.IMREAD_UNCHANGED)
            arr = np.frombuffer(arrays[1], dtype=dtype, count=count, offset=int(arrays[0][i]) + skip).reshape(shape)
            check += float(img[-1, -1, -1]) + float(arr[-1, -1, -1, -1])
        rows += table.num_rows
    return rows


# --- ours -------------------------------------------------------------------------------------------------------

def _last(value) -> float:
    """The last element of a batch's column (torch, TensorFlow, JAX or numpy): the consumer's touch, ~1.5 us."""
    module = type(value).__module__
    if module.startswith("torch"):
        return float(value.numpy().reshape(-1)[-1])
    if module.startswith("jax"):
        value = value.block_until_ready()  # dispatch is asynchronous: a batch counts once it is there
    return float(np.asarray(value).reshape(-1)[-1])


def _wrap(kind: str, reader, batch_size: int, shuffle: int):
    if kind == "batched":
        from petastorm.pytorch import BatchedDataLoader

        return BatchedDataLoader(reader, batch_size=batch_size, shuffling_queue_capacity=shuffle)
    if kind == "dataloader":
        from petastorm.pytorch import DataLoader

        return DataLoader(reader, batch_size=batch_size, shuffling_queue_capacity=shuffle)
    if kind == "tf":
        from petastorm.tf_utils import make_petastorm_dataset

        return make_petastorm_dataset(reader)
    if kind == "jax":
        from petastorm.jax import make_jax_iterator

        return make_jax_iterator(reader, batch_size=batch_size, shuffling_queue_capacity=shuffle)
    raise ValueError(f"unknown loader kind {kind!r}")


def ours_pass(path: str, kind: str, *, mode: str = "batch", batch_size: int = BATCH, shuffle: int = 0,
              touch: str = "c00") -> int:
    """Rows of one full pass of loader ``kind`` over a fresh thread-pool reader (2 workers)."""
    from petastorm import make_batch_reader, make_reader

    factory = make_batch_reader if mode == "batch" else make_reader
    rows, check = 0, 0.0
    with factory("file://" + path, reader_pool_type="thread", workers_count=2, num_epochs=1) as reader:
        loader = _wrap(kind, reader, batch_size, shuffle)
        try:
            for out in loader:
                value = out[touch] if isinstance(out, dict) else getattr(out, touch)
                rows += int(value.shape[0])
                check += _last(value)
        finally:
            if hasattr(loader, "close"):
                loader.close()
    return rows


def available(kind: str) -> bool:
    """True when our loader ``kind`` has landed (the loaders are written alongside this benchmark)."""
    try:
        if kind in ("batched", "inmem"):
            from petastorm.pytorch import BatchedDataLoader, InMemBatchedDataLoader  # noqa: F401
        elif kind == "dataloader":
            from petastorm.pytorch import DataLoader  # noqa: F401
        elif kind == "tf":
            from petastorm.tf_utils import make_petastorm_dataset  # noqa: F401
        elif kind == "jax":
            from petastorm.jax import make_jax_iterator  # noqa: F401
    except (ImportError, AttributeError) as e:
        print(f"    (ours {kind}: not available: {e})", flush=True)
        return False
    return True


# --- measuring ----------------------------------------------------------------------------------------------------

CPU: dict = {}  # case -> least CPU us/row seen (this process, all threads)


def _rate(fn) -> tuple[float, int, float]:
    """(rows/s, rows, CPU microseconds per row of this process, all its threads)."""
    t0, c0 = time.perf_counter(), time.process_time()
    rows = fn()
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    return rows / dt, rows, cpu / rows * 1e6


PAIRS: dict = {}  # case -> [its rows/s / the limit's rows/s in the run just before it]
RATES: dict = {}  # case -> [rows/s of each timed run]


def measure(cases: dict, reps: int) -> dict:
    """One untimed warm-up pass of each case, then ``reps`` rounds; best rows/s of each.

    The first case is the limit: in every round it runs again just before each other case, and the ratio
    of each such pair goes into ``PAIRS`` (on this shared machine the load changes within seconds; a pair
    of adjacent runs sees about the same load, the best of each case over a round may not).
    """
    for name, fn in cases.items():
        _rate(fn)
    names = list(cases)
    lim = names[0]
    rates: dict = {k: [] for k in cases}
    for name in names[1:]:
        PAIRS[name] = []

    def run(name: str) -> float:
        r, rows, cpu = _rate(cases[name])
        rates[name].append(r)
        CPU[name] = min(CPU.get(name, cpu), cpu)
        print(f"    {name:<36} {r:>12,.0f} rows/s  CPU {cpu:8.3g} us/row  ({rows:,} rows)", flush=True)
        return r

    for _ in range(reps):
        for name in names[1:]:
            limit = run(lim)
            PAIRS[name].append(run(name) / limit)
    RATES.update(rates)
    return {k: common.best_rate(v) for k, v in rates.items()}


def wall_ratio(case: str, best: dict, limit_case: str, factor: float = 1.0) -> tuple:
    """(median of the paired ratios, best-of ratio) of ``case`` against ``factor`` x the limit."""
    paired = float(np.median(PAIRS[case])) / factor
    return paired, best[case] / (factor * best[limit_case])


def cpu_ratio(figure: str, limit_case: str, ours_case: str) -> None:
    """Limit CPU per row / ours: 1.0 = as lean as the limit (with two idle cores the wall ratio approaches it)."""
    lim, us = CPU.get(limit_case), CPU.get(ours_case)
    if lim and us:
        common.report(f"{figure}, CPU-time ratio", lim / us, None, detail=f"CPU us/row: limit {lim:.3g}, ours {us:.3g}")


def original(path: str, mode: str, loader: str, limit_fn, use: bool, *, factor: float = 1.0, touch: str = "c00",
             batch_size: int = BATCH, shuffle: int = 0, max_rows: int = 0) -> float | None:
    """The original 0.12.1's same pass (fresh interpreter, warmed up) over ``factor`` x the rate of one
    ``limit_fn()`` run just before it (an adjacent pair, as ours)."""
    if not use:
        return None
    limit = factor * _rate(limit_fn)[0]
    res = common.run_read_pass(common.ORIGINAL_PYTHON, path, mode=mode, pool="thread", touch=touch, warmup=True,
                               max_rows=max_rows, extra_args=["--loader", loader, "--batch-size", batch_size,
                                                              "--shuffle", shuffle])
    if not res:
        return None
    print(f"    original 0.12.1 {loader:<10} shuffle {shuffle:<7} {res['rows_per_s']:>12,.0f} rows/s  "
          f"(CPU {res['cpu_s'] / res['rows'] * 1e6:.3g} us/row; = {res['rows_per_s'] / limit:.3f}x the limit run "
          f"just before it, {limit / factor:,.0f} rows/s)", flush=True)
    return res["rows_per_s"] / limit


# --- parts ---------------------------------------------------------------------------------------------------------

def bench_columns(quick: bool, reps: int, use_original: bool, results: dict) -> None:
    path = common.columns_dataset(quick)
    print(f"[columns] loaders over make_batch_reader, 20 float32 columns, batch {BATCH} ({path})", flush=True)
    lim = "limit: pyarrow 2 threads + from_numpy"
    cases = {lim: lambda: limit_torch_columns(path)}
    figures = [("batched", 0, "BatchedDataLoader", 0.8), ("batched", SHUFFLE, "BatchedDataLoader shuffle 100k", 0.5),
               ("dataloader", 0, "DataLoader default collate", 0.5), ("tf", 0, "make_petastorm_dataset eager", 0.5),
               ("jax", 0, "make_jax_iterator", 0.5)]
    figures = [f for f in figures if available(f[0])]
    for kind, shuffle, label, _ in figures:
        cases["ours: " + label] = (lambda k=kind, s=shuffle: ours_pass(path, k, shuffle=s))
    if any(f[0] == "jax" for f in figures):  # how much of JAX's figure is per-batch cost
        cases["ours: make_jax_iterator b8192"] = lambda: ours_pass(path, "jax", batch_size=8192)
    best = measure(cases, reps)
    limit = best[lim]
    results["columns_limit"] = limit
    if "ours: BatchedDataLoader" in RATES:  # the peer is compared with our median run, not our best
        results["batched"] = float(np.median(RATES["ours: BatchedDataLoader"]))
    results["batched_cpu_us"] = CPU.get("ours: BatchedDataLoader")
    n_rows = 4_194_304 if not quick else 524_288
    for kind, shuffle, label, target in figures:
        orig = None
        if kind in ("batched", "dataloader"):
            # the original's DataLoader over a batch reader splits batches into rows: ~0.004x, so a slice of it
            orig = original(path, "batch", kind, cases[lim], use_original, shuffle=shuffle,
                            max_rows=min(n_rows, 100_000) if kind == "dataloader" else 0)
        paired, best_of = wall_ratio("ours: " + label, best, lim)
        common.report(f"{label} / pyarrow 2 threads + from_numpy", paired, target, original=orig,
                      detail=f"median of {len(PAIRS['ours: ' + label])} adjacent pairs; best-of ratio {best_of:.2f}, "
                             f"limit {limit:,.0f} rows/s")
        cpu_ratio(label, lim, "ours: " + label)
    if "ours: make_jax_iterator b8192" in best:
        common.report("info: make_jax_iterator batch 8192 / pyarrow 2 threads + from_numpy",
                      wall_ratio("ours: make_jax_iterator b8192", best, lim)[0], None)


def bench_hello(quick: bool, reps: int, use_original: bool, results: dict) -> None:
    path = common.hello_world_dataset(quick)
    print(f"[hello] DataLoader over make_reader, hello-world schema, batch 16 ({path})", flush=True)
    if not available("dataloader"):
        return
    lim = "limit: png + npy decode 1 thread"
    best = measure({lim: lambda: limit_hello(path),
                    "ours: DataLoader make_reader b16": lambda: ours_pass(path, "dataloader", mode="reader",
                                                                          batch_size=16, touch="image1")},
                   reps)
    limit = 2 * best[lim]
    orig = original(path, "reader", "dataloader", lambda: limit_hello(path), use_original, factor=2.0, touch="image1",
                    batch_size=16)
    paired, best_of = wall_ratio("ours: DataLoader make_reader b16", best, lim, factor=2.0)
    common.report("DataLoader make_reader hello world b16 / 2x png+npy decode 1 thread", paired, 0.8,
                  original=orig,
                  detail=f"median of {len(PAIRS['ours: DataLoader make_reader b16'])} adjacent pairs; best-of ratio "
                         f"{best_of:.2f}, limit 2 x {limit / 2:,.0f} rows/s")
    lim_cpu, us = CPU.get(lim), CPU.get("ours: DataLoader make_reader b16")
    if lim_cpu and us:
        common.report("DataLoader make_reader hello world, CPU-time ratio", lim_cpu / us, None,
                      detail=f"CPU us/row: limit {lim_cpu:.3g}, ours {us:.3g} (the limit is one thread: "
                             f"with two idle cores the wall ratio approaches this)")


def inmem_pass(path: str, epochs: int) -> tuple:
    """(seconds, CPU seconds of this process) of each epoch of ``InMemBatchedDataLoader`` (the first one from
    the ``make_batch_reader`` call)."""
    import pyarrow.parquet as pq

    from petastorm import make_batch_reader
    from petastorm.pytorch import InMemBatchedDataLoader

    n = sum(pq.ParquetFile(f).metadata.num_rows for f in common.parquet_files(path))
    t0, c0 = time.perf_counter(), time.process_time()
    ends, cpu_ends, rows, check = [], [], 0, 0.0
    with make_batch_reader("file://" + path, reader_pool_type="thread", workers_count=2, num_epochs=1) as reader:
        loader = InMemBatchedDataLoader(reader, batch_size=BATCH, num_epochs=epochs, rows_capacity=n)
        for batch in loader:
            rows += int(batch["c00"].shape[0])
            check += _last(batch["c00"])
            if rows >= n * (len(ends) + 1):
                ends.append(time.perf_counter() - t0)
                cpu_ends.append(time.process_time() - c0)

    def diffs(xs):
        return [b - a for a, b in zip([0.0] + xs, xs)]
    return diffs(ends), diffs(cpu_ends)


def bench_inmem(quick: bool, reps: int, use_original: bool, results: dict) -> None:
    path = common.columns_dataset(quick)
    epochs = 4
    print(f"[inmem] InMemBatchedDataLoader, {epochs} epochs, batch {BATCH} ({path})", flush=True)
    if not available("inmem"):
        return
    inmem_pass(path, 2)  # warm-up
    firsts, laters, cpu_firsts, cpu_laters = [], [], [], []
    for _ in range(reps):
        secs, cpus = inmem_pass(path, epochs)
        firsts.append(secs[0])
        laters.append(float(np.median(secs[1:])))
        cpu_firsts.append(cpus[0])
        cpu_laters.append(float(np.median(cpus[1:])))
        print(f"    ours: epochs {', '.join(f'{s:.3f}' for s in secs)} s, CPU {', '.join(f'{c:.3f}' for c in cpus)} s",
              flush=True)
    # the least disturbed first epoch against the least disturbed later ones (the best ratio of one run
    # would favour a run whose first epoch happened to be slowed down)
    best = min(firsts) / min(laters)
    orig_ratio = None
    if use_original:  # two epochs: the original's are slow (~20 s each at full size)
        res = common.run_read_pass(common.ORIGINAL_PYTHON, path, mode="batch", pool="thread", touch="c00",
                                   warmup=True, extra_args=["--loader", "inmem", "--batch-size", BATCH,
                                                            "--inmem-epochs", 2])
        if res and len(res["epoch_seconds"]) == 2:
            secs = res["epoch_seconds"]
            orig_ratio = secs[0] / secs[1]
            print(f"    original 0.12.1: epochs {', '.join(f'{s:.3f}' for s in secs)} s", flush=True)
    common.report("InMemBatchedDataLoader later epochs / first epoch", best, 5.0, original=orig_ratio,
                  detail=f"best first epoch {min(firsts):.3f} s, best median later epoch {min(laters):.3f} s")
    common.report("InMemBatchedDataLoader later / first epoch, CPU-time ratio", min(cpu_firsts) / min(cpu_laters),
                  None, detail=f"CPU: first epoch {min(cpu_firsts):.3f} s, later {min(cpu_laters):.3f} s (this "
                               f"process, all threads)")


def peer_pass(path: str, max_rows: int, pattern: str = "rows") -> dict | None:
    """The Hugging Face ``datasets`` pass (``benchmarks/peers/hf_pass.py``) in the peers' venv."""
    python = os.path.join(PEER_VENV, "bin", "python")
    # a no-op once the venv matches benchmarks/peers/requirements.txt (`make bench` runs it first)
    r = subprocess.run(["bash", os.path.join(HERE, "peers", "make_venv.sh"), PEER_VENV], capture_output=True, text=True)
    if r.returncode != 0 or not os.path.exists(python):
        print(f"  ! peers venv not made: {(r.stderr or r.stdout).strip().splitlines()[-1:]}", flush=True)
        return None
    cmd = [python, os.path.join(HERE, "peers", "hf_pass.py"), *common.parquet_files(path), "--cache-dir",
           os.path.join(common.BENCH_DIR, "hf-cache"), "--batch-size", str(BATCH), "--workers", "2",
           "--max-rows", str(max_rows), "--pattern", pattern]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd="/", env=common.subprocess_env(python), timeout=900)
    for line in r.stdout.splitlines():
        if line.startswith("PASS "):
            return json.loads(line[5:])
    print(f"  ! peer pass failed (rc {r.returncode}): {' | '.join((r.stderr or r.stdout).strip().splitlines()[-3:])}")
    return None


def bench_peer(quick: bool, reps: int, results: dict) -> None:
    path = common.columns_dataset(quick)
    print(f"[peer] Hugging Face datasets, DataLoader(batch_size={BATCH}, num_workers=2) ({path})", flush=True)
    ours = results.get("batched")
    if ours is None and available("batched"):
        measure({"ours: BatchedDataLoader": lambda: ours_pass(path, "batched")}, reps)
        ours = float(np.median(RATES["ours: BatchedDataLoader"]))
        results["batched_cpu_us"] = CPU.get("ours: BatchedDataLoader")
    peers = {}
    for pattern, rows in (("rows", 32_768 if quick else 65_536), ("iter", 0 if quick else 1_048_576)):
        res = peer_pass(path, rows, pattern)
        if res:
            peers[pattern] = res
            print(f"    peer ({pattern}): {res['rows_per_s']:>12,.0f} rows/s  CPU {res['cpu_s'] / res['rows'] * 1e6:.3g}"
                  f" us/row (with its workers)  ({res['rows']:,} rows; load_dataset {res['prepare_s']:.2f} s); "
                  f"{json.dumps(res['versions'])}", flush=True)
    if ours and "rows" in peers:
        res = peers["rows"]
        v = res["versions"]
        common.report("BatchedDataLoader / HF datasets DataLoader(batch_size=1024, 2 workers)", ours / res["rows_per_s"],
                      2.0, detail=f"ours {ours:,.0f} rows/s (median run), peer {res['rows_per_s']:,.0f} rows/s; datasets {v['datasets']}, torch {v['torch']}, "
                                  f"pyarrow {v['pyarrow']}, fsspec {v['fsspec']}")
        if results.get("batched_cpu_us"):
            common.report("BatchedDataLoader / HF datasets, CPU-time ratio",
                          (res["cpu_s"] / res["rows"] * 1e6) / results["batched_cpu_us"], None,
                          detail="peer CPU includes its 2 worker processes")
    if ours and "iter" in peers:
        common.report("info: BatchedDataLoader / HF datasets ds.iter(batch_size=1024) (contiguous slices, 1 process)",
                      ours / peers["iter"]["rows_per_s"], None, detail=f"peer {peers['iter']['rows_per_s']:,.0f} rows/s")


def bench_rss(quick: bool, use_original: bool) -> None:
    path = common.columns_dataset(quick)
    row_bytes = 20 * 4
    buffer_mb = SHUFFLE * row_bytes / 2 ** 20
    print(f"[rss] peak RSS, fresh interpreter, BatchedDataLoader shuffle {SHUFFLE:,} ({buffer_mb:.1f} MB buffer) "
          f"vs the reader alone ({path})", flush=True)
    if not available("batched"):
        return

    def ratio(python: str) -> tuple:
        common_args = dict(mode="batch", pool="thread", touch="c00")
        alone = common.run_read_pass(python, path, **common_args, extra_args=["--import", "torch"])
        loader = common.run_read_pass(python, path, **common_args, extra_args=[
            "--import", "torch", "--loader", "batched", "--batch-size", BATCH, "--shuffle", SHUFFLE])
        if not alone or not loader:
            return None, ""
        # VmHWM, not ru_maxrss: this process may be larger than the pass, and ru_maxrss after exec starts
        # at the forking process's RSS
        return (loader["hwm_mb"] / (alone["hwm_mb"] + buffer_mb),
                f"loader {loader['hwm_mb']:.0f} MB, reader alone {alone['hwm_mb']:.0f} MB "
                f"(after imports {alone['base_rss_mb']:.0f} MB) + buffer {buffer_mb:.1f} MB")

    ours, detail = ratio(sys.executable)
    orig = ratio(common.ORIGINAL_PYTHON)[0] if use_original else None
    if ours is not None:
        common.report("peak RSS BatchedDataLoader shuffle 100k / (reader alone + buffer)", ours, 1.2, op="<=",
                      original=orig, detail=detail)


def main(argv=None) -> int:
    p = common.bench_parser("Framework adapters' throughput vs the limits (issue 11).",
                            "small datasets, 2 repetitions", 3, "columns,hello,inmem,peer,rss")
    p.add_argument("--no-peer", action="store_true", help="skip the Hugging Face datasets peer")
    args = p.parse_args(argv)
    reps, use_original = common.start("bench_loaders", args)
    only = set(args.only.split(","))
    if args.no_peer:
        only.discard("peer")
    results: dict = {}
    parts = {"columns": lambda: bench_columns(args.quick, reps, use_original, results),
             "hello": lambda: bench_hello(args.quick, reps, use_original, results),
             "inmem": lambda: bench_inmem(args.quick, reps, use_original, results),
             "peer": lambda: bench_peer(args.quick, reps, results),
             "rss": lambda: bench_rss(args.quick, use_original)}
    return common.run_parts(parts, only)

if __name__ == "__main__":
    sys.exit(main())
