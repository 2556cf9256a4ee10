"""Run every benchmark script in ``benchmarks/`` and print a summary table of the figures vs their targets.

Usage::

    python benchmarks/run_all.py [--quick] [--only bench_read,bench_startup] [--timeout 900]

Each ``bench_*.py`` runs in its own interpreter (``--quick`` is passed on to scripts that accept it); its
output streams through. Figures a script prints as ``RESULT {json}`` lines (see ``common.report``) go into
the summary table; for a script that prints none, its last lines are shown instead. The table is also
written to ``bench-out/summary.md``, the raw figures to ``bench-out/results.json`` and their chart to
``bench-out/benchmarks.svg`` (``chart.py``; the docs site embeds it).
Exit status: 0 when every script ran (a figure below target does not fail the run: it is a measurement).
"""
from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chart  # noqa: E402
import common  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def _scripts(only: str) -> list:
    names = sorted(os.path.basename(p) for p in glob.glob(os.path.join(HERE, "bench_*.py")))
    if only:
        wanted = {n if n.endswith(".py") else n + ".py" for n in only.split(",")}
        names = [n for n in names if n in wanted]
    # the read benchmarks first: they generate the datasets the others reuse
    order = {"bench_read.py": 0, "bench_startup.py": 1, "bench_memory.py": 2}
    return sorted(names, key=lambda n: (order.get(n, 9), n))


def _accepts_quick(path: str) -> bool:
    with open(path) as f:
        return "--quick" in f.read()


def run_script(name: str, quick: bool, timeout: float) -> tuple[int, list, list, float]:
    """(exit status, RESULT records, last output lines, seconds)."""
    path = os.path.join(HERE, name)
    cmd = [sys.executable, path] + (["--quick"] if quick and _accepts_quick(path) else [])
    print(f"\n=== {name} ({' '.join(cmd[2:]) or 'full size'}) ===", flush=True)
    t0 = time.perf_counter()
    results, lines = [], []
    os.makedirs(common.BENCH_DIR, exist_ok=True)
    # cwd outside the source tree: fork-server children start with '' on sys.path, which must not shadow
    # the petastorm the benchmark means to measure (PYTHONPATH may put a patched copy first)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=common.BENCH_DIR,
                            env=common.subprocess_env())
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("RESULT "):
                try:
                    results.append(json.loads(line[7:]))
                except json.JSONDecodeError:
                    pass
                continue
            sys.stdout.write(line)
            sys.stdout.flush()
            if line.strip():
                lines.append(line.rstrip())
                lines = lines[-4:]
            if time.perf_counter() - t0 > timeout:
                proc.kill()
                lines.append(f"killed after {timeout:.0f} s")
                break
        rc = proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return rc, results, lines, time.perf_counter() - t0


def _fmt(value, unit: str) -> str:
    if value is None:
        return ""
    return f"{value:.2f}{unit}" if unit in ("x", "s") else f"{value:.0f} {unit}"


def summary_table(rows: list) -> str:
    out = ["| script | figure | value | target | | original 0.12.1 |", "|---|---|---|---|---|---|"]
    for script, rec in rows:
        if "name" not in rec:
            out.append(f"| {script} | (no RESULT lines) {rec['tail']} | | | | |")
            continue
        target = "" if rec.get("target") is None else f"{rec['op']} {_fmt(rec['target'], rec['unit'])}"
        verdict = {True: "PASS", False: "FAIL", None: ""}[rec.get("ok")]
        out.append(f"| {script} | {rec['name']} | {_fmt(rec['value'], rec['unit'])} | {target} | {verdict} | "
                   f"{_fmt(rec.get('original'), rec['unit'])} |")
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Run all benchmarks and summarise them.")
    p.add_argument("--quick", action="store_true", help="smaller datasets (passed to the scripts that accept it)")
    p.add_argument("--only", default="", help="comma-separated script names, e.g. bench_read,bench_memory")
    p.add_argument("--timeout", type=float, default=900, help="seconds per script")
    args = p.parse_args(argv)
    started = datetime.datetime.now(datetime.timezone.utc)
    machine = common.machine_line()
    print(f"run_all: {started:%Y-%m-%d %H:%M} UTC, {machine}", flush=True)
    rows, failed = [], []
    t0 = time.perf_counter()
    for name in _scripts(args.only):
        rc, results, tail, secs = run_script(name, args.quick, args.timeout)
        print(f"--- {name}: exit {rc}, {secs:.0f} s", flush=True)
        if rc != 0:
            failed.append(name)
        if results:
            rows += [(name, r) for r in results]
        else:
            rows.append((name, {"tail": " / ".join(tail[-2:])}))
    table = summary_table(rows)
    header = (f"Benchmarks {'(--quick) ' if args.quick else ''}{started:%Y-%m-%d %H:%M} UTC, {machine}; "
              f"total {time.perf_counter() - t0:.0f} s")
    print("\n" + header + "\n" + table, flush=True)
    os.makedirs(common.BENCH_DIR, exist_ok=True)
    with open(os.path.join(common.BENCH_DIR, "summary.md"), "w") as f:
        f.write(header + "\n\n" + table + "\n")
    with open(os.path.join(common.BENCH_DIR, "results.json"), "w") as f:
        json.dump({"started": started.isoformat(), "machine": machine, "quick": args.quick,
                   "results": [dict(r, script=s) for s, r in rows]}, f, indent=1)
    # the chart of these figures, which the docs site (make docs) embeds
    svg = chart.write_chart(os.path.join(common.BENCH_DIR, "results.json"),
                            os.path.join(common.BENCH_DIR, chart.DEFAULT_NAME))
    print(f"chart: {svg}", flush=True)
    if failed:
        print(f"scripts that failed: {', '.join(failed)}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
