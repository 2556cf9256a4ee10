"""``make_reader`` on the shapes an independent benchmark used, against twice the single-thread decode rate.

Usage::

    python benchmarks/bench_reader_shapes.py [--quick] [--reps 4] [--only jpeg,hello] [--pools thread,process]

Two datasets, generated once into ``bench-out/``:

``jpeg``
    ``id`` (int64) and ``image``, 224x224x3 uint8 ``CompressedImageCodec('jpeg', 90)``; 2,000 rows (500 with
    ``--quick``) in row groups of 250 rows (about 30 KB per image).
``hello``
    The hello-world schema of ``examples/hello_world/generate_petastorm_dataset.py`` (``id`` int32, ``image1``
    128x256x3 PNG of random pixels, ``array_4d`` a (4, 128, 30, 3) uint8 ``NdarrayCodec`` value of shape
    ``(None, 128, 30, None)``), written by that example's ``generate_petastorm_dataset`` with
    ``row_group_size_mb=8``: 500 rows (200 with ``--quick``), about 55 rows per row group (the example's
    default of 256 MB puts all 500 rows in one row group, which only one worker can read).

The limit is 2 x the rate of one thread that reads each row group with ``ParquetFile.read_row_group`` and
decodes every cell: ``cv2.imdecode(cell, IMREAD_UNCHANGED)`` for the images, and for ``array_4d`` one
``np.frombuffer`` view per cell after parsing the npy header once per row group (the tightest loop a
user could write for these files). Ours: ``make_reader(url, reader_pool_type=pool, workers_count=2)``, all
rows, rows/s from the call to the last row. Every consumer reads the last element of each big field of
each row. Passes alternate limit / thread / process, ``--reps`` times; the best rate of each counts.

Information: the same decode loop in 2 threads (``ThreadPoolExecutor`` over the row groups) against the
limit: how far two plain threads scale on this machine, i.e. what the wall ratio can reach at best.

Figures (target >= 0.9x each): wall ratio ours / (2 x limit), and the **CPU-time ratio** limit CPU per row /
our CPU per row (the reader's process, all threads, plus the worker processes' ``/proc/<pid>/stat`` CPU
for the process pool). On this shared 2-core machine the wall ratio moves with the load; the CPU ratio
does not, and with two idle cores the wall ratio approaches it.

The process pool's workers are read after the last row, before ``stop()``: their exit (unmapping their
segments) and the fork in the fork server are not in that figure. An information line adds them: the fork
server's CPU and that of its reaped children (the workers' whole life), mean of the passes (10 ms ticks).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

TARGET = 0.9
_last_rows: dict = {}  # label -> rows of one pass
_CLK = os.sysconf("SC_CLK_TCK")


# --- datasets ------------------------------------------------------------------------------------------------

def jpeg90_dataset(quick: bool = False) -> str:
    """224x224x3 JPEG at quality 90: 2,000 rows (500 with ``quick``), 250 rows per row group, 4 per file."""
    rows_per_group, n_groups = 250, (2 if quick else 8)

    def build(path: str) -> None:
        from petastorm.codecs import CompressedImageCodec, ScalarCodec
        from petastorm.spark_types import spark_type
        from petastorm.unischema import Unischema, UnischemaField

        codec = CompressedImageCodec("jpeg", 90)
        schema = Unischema("Jpeg90Schema", [
            UnischemaField("id", np.int64, (), ScalarCodec(spark_type("LongType")), False),
            UnischemaField("image", np.uint8, (224, 224, 3), codec, False)])
        field = schema.fields["image"]

        def group(g: int) -> dict:
            rng = np.random.default_rng(g)
            return {"id": np.arange(g * rows_per_group, (g + 1) * rows_per_group, dtype=np.int64),
                    "image": [bytes(codec.encode(field, common.jpeg_image(rng))) for _ in range(rows_per_group)]}
        common._write_petastorm(path, schema, group, n_groups, groups_per_file=4, compression="none")

    return common._cached("jpeg90-quick" if quick else "jpeg90", {"rows_per_group": rows_per_group,
                                                                   "groups": n_groups}, build)


def hello_dataset(quick: bool = False) -> str:
    """The hello-world example's dataset (its own writer), 500 rows (200 with ``quick``), 8 MB row groups."""
    rows, row_group_mb = (200 if quick else 500), 8

    def build(path: str) -> None:
        sys.path.insert(0, os.path.join(common.REPO, "examples", "hello_world"))
        try:
            from generate_petastorm_dataset import generate_petastorm_dataset
        finally:
            sys.path.pop(0)
        generate_petastorm_dataset("file://" + path, rows, row_group_size_mb=row_group_mb, workers_count=1)

    return common._cached("hello-quick" if quick else "hello", {"rows": rows, "row_group_mb": row_group_mb},
                          build)


# --- limits: one thread ----------------------------------------------------------------------------------------

def _groups(path: str) -> list:
    import pyarrow.parquet as pq

    return [(f, g) for f in common.parquet_files(path) for g in range(pq.ParquetFile(f).num_row_groups)]


def _jpeg_group(task: tuple) -> int:
    """Rows of one row group: ``read_row_group`` then ``cv2.imdecode`` of every stored image."""
    import cv2
    import pyarrow.parquet as pq

    f, g = task
    table = pq.ParquetFile(f).read_row_group(g, columns=["id", "image"], use_threads=False)
    ids = table.column("id").to_numpy()
    offsets, data = common.binary_column(table, "image")
    check = 0.0
    for i in range(len(ids)):
        img = cv2.imdecode(data[offsets[i]:offsets[i + 1]], cv2.IMREAD_UNCHANGED)
        check += float(img[-1, -1, -1])
    return len(ids)


def _hello_group(task: tuple) -> int:
    """Rows of one row group: ``read_row_group``, ``cv2.imdecode`` of each PNG, an ``np.frombuffer`` view of
    each npy value (header parsed once per row group)."""
    import io

    import cv2
    import pyarrow.parquet as pq

    f, g = task
    table = pq.ParquetFile(f).read_row_group(g, columns=["id", "image1", "array_4d"], use_threads=False)
    ids = table.column("id").to_numpy()
    img_off, img_data = common.binary_column(table, "image1")
    arr_off, arr_data = common.binary_column(table, "array_4d")
    buf = io.BytesIO(arr_data[arr_off[0]:arr_off[1]].tobytes())
    version = np.lib.format.read_magic(buf)
    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                   else np.lib.format.read_array_header_2_0)
    shape, _, dtype = read_header(buf)
    skip, count = buf.tell(), int(np.prod(shape))
    check = 0.0
    for i in range(len(ids)):
        img = cv2.imdecode(img_data[img_off[i]:img_off[i + 1]], cv2.IMREAD_UNCHANGED)
        a = np.frombuffer(arr_data, dtype=dtype, count=count, offset=int(arr_off[i]) + skip).reshape(shape)
        check += float(img[-1, -1, -1]) + float(a[-1, -1, -1, -1])
    return len(ids)


def run_limit(path: str, group_fn, threads: int = 1) -> int:
    """Rows decoded by ``group_fn`` over every row group, in one thread (the limit) or in ``threads``
    threads (information: how well two plain decoding threads scale on this machine)."""
    tasks = _groups(path)
    if threads == 1:
        return sum(group_fn(t) for t in tasks)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(threads) as ex:
        return sum(ex.map(group_fn, tasks))


# --- ours ------------------------------------------------------------------------------------------------------

def _proc_cpu(pid: int) -> float:
    """CPU seconds of process ``pid`` so far, all its threads (``/proc/<pid>/task/*/schedstat``: nanoseconds;
    ``/proc/<pid>/stat`` counts 10 ms ticks, +-40 us per row on a 500-row pass of two workers); 0 when gone."""
    try:
        total = 0
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        return total / 1e9
    except (OSError, ValueError, IndexError):
        pass
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _CLK


def ours(path: str, pool: str, touch: tuple, epochs: int = 1) -> tuple:
    """(rows, CPU seconds of the worker processes) of one ``make_reader`` with 2 workers reading ``epochs``
    full passes."""
    from petastorm import make_reader

    rows, check, worker_cpu = 0, 0.0, 0.0
    with make_reader("file://" + path, reader_pool_type=pool, workers_count=2, num_epochs=epochs) as reader:
        for row in reader:
            for name in touch:
                check += float(getattr(row, name).reshape(-1)[-1])
            rows += 1
        if pool == "process":  # every item is done: the workers' CPU is (nearly) all spent
            worker_cpu = sum(_proc_cpu(p) for p in reader.diagnostics.get("pool_worker_pids", []))
    return rows, worker_cpu


def _pass(fn) -> tuple:
    """(rows/s, rows, CPU seconds per row: this process's threads plus the reported worker CPU, CPU seconds
    of this process alone)."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    rows, extra = out if isinstance(out, tuple) else (out, 0.0)
    return rows / dt, rows, (cpu + extra) / rows, cpu


def _fork_server_cpu() -> "float | None":
    """CPU seconds of the fork server and of its reaped children (every worker process it forked that has
    ended: their whole life, exit included), from ``/proc/<pid>/stat`` (10 ms ticks); None without one."""
    from multiprocessing import forkserver

    pid = getattr(forkserver._forkserver, "_forkserver_pid", None)
    if not pid:
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return sum(int(v) for v in fields[11:15]) / _CLK


def _warm(path: str, pool: str) -> None:
    """One row through a throw-away reader: imports and lazy set-up are not part of the timed passes."""
    from petastorm import make_reader

    with make_reader("file://" + path, reader_pool_type=pool, workers_count=2, num_epochs=1) as r:
        next(r)


def bench_shape(label: str, path: str, group_fn, touch: tuple, pools: list, reps: int) -> list:
    for pool in pools:
        _warm(path, pool)
    run_limit(path, group_fn)  # page cache and OpenCV warm
    cases = {"limit 1 thread": lambda: run_limit(path, group_fn),
             "plain 2 threads": lambda: run_limit(path, group_fn, threads=2)}
    for pool in pools:
        cases[f"ours {pool} x2"] = (lambda p=pool: ours(path, p, touch))
    if "process" in pools:  # one reader for 4 epochs: the pool's start and stop paid once, not per pass
        cases["ours process 4 ep"] = lambda: ours(path, "process", touch, epochs=4)
    rates: dict = {k: [] for k in cases}
    cpus: dict = {k: [] for k in cases}
    full: list = []  # CPU per row of "ours process x2" with the fork and the workers' exit (see below)
    for _ in range(reps):
        for name, fn in cases.items():
            before = _fork_server_cpu() if name == "ours process x2" else None
            r, rows, cpu, own = _pass(fn)
            if before is not None:
                time.sleep(0.05)  # (not timed) the fork server reaps the ended workers
                after = _fork_server_cpu()
                if after is not None:
                    full.append(((own + after - before) / rows, cpu))
            if name == "ours process x2":
                _last_rows[label] = rows
            rates[name].append(r)
            cpus[name].append(cpu)
            print(f"    {label:<6} {name:<18} {r:>9,.0f} rows/s  CPU {cpu * 1e6:8.0f} us/row  ({rows:,} rows)",
                  flush=True)
    limit, limit_cpu = 2 * max(rates["limit 1 thread"]), min(cpus["limit 1 thread"])
    out = [common.report(f"info: {label} plain decode loop in 2 threads / 2x 1 thread", max(rates["plain 2 threads"]) /
                         limit, None, detail=f"CPU-time ratio {limit_cpu / min(cpus['plain 2 threads']):.3f}: how "
                                             f"far two threads scale here")]
    for pool in pools:
        name = f"ours {pool} x2"
        cpu = min(cpus[name])
        out.append(common.report(f"R {label} make_reader {pool} pool / 2x decode 1 thread", max(rates[name]) / limit,
                                 TARGET, detail=f"limit 2 x {limit / 2:,.0f} rows/s, ours {max(rates[name]):,.0f}"))
        out.append(common.report(f"R {label} {pool} pool, CPU-time ratio", limit_cpu / cpu, TARGET,
                                 detail=f"CPU us/row: limit {limit_cpu * 1e6:.0f}, ours {cpu * 1e6:.0f}"))
    if full:
        with_exit, counted = (sum(x[i] for x in full) / len(full) for i in (0, 1))
        out.append(common.report(f"info: {label} process pool, CPU-time ratio with the fork and the workers' exit",
                                 limit_cpu / with_exit, None,
                                 detail=f"CPU us/row {with_exit * 1e6:.0f} against {counted * 1e6:.0f} counted as "
                                        f"above, means of the same {len(full)} passes (10 ms ticks): the workers' "
                                        f"CPU after the last row and the fork server's"))
    if "process" in pools:
        per_pass, per_row = min(cpus["ours process x2"]), min(cpus["ours process 4 ep"])
        rows = _last_rows.get(label, 0)
        out.append(common.report(f"info: {label} process pool, one reader for 4 epochs, CPU-time ratio",
                                 limit_cpu / per_row, None,
                                 detail=f"CPU us/row {per_row * 1e6:.0f}; a reader per pass costs "
                                        f"{(per_pass - per_row) * rows * 1e3:.0f} ms more (start and stop of the "
                                        f"worker processes)"))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="make_reader on JPEG q90 and hello-world rows vs 2x 1-thread decode.")
    p.add_argument("--quick", action="store_true", help="small datasets, 2 repetitions")
    p.add_argument("--reps", type=int, default=None, help="alternating repetitions (default 4, 2 with --quick)")
    p.add_argument("--only", default="jpeg,hello")
    p.add_argument("--pools", default="thread,process")
    args = p.parse_args(argv)
    reps = args.reps or (2 if args.quick else 4)
    pools = [x for x in args.pools.split(",") if x]
    print(f"bench_reader_shapes: {common.machine_line()}", flush=True)
    shapes = {"jpeg": lambda: bench_shape("jpeg", jpeg90_dataset(args.quick), _jpeg_group, ("image",), pools, reps),
              "hello": lambda: bench_shape("hello", hello_dataset(args.quick), _hello_group, ("image1", "array_4d"),
                                           pools, reps)}
    return common.run_parts(shapes, [x for x in args.only.split(",") if x])


if __name__ == "__main__":
    sys.exit(main())
