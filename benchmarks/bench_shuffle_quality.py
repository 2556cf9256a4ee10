"""Shuffle quality of every shuffling option against its cost, and the cost of ``reader.explain()`` (issue 14).

Usage::

    python benchmarks/bench_shuffle_quality.py [--quick] [--only quality,explain] [--files 2000] [--reps 3]
                                               [--quality-reps 3]

``quality``: a dataset of 64 row groups of 16,384 rows (1 M rows; 16 with --quick: 262 k), an ``id``
column (the dataset row id) and 16 float32 columns, 8 row groups per file. For each shuffling option a fresh
interpreter runs ``make_batch_reader`` (thread pool, 2 workers, ``seed=1``) under
``petastorm.pytorch.BatchedDataLoader(batch_size=1024)`` for one epoch and reports:

- the rows/s of the epoch (reader created -> last batch) and the peak RSS it added (``VmHWM`` after the
  epoch minus ``VmHWM`` after the imports): the cost (best rows/s and median peak of ``--quality-reps``
  interpreters);
- the shuffle quality *predicted* by ``reader.explain(shuffling_queue_capacity=..., batch_size=1024)``
  (no data read) and the quality *measured* on the ``id`` column of the batches served: normalised
  displacement (1 = uniform permutation), same-row-group fraction of consecutive rows, ``mixing``
  (``(1 - same) / (1 - same_uniform)``: 1 = as mixed as a uniform permutation) and the fraction of consecutive
  rows that are dataset neighbours;
- the proposed block shuffle (the rows of every ``k`` consecutive row groups permuted together), quality
  from ``shuffle_quality.block_shuffle`` on the same plan (not implemented in the reader: no cost measured;
  its memory is that of ``k`` row groups).

The table is printed, written to ``bench-out/shuffle_quality.txt`` and drawn (mixing against rows/s) in
``bench-out/shuffle_quality.svg`` (an SVG written directly: matplotlib is not a dependency).

``explain``: a Petastorm dataset of ``--files`` one-row-group files (``common.small_files_dataset``):
``make_reader(url, reader_pool_type='dummy')`` + ``reader.explain()`` + ``stop(); join()`` (what
``petastorm-explain`` does) against ``pyarrow.dataset.dataset(path).files`` (listing the dataset, as
bench_startup measures it): target < 2x. Also shown: ``explain()`` alone on a built reader, and
``explain(row_counts=True)`` (reads every footer). Best of ``--reps``; imports and page cache warmed first.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import traceback

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

BATCH = 1024
WORKERS = 2
ROWS_PER_GROUP = 16_384
CASES = [
    # name, shuffle_row_groups, shuffle_rows, drop partitions, loader buffer rows
    ("no shuffle", False, False, 1, 0),
    ("shuffle_row_groups (default)", True, False, 1, 0),
    ("+ shuffle_rows", True, True, 1, 0),
    ("+ drop_partitions=4", True, True, 4, 0),
    ("+ drop_partitions=16", True, True, 16, 0),
    ("row groups + buffer 10k", True, False, 1, 10_000),
    ("row groups + buffer 100k", True, False, 1, 100_000),
    ("row groups + buffer 500k", True, False, 1, 500_000),
    ("drop_partitions=4 + buffer 100k", True, True, 4, 100_000),
]
BLOCKS = (4, 16)


def quality_dataset(quick: bool) -> str:
    n_groups = 16 if quick else 64

    def build(path: str) -> None:
        from petastorm.codecs import ScalarCodec
        from petastorm.spark_types import spark_type
        from petastorm.unischema import Unischema, UnischemaField

        names = [f"c{i:02d}" for i in range(16)]
        fields = [UnischemaField("id", np.int64, (), ScalarCodec(spark_type("LongType")), False)]
        fields += [UnischemaField(n, np.float32, (), ScalarCodec(spark_type("FloatType")), False) for n in names]
        schema = Unischema("ShuffleQuality", fields)

        def group(g: int) -> dict:
            rng = np.random.default_rng(g)
            cols = {"id": np.arange(g * ROWS_PER_GROUP, (g + 1) * ROWS_PER_GROUP, dtype=np.int64)}
            cols.update({n: rng.random(ROWS_PER_GROUP, dtype=np.float32) for n in names})
            return cols
        common._write_petastorm(path, schema, group, n_groups, groups_per_file=8, use_dictionary=False)

    return common._cached("shuffle-quality-quick" if quick else "shuffle-quality",
                          {"rows_per_group": ROWS_PER_GROUP, "groups": n_groups}, build)


def _vmhwm_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def run_case(url: str, case: dict) -> dict:
    """One shuffling option, in this (fresh) interpreter: cost, predicted and measured quality."""
    import torch  # noqa: F401 - imported before the baseline, as the loader needs it

    from petastorm import make_batch_reader
    from petastorm.pytorch import BatchedDataLoader
    from petastorm.reader_impl.shuffle_quality import sequence_quality

    base = _vmhwm_mb()
    t0 = time.perf_counter()
    reader = make_batch_reader(url, reader_pool_type="thread", workers_count=WORKERS, seed=1, num_epochs=1,
                               shuffle_row_groups=case["shuffle_row_groups"], shuffle_rows=case["shuffle_rows"],
                               shuffle_row_drop_partitions=case["drop"])
    ids = []
    with BatchedDataLoader(reader, batch_size=BATCH, shuffling_queue_capacity=case["buffer"], seed=1) as loader:
        for batch in loader:
            ids.append(batch["id"].numpy().copy())
    seconds = time.perf_counter() - t0
    peak = _vmhwm_mb() - base
    t1 = time.perf_counter()
    plan = reader.explain(0, shuffling_queue_capacity=case["buffer"], batch_size=BATCH)
    explain_s = time.perf_counter() - t1
    reader.stop()
    reader.join()
    seq = np.concatenate(ids)
    measured = sequence_quality(seq, seq // ROWS_PER_GROUP).to_dict()
    predicted = plan.buffered_quality if case["buffer"] else plan.shuffle_quality
    return {"rows": int(len(seq)), "seconds": seconds, "rows_per_s": len(seq) / seconds, "peak_mb": peak,
            "explain_s": explain_s, "predicted": predicted, "measured": measured}


def _case_in_subprocess(url: str, case: dict) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--case", json.dumps(case), "--url", url]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=common.subprocess_env())
    if done.returncode != 0:
        raise RuntimeError(f"case {case['name']!r} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _block_rows(url: str, quick: bool) -> list:
    """Quality of the proposed block shuffle, from the plan of the default options."""
    from petastorm import make_batch_reader
    from petastorm.reader_impl.plan import make_epoch_plan
    from petastorm.reader_impl.shuffle_quality import block_shuffle, sequence_quality

    with make_batch_reader(url, reader_pool_type="dummy", seed=1) as reader:
        reader.dataset.ensure_row_counts()
        rows = reader.dataset.rows_per_group
        plan = make_epoch_plan(rows, reader._p.plan_options, 0)
    out = []
    row_bytes = 8 + 16 * 4
    for k in BLOCKS:
        seq = block_shuffle(plan, rows, k, seed=1)
        q = sequence_quality(seq, seq // ROWS_PER_GROUP).to_dict()
        out.append({"name": f"block shuffle k={k} (proposed)", "predicted": q, "measured": q,
                    "rows_per_s": float("nan"), "peak_mb": k * ROWS_PER_GROUP * row_bytes / 2 ** 20,
                    "explain_s": float("nan")})
    return out


def _fmt(x: float, spec: str) -> str:
    return "-" if x != x else format(x, spec)


def table_lines(results: list) -> list:
    head = (f"{'option':34s} {'rows/s':>10s} {'peak MB':>8s}  {'displacement':>12s} {'same group':>10s} "
            f"{'mixing':>7s} {'neighbours':>10s}  {'predicted mixing':>16s}")
    lines = [head, "-" * len(head)]
    for r in results:
        m, p = r["measured"], r["predicted"]
        lines.append(f"{r['name']:34s} {_fmt(r['rows_per_s'], ',.0f'):>10s} {_fmt(r['peak_mb'], '.0f'):>8s}  "
                     f"{m['displacement_mean']:12.3f} {m['same_group_fraction']:10.3f} {m['mixing']:7.3f} "
                     f"{m['adjacent_fraction']:10.3f}  "
                     f"{p['mixing']:16.3f}")
    return lines


def write_svg(results: list, path: str) -> None:
    """Mixing (measured) against rows/s, one labelled point per option; proposed modes at the right edge."""
    w, h, left, right, top, bottom = 760, 460, 70, 250, 30, 50
    measured = [r for r in results if r["rows_per_s"] == r["rows_per_s"]]
    xmax = max(r["rows_per_s"] for r in measured) * 1.1 if measured else 1.0
    px = lambda v: left + (w - left - right) * v / xmax  # noqa: E731
    py = lambda v: h - bottom - (h - top - bottom) * v  # noqa: E731
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" '
             f'font-size="11">', f'<rect width="{w}" height="{h}" fill="white"/>',
             f'<line x1="{left}" y1="{py(0)}" x2="{w - right}" y2="{py(0)}" stroke="black"/>',
             f'<line x1="{left}" y1="{py(0)}" x2="{left}" y2="{py(1)}" stroke="black"/>',
             f'<text x="{(left + w - right) / 2}" y="{h - 12}" text-anchor="middle">rows/s (one epoch, '
             f'BatchedDataLoader batch {BATCH})</text>',
             f'<text x="16" y="{(top + h - bottom) / 2}" transform="rotate(-90 16 {(top + h - bottom) / 2})" '
             f'text-anchor="middle">mixing (1 = uniform permutation)</text>']
    for v in (0, 0.25, 0.5, 0.75, 1.0):
        parts.append(f'<text x="{left - 6}" y="{py(v) + 4}" text-anchor="end">{v:g}</text>')
        parts.append(f'<line x1="{left}" y1="{py(v)}" x2="{w - right}" y2="{py(v)}" stroke="#ddd"/>')
    for k in range(1, 5):
        v = xmax * k / 5
        parts.append(f'<text x="{px(v)}" y="{py(0) + 16}" text-anchor="middle">{v / 1e6:.1f}M</text>')
    for i, r in enumerate(results):
        mix = r["measured"]["mixing"]
        proposed = r["rows_per_s"] != r["rows_per_s"]
        x = w - right + 12 if proposed else px(r["rows_per_s"])
        color = "#c33" if proposed else "#236"
        parts.append(f'<circle cx="{x:.1f}" cy="{py(mix):.1f}" r="4" fill="{color}"/>')
        parts.append(f'<text x="{x + 7:.1f}" y="{py(mix) + 4 - 9 * (i % 2):.1f}" fill="{color}">'
                     f'{r["name"]} ({_fmt(r["peak_mb"], ".0f")} MB)</text>')
    parts.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(parts))


def bench_quality(quick: bool, reps: int) -> list:
    path = quality_dataset(quick)
    url = "file://" + path
    print(f"[quality] {path}", flush=True)
    results = []
    for name, srg, srows, drop, buffer in CASES:
        case = {"name": name, "shuffle_row_groups": srg, "shuffle_rows": srows, "drop": drop, "buffer": buffer}
        runs = [_case_in_subprocess(url, case) for _ in range(reps)]
        r = max(runs, key=lambda x: x["rows_per_s"])  # the least disturbed run (a shared machine)
        r["peak_mb"] = float(np.median([x["peak_mb"] for x in runs]))
        r["all_rows_per_s"] = [x["rows_per_s"] for x in runs]
        r["name"] = name
        results.append(r)
        print(f"    {name}: {r['rows_per_s']:,.0f} rows/s, +{r['peak_mb']:.0f} MB, mixing "
              f"{r['measured']['mixing']:.3f} (predicted {r['predicted']['mixing']:.3f}), explain "
              f"{r['explain_s']:.2f} s", flush=True)
    results += _block_rows(url, quick)
    lines = table_lines(results)
    print("\n".join("    " + ln for ln in lines), flush=True)
    os.makedirs(common.BENCH_DIR, exist_ok=True)
    with open(os.path.join(common.BENCH_DIR, "shuffle_quality.txt"), "w") as f:
        f.write(common.machine_line() + "\n" + "\n".join(lines) + "\n")
    svg = os.path.join(common.BENCH_DIR, "shuffle_quality.svg")
    write_svg(results, svg)
    print(f"    chart: {svg}", flush=True)
    worst = max(abs(r["predicted"]["mixing"] - r["measured"]["mixing"]) for r in results)
    base = results[1]
    out = [common.report("quality: largest |predicted - measured| mixing", worst, 0.05, op="<=", unit="",
                         detail="explain() against the ids served")]
    for r in results[2:len(CASES)]:
        out.append(common.report(f"quality: {r['name']} mixing", r["measured"]["mixing"], None, unit="",
                                 detail=f"{r['rows_per_s'] / base['rows_per_s']:.2f}x the default's rows/s, "
                                        f"+{r['peak_mb']:.0f} MB"))
    return out


def bench_explain(n_files: int, reps: int) -> list:
    from bench_startup import discovery_seconds

    from petastorm import make_reader

    path = common.small_files_dataset(n_files)
    url = "file://" + path
    print(f"[explain] {n_files} small files ({path})", flush=True)

    def whole() -> object:
        reader = make_reader(url, reader_pool_type="dummy")
        try:
            return reader.explain()
        finally:
            reader.stop()
            reader.join()

    whole()  # imports, page cache
    disc, totals, alone, footers = [], [], [], []
    for _ in range(reps):
        disc.append(discovery_seconds(path))
        totals.append(common.timed(whole)[0])
        with make_reader(url, reader_pool_type="dummy") as reader:
            alone.append(common.timed(reader.explain)[0])
            footers.append(common.timed(lambda: reader.explain(row_counts=True))[0])
    d, t, a, fo = min(disc), min(totals), min(alone), min(footers)
    print(f"    listing (pyarrow.dataset) {d:.4f} s; make_reader + explain {t:.4f} s; explain() alone {a:.4f} s; "
          f"explain(row_counts=True) {fo:.4f} s", flush=True)
    return [common.report(f"explain: make_reader + explain(), {n_files} files / listing", t / d, 2.0, op="<=",
                          detail=f"{t:.4f} s vs {d:.4f} s"),
            common.report(f"explain: explain() alone, {n_files} files / listing", a / d, None, op="<=",
                          detail=f"{a:.4f} s"),
            common.report(f"explain: explain(row_counts=True), {n_files} files / listing", fo / d, None, op="<=",
                          detail=f"{fo:.4f} s (every footer read)")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default="quality,explain")
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--reps", type=int, default=3, help="repetitions of the explain timings")
    parser.add_argument("--quality-reps", type=int, default=3,
                        help="epochs per shuffling option, each in a fresh interpreter (best rows/s, median peak)")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.url, json.loads(args.case))))
        return
    print(common.machine_line(), flush=True)
    failed = False
    parts = {"quality": lambda: bench_quality(args.quick, args.quality_reps), "explain": lambda: bench_explain(args.files, args.reps)}
    for name in args.only.split(","):
        try:
            parts[name]()
        except Exception:  # noqa: BLE001 - report and go on with the next part
            traceback.print_exc()
            failed = True
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
