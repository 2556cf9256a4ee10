"""Shared parts of the read benchmarks: cached dataset generation, timing, ratio reporting.

Datasets are generated once into ``bench-out/`` (git-ignored; override with ``PETASTORM_BENCH_DIR``) and
reused while their parameters match the ``_BENCH_OK.json`` marker written last. They are written with
plain pyarrow plus the codecs and :func:`petastorm.etl.dataset_metadata.write_petastorm_metadata`, so the
files are exactly those the limits (plain pyarrow / numpy / OpenCV loops) read too.

Every benchmark reports its figures with :func:`report`, which prints one human line and one machine line
``RESULT {json}`` that ``run_all.py`` collects into the summary table.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterable, Iterator, Optional

import numpy as np

__all__ = ["REPO", "BENCH_DIR", "ORIGINAL_PYTHON", "columns_dataset", "ndarray_dataset", "jpeg_dataset",
           "small_files_dataset", "hello_world_dataset", "parquet_files", "row_group_tables", "npy_header",
           "limit_columns", "run_parts", "timed", "best_rate", "report", "run_read_pass", "original_available",
           "machine_line", "jpeg_image", "subprocess_env", "bench_parser", "start", "original_wanted"]

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH_DIR = os.environ.get("PETASTORM_BENCH_DIR", os.path.join(REPO, "bench-out"))
ORIGINAL_PYTHON = os.environ.get("PETASTORM_ORIGINAL_PYTHON", os.path.join(REPO, ".venv-original", "bin", "python"))
_MARKER = "_BENCH_OK.json"
_FORMAT_VERSION = 2


# --- dataset generation -------------------------------------------------------------------------------------

def _cached(name: str, params: dict, build: Callable[[str], None]) -> str:
    """Path of dataset ``name`` built by ``build(path)``, rebuilt only when ``params`` changed."""
    path = os.path.join(BENCH_DIR, name)
    marker = os.path.join(path, _MARKER)
    want = dict(params, format_version=_FORMAT_VERSION)
    if os.path.exists(marker):
        with open(marker) as f:
            if json.load(f) == want:
                return path
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    t0 = time.perf_counter()
    print(f"  generating {name} in {path} ...", flush=True)
    build(path)
    with open(marker, "w") as f:
        json.dump(want, f)
    print(f"  generated {name}: {_dir_mb(path):.0f} MB in {time.perf_counter() - t0:.1f} s", flush=True)
    return path


def _dir_mb(path: str) -> float:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs) / 2 ** 20


def _write_petastorm(path: str, schema: Any, row_groups: Callable[[int], dict], n_groups: int,
                     groups_per_file: int, compression: str = "snappy", use_dictionary: bool = True) -> None:
    """Write ``n_groups`` row groups (``row_groups(g)`` -> dict of encoded columns) and the metadata."""
    import pyarrow as pa
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    from petastorm.arrow_types import arrow_type_for_field
    from petastorm.etl.dataset_metadata import write_petastorm_metadata

    arrow_schema = pa.schema([pa.field(f.name, arrow_type_for_field(f), nullable=bool(f.nullable))
                              for f in schema.fields.values()])
    counts = {}
    for first in range(0, n_groups, groups_per_file):
        name = f"part-{first // groups_per_file:05d}.parquet"
        groups = range(first, min(n_groups, first + groups_per_file))
        with pq.ParquetWriter(os.path.join(path, name), arrow_schema, compression=compression,
                              use_dictionary=use_dictionary) as writer:
            for g in groups:
                table = pa.table(row_groups(g), schema=arrow_schema)
                writer.write_table(table, row_group_size=table.num_rows)
        counts[name] = len(groups)
    write_petastorm_metadata(pafs.LocalFileSystem(), path, schema, counts, arrow_schema=arrow_schema)


def columns_dataset(quick: bool = False) -> str:
    """20 float32 scalar columns ``c00``..``c19``; 4,194,304 rows (320 MB) or 524,288 (--quick).

    Row groups of 131,072 rows (10 MB), 8 per file; Petastorm metadata included.
    """
    rows_per_group, n_groups = 131_072, (4 if quick else 32)

    def build(path: str) -> None:
        from petastorm.codecs import ScalarCodec
        from petastorm.spark_types import spark_type
        from petastorm.unischema import Unischema, UnischemaField

        names = [f"c{i:02d}" for i in range(20)]
        schema = Unischema("Columns", [UnischemaField(n, np.float32, (), ScalarCodec(spark_type("FloatType")), False)
                                       for n in names])

        def group(g: int) -> dict:
            rng = np.random.default_rng(g)
            return {n: rng.random(rows_per_group, dtype=np.float32) for n in names}
        _write_petastorm(path, schema, group, n_groups, groups_per_file=8, use_dictionary=False)

    return _cached("columns-quick" if quick else "columns", {"rows_per_group": rows_per_group, "groups": n_groups},
                   build)


def ndarray_dataset(quick: bool = False) -> str:
    """``id`` (int64) and ``arr``, a (64, 64) float32 ``NdarrayCodec`` field; 20,480 rows (320 MB) or 3,072.

    Row groups of 512 rows (8 MB), 8 per file.
    """
    rows_per_group, n_groups = 512, (6 if quick else 40)

    def build(path: str) -> None:
        from petastorm.codecs import NdarrayCodec, ScalarCodec
        from petastorm.spark_types import spark_type
        from petastorm.unischema import Unischema, UnischemaField

        schema = Unischema("NdarraySchema", [
            UnischemaField("id", np.int64, (), ScalarCodec(spark_type("LongType")), False),
            UnischemaField("arr", np.float32, (64, 64), NdarrayCodec(), False)])
        codec, field = NdarrayCodec(), schema.fields["arr"]

        def group(g: int) -> dict:
            rng = np.random.default_rng(g)
            arrs = rng.random((rows_per_group, 64, 64), dtype=np.float32)
            return {"id": np.arange(g * rows_per_group, (g + 1) * rows_per_group, dtype=np.int64),
                    "arr": [bytes(codec.encode(field, a)) for a in arrs]}
        _write_petastorm(path, schema, group, n_groups, groups_per_file=8)

    return _cached("ndarray-quick" if quick else "ndarray", {"rows_per_group": rows_per_group, "groups": n_groups},
                   build)


def jpeg_image(rng: np.random.Generator) -> np.ndarray:
    """A 224x224x3 uint8 image of smooth colour blobs plus noise (JPEG q80: about 20 KB, like a photo)."""
    import cv2

    small = rng.integers(0, 255, (14, 14, 3), dtype=np.uint8)
    big = cv2.resize(small, (224, 224), interpolation=cv2.INTER_CUBIC).astype(np.int16)
    big += rng.normal(0, 14, big.shape).astype(np.int16)
    return np.clip(big, 0, 255).astype(np.uint8)


def jpeg_dataset(quick: bool = False) -> str:
    """``id`` (int64) and ``image``, 224x224x3 uint8 ``CompressedImageCodec('jpeg')`` (quality 80);
    8,192 rows (about 170 MB) or 1,536 (--quick). Row groups of 256 rows, 8 per file."""
    rows_per_group, n_groups = 256, (6 if quick else 32)

    def build(path: str) -> None:
        from petastorm.codecs import CompressedImageCodec, ScalarCodec
        from petastorm.spark_types import spark_type
        from petastorm.unischema import Unischema, UnischemaField

        schema = Unischema("JpegSchema", [
            UnischemaField("id", np.int64, (), ScalarCodec(spark_type("LongType")), False),
            UnischemaField("image", np.uint8, (224, 224, 3), CompressedImageCodec("jpeg"), False)])
        codec, field = CompressedImageCodec("jpeg"), schema.fields["image"]

        def group(g: int) -> dict:
            rng = np.random.default_rng(g)
            return {"id": np.arange(g * rows_per_group, (g + 1) * rows_per_group, dtype=np.int64),
                    "image": [bytes(codec.encode(field, jpeg_image(rng))) for _ in range(rows_per_group)]}
        _write_petastorm(path, schema, group, n_groups, groups_per_file=8, compression="none")

    return _cached("jpeg-quick" if quick else "jpeg", {"rows_per_group": rows_per_group, "groups": n_groups}, build)


def hello_world_dataset(quick: bool = False) -> str:
    """The hello-world schema of ``examples/hello_world`` (``id`` int32, ``image1`` a 128x256x3 PNG, ``array_4d``
    a (4, 128, 30, 3) uint8 npy) and its ``row_generator``; 1,000 rows (about 150 MB) or 200 (--quick).

    Row groups of 25 rows (about 3.6 MB: PNG of noise does not compress), 10 per file, snappy.
    """
    rows_per_group, n_groups = 25, (8 if quick else 40)

    def build(path: str) -> None:
        import importlib.util

        spec = importlib.util.spec_from_file_location(
            "_hello_world_gen", os.path.join(REPO, "examples", "hello_world", "generate_petastorm_dataset.py"))
        gen = importlib.util.module_from_spec(spec)
        assert spec.loader is not None
        spec.loader.exec_module(gen)
        schema = gen.HelloWorldSchema
        fields = schema.fields

        def group(g: int) -> dict:
            rows = [gen.row_generator(i) for i in range(g * rows_per_group, (g + 1) * rows_per_group)]
            return {"id": np.array([r["id"] for r in rows], dtype=np.int32),
                    "image1": [bytes(fields["image1"].codec.encode(fields["image1"], r["image1"])) for r in rows],
                    "array_4d": [bytes(fields["array_4d"].codec.encode(fields["array_4d"], r["array_4d"]))
                                 for r in rows]}
        _write_petastorm(path, schema, group, n_groups, groups_per_file=10)

    return _cached("hello-world-quick" if quick else "hello-world",
                   {"rows_per_group": rows_per_group, "groups": n_groups}, build)


def parquet_files(path: str) -> list:
    """The dataset's ``.parquet`` files, sorted."""
    return sorted(os.path.join(path, f) for f in os.listdir(path) if f.endswith(".parquet"))


def binary_column(table: Any, name: str) -> tuple:
    """(offsets int64 (n+1,), data uint8) of a binary column of a pyarrow table, without copies."""
    import pyarrow as pa

    col = table.column(name)
    col = col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()
    if col.type != pa.large_binary():
        col = col.cast(pa.large_binary())
    bufs = col.buffers()
    offsets = np.frombuffer(bufs[1], dtype=np.int64, count=len(col) + 1, offset=col.offset * 8)
    return offsets, np.frombuffer(bufs[2], dtype=np.uint8)


def row_group_tables(path: str, columns: Optional[list] = None) -> Iterator[Any]:
    """Every row group of the dataset's files in order, each read by ``ParquetFile.read_row_group`` in this
    thread (``use_threads=False``): the single-thread limits' read."""
    import pyarrow.parquet as pq

    for f in parquet_files(path):
        pf = pq.ParquetFile(f)
        for g in range(pf.num_row_groups):
            yield pf.read_row_group(g, columns=columns, use_threads=False)


def npy_header(cell: bytes) -> tuple:
    """(data offset in bytes, shape, dtype, element count) of one ``.npy`` cell: what a limit parses once and
    then reads every cell as an ``np.frombuffer`` view."""
    import io

    buf = io.BytesIO(cell)
    version = np.lib.format.read_magic(buf)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, _, dtype = read(buf)
    return buf.tell(), shape, dtype, int(np.prod(shape))


def limit_columns(path: str, threads: int = 2, convert: Optional[Callable[[np.ndarray], Any]] = None) -> int:
    """Rows read: every row group with ``read_row_group`` in ``threads`` threads, ``to_numpy`` per column, then
    ``convert`` of each array (e.g. ``torch.from_numpy``), and the last element of ``c00`` of each group touched."""
    import pyarrow.parquet as pq

    tasks = [(f, g) for f in parquet_files(path) for g in range(pq.ParquetFile(f).num_row_groups)]

    def work(task):
        f, g = task
        table = pq.ParquetFile(f).read_row_group(g, use_threads=False)
        if convert is None:
            return {name: table.column(name).to_numpy() for name in table.column_names}
        return {name: convert(table.column(name).to_numpy()) for name in table.column_names}

    rows, check = 0, 0.0
    with ThreadPoolExecutor(threads) as ex:
        for cols in ex.map(work, tasks):
            rows += len(cols["c00"])
            check += float(cols["c00"][-1])
    return rows


def small_files_dataset(n_files: int = 2000) -> str:
    """``n_files`` Parquet files of one 10-row row group each (``id`` int64, ``value`` float64, ``vec`` a
    (4,) float32 ndarray), with Petastorm metadata."""
    def build(path: str) -> None:
        import pyarrow as pa
        import pyarrow.fs as pafs
        import pyarrow.parquet as pq

        from petastorm.arrow_types import arrow_type_for_field
        from petastorm.codecs import NdarrayCodec, ScalarCodec
        from petastorm.etl.dataset_metadata import write_petastorm_metadata
        from petastorm.spark_types import spark_type
        from petastorm.unischema import Unischema, UnischemaField

        schema = Unischema("SmallSchema", [
            UnischemaField("id", np.int64, (), ScalarCodec(spark_type("LongType")), False),
            UnischemaField("value", np.float64, (), ScalarCodec(spark_type("DoubleType")), False),
            UnischemaField("vec", np.float32, (4,), NdarrayCodec(), False)])
        arrow_schema = pa.schema([pa.field(f.name, arrow_type_for_field(f), nullable=False)
                                  for f in schema.fields.values()])
        codec, field = NdarrayCodec(), schema.fields["vec"]
        counts = {}
        for i in range(n_files):
            ids = np.arange(i * 10, i * 10 + 10, dtype=np.int64)
            table = pa.table({"id": ids, "value": ids / 3.0,
                              "vec": [bytes(codec.encode(field, np.full(4, k, np.float32))) for k in ids]},
                             schema=arrow_schema)
            name = f"part-{i:05d}.parquet"
            pq.write_table(table, os.path.join(path, name))
            counts[name] = 1
        write_petastorm_metadata(pafs.LocalFileSystem(), path, schema, counts, arrow_schema=arrow_schema)

    return _cached(f"small-files-{n_files}", {"files": n_files}, build)


# --- timing --------------------------------------------------------------------------------------------------

def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """``(seconds, result)`` of one call, wall clock."""
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def best_rate(samples: list[float]) -> float:
    """The best of repeated rate samples (rows/s): on a shared machine, the least disturbed run."""
    return max(samples)


def median(samples: list[float]) -> float:
    return statistics.median(samples)


# --- running ---------------------------------------------------------------------------------------------------

def run_parts(parts: dict[str, Callable[[], Any]], only: Optional[Iterable[str]] = None) -> int:
    """Run the parts named in ``only`` (all when None), in ``parts``' order; a part that raises prints its
    traceback and the others still run (one broken part must not hide the others' figures).

    Returns
    -------
    int
        The script's exit status: 1 if a part raised, else 0.

    Raises
    ------
    SystemExit
        When ``only`` names a part that does not exist (a typo must not run nothing and pass).
    """
    wanted = set(parts if only is None else only)
    unknown = sorted(wanted - set(parts))
    if unknown:
        raise SystemExit(f"unknown part(s) {unknown}: choose from {list(parts)}")
    failed = 0
    for name, part in parts.items():
        if name in wanted:
            try:
                part()
            except Exception:  # noqa: BLE001 - reported, and the next part runs
                traceback.print_exc()
                failed += 1
    return 1 if failed else 0


def bench_parser(description: str, quick_help: str, reps: int, only: str) -> argparse.ArgumentParser:
    """The arguments the read benchmarks share: ``--quick`` (``quick_help``), ``--reps`` (``reps``; 2 with
    ``--quick``: resolved by :func:`start`), ``--only`` (comma-separated part names, default ``only``) and
    ``--no-original``. A script adds its own before parsing."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help=quick_help)
    p.add_argument("--reps", type=int, default=None, help=f"alternating repetitions (default {reps}, 2 with --quick)")
    p.add_argument("--only", default=only)
    p.add_argument("--no-original", action="store_true", help="skip the original 0.12.1 even if its venv exists")
    p.set_defaults(full_reps=reps)
    return p


def original_wanted(script: str, no_original: bool) -> bool:
    """Whether the original 0.12.1 is measured too (not ``--no-original``, and its venv usable); prints the
    script's first line: its name, :func:`machine_line` and that answer."""
    use_original = not no_original and original_available()
    print(f"{script}: {machine_line()}; original 0.12.1: {'yes' if use_original else 'no'}", flush=True)
    return use_original


def start(script: str, args: argparse.Namespace) -> tuple[int, bool]:
    """``(reps, use_original)`` of arguments parsed by a :func:`bench_parser`, after the first line
    (:func:`original_wanted`)."""
    reps = args.reps or (2 if args.quick else args.full_reps)
    return reps, original_wanted(script, args.no_original)


# --- reporting -------------------------------------------------------------------------------------------------

def report(name: str, value: float, target: Optional[float], op: str = ">=", unit: str = "x",
           detail: str = "", original: Optional[float] = None) -> dict:
    """Print one figure against its target, as a human line and a ``RESULT {json}`` line.

    Parameters
    ----------
    name : what is measured, e.g. ``"batch reader / pyarrow 2 threads"``.
    value : the ratio (unit ``x``) or a time (unit ``s``) or a size (``MB``).
    target : the bound ``value`` must meet with ``op`` (``>=`` or ``<=``), or None for information only.
    original : the same figure for the original library 0.12.1, when measured.
    """
    ok = None
    if target is not None:
        ok = value >= target if op == ">=" else value <= target
    verdict = "" if ok is None else ("PASS" if ok else "FAIL")
    tgt = "" if target is None else f"(target {op} {target:g}{unit})"
    orig = "" if original is None else f" [original 0.12.1: {original:.2f}{unit}]"
    print(f"  => {name}: {value:.3f}{unit} {tgt} {verdict}{orig}  {detail}".rstrip(), flush=True)
    rec = {"name": name, "value": round(float(value), 4), "unit": unit, "target": target, "op": op, "ok": ok,
           "original": None if original is None else round(float(original), 4), "detail": detail}
    print("RESULT " + json.dumps(rec), flush=True)
    return rec


def machine_line() -> str:
    """CPU model, core count and load average, for the README."""
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0, 0, 0)
    return f"{model}, {os.cpu_count()} cores, load average {load[0]:.1f}"


# --- one read pass in a fresh interpreter (ours or the original's) -----------------------------------------------

def original_available() -> bool:
    """True when the original library's venv (``tools_compat/make_original_venv.sh``) is usable."""
    if not os.path.exists(ORIGINAL_PYTHON):
        return False
    try:
        # cwd "/": with the repository as cwd, ``-c`` would import our petastorm (its '' on sys.path)
        r = subprocess.run([ORIGINAL_PYTHON, "-c", "import petastorm, cv2"], capture_output=True, timeout=60,
                           cwd="/", env=subprocess_env(ORIGINAL_PYTHON))
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


def run_read_pass(python: str, url: str, *, mode: str, pool: str, workers: int = 2, touch: str = "",
                  timeout: float = 600, epochs: int = 1, warmup: bool = False,
                  max_rows: int = 0, extra_env: Optional[dict] = None,
                  extra_args: Optional[list] = None) -> Optional[dict]:
    """Run ``read_pass.py`` (one full read, fresh interpreter) with ``python`` and return its JSON figures:
    ``rows``, ``seconds``, ``rows_per_s``, ``first_row_s``, ``peak_rss_mb``, ``base_rss_mb`` — or None,
    (``warmup``: a throw-away reader reads one row first, so imports and lazy set-up are not timed)
    with the error printed, when it fails (the original may refuse a dataset). ``extra_env`` is added to
    its environment; ``extra_args`` are added to its command line (e.g. ``["--loader", "batched"]``)."""
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "read_pass.py")
    cmd = [python, script, url, "--mode", mode, "--pool", pool, "--workers", str(workers), "--epochs", str(epochs)]
    if touch:
        cmd += ["--touch", touch]
    if warmup:
        cmd.append("--warmup")
    if max_rows:
        cmd += ["--max-rows", str(max_rows)]
    cmd += [str(a) for a in extra_args or []]
    env = dict(subprocess_env(python), **(extra_env or {}))
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd="/")
    except subprocess.TimeoutExpired:
        print(f"  ! {os.path.basename(python)} read pass timed out after {timeout:.0f} s: {' '.join(cmd)}")
        return None
    for line in r.stdout.splitlines():
        if line.startswith("PASS "):
            return json.loads(line[5:])
    tail = (r.stderr or r.stdout).strip().splitlines()[-3:]
    print(f"  ! read pass failed (rc {r.returncode}) with {python}: {' | '.join(tail)}")
    return None


def ours_python() -> str:
    return sys.executable


def subprocess_env(python: str = sys.executable) -> dict:
    """Environment for benchmark subprocesses: no PYTHONDONTWRITEBYTECODE (as on a user's machine, imports
    use cached bytecode; without it every fresh interpreter recompiles our editable sources and start-up
    figures look worse). For another venv's python (the original's), no PYTHONPATH/PYTHONHOME either, so it
    sees only its own petastorm; ours keeps PYTHONPATH (a patched copy of the package can be put first)."""
    drop = {"PYTHONDONTWRITEBYTECODE"}
    if os.path.dirname(os.path.abspath(python)) != os.path.dirname(os.path.abspath(sys.executable)):
        drop |= {"PYTHONPATH", "PYTHONHOME"}
    return {k: v for k, v in os.environ.items() if k not in drop}
