"""Draw the figures of the last benchmark run (``bench-out/results.json``) as one SVG bar chart.

Usage::

    python benchmarks/chart.py [--results bench-out/results.json] [--out bench-out/benchmarks.svg] [--all]

``benchmarks/run_all.py`` calls :func:`write_chart` after each run, and the docs site (``make docs``) embeds
the last chart. One row per figure: the bar is ours (green when it meets its target, red when it does not,
grey for a figure without a target), the black tick is the target and the hollow circle the original
0.12.1's figure, when measured. Figures are grouped by unit (ratios ``x``, seconds, MB), each group on an
axis of its own, logarithmic when its values span more than a factor of 20. By default only figures with a
target are drawn; ``--all`` adds the informational ones. The SVG is written by hand: matplotlib is not a
dependency.
"""
from __future__ import annotations

import argparse
import html
import json
import math
import os
import sys

__all__ = ["render_svg", "write_chart", "DEFAULT_NAME"]

DEFAULT_NAME = "benchmarks.svg"

_LABEL_W, _PLOT_W, _ROW_H, _GROUP_GAP, _TOP, _RIGHT = 440, 330, 18, 46, 54, 140
_UNIT_TITLES = {"x": "ratio (x): higher is faster unless the target is <=", "s": "seconds", "MB": "MB",
                "": "value"}


def _points(rec: dict) -> list:
    return [v for v in (rec.get("value"), rec.get("target"), rec.get("original"))
            if isinstance(v, (int, float)) and v > 0]


def _axis(recs: list) -> tuple:
    """(low, high, log) for the figures of one unit."""
    pts = [p for r in recs for p in _points(r)] or [1.0]
    lo, hi = min(pts), max(pts)
    if hi / lo > 20:
        return 10 ** math.floor(math.log10(lo)), 10 ** math.ceil(math.log10(hi)), True
    return 0.0, hi * 1.1, False


def _ticks(lo: float, hi: float, log: bool) -> list:
    if log:
        return [10 ** e for e in range(round(math.log10(lo)), round(math.log10(hi)) + 1)]
    step = 10 ** math.floor(math.log10(hi / 4)) if hi > 0 else 1
    for mult in (1, 2, 5, 10):
        if hi / (step * mult) <= 6:
            step *= mult
            break
    return [i * step for i in range(int(hi / step) + 1)]


def _fmt(v: float) -> str:
    return f"{v:.3g}" if v < 1000 else f"{v:,.0f}"


def render_svg(results: dict, include_info: bool = False) -> str:
    """The chart of a ``results.json`` document as SVG text.

    Parameters
    ----------
    results : the document ``run_all.py`` writes: ``{"started", "machine", "quick", "results": [record]}``,
        each record as ``common.report`` prints it (``name``, ``value``, ``unit``, ``target``, ``op``, ``ok``,
        ``original``, ``detail``, ``script``; the script and detail show as the label's tooltip).
    include_info : also draw the figures that have no target.
    """
    recs = [r for r in results.get("results", []) if isinstance(r.get("value"), (int, float))
            and (include_info or r.get("target") is not None)]
    groups: dict = {}
    for r in recs:
        groups.setdefault(r.get("unit", ""), []).append(r)
    width = _LABEL_W + _PLOT_W + _RIGHT
    height = _TOP + sum(len(g) * _ROW_H + _GROUP_GAP for g in groups.values()) + 30
    started = str(results.get("started", ""))[:16].replace("T", " ")
    quick = "(--quick) " if results.get("quick") else ""
    title = f"Benchmarks {quick}{started} UTC, {results.get('machine', '')}"
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="8" y="18" font-size="13" font-weight="bold">{html.escape(title)}</text>',
           '<text x="8" y="36">bar: this library (green: meets its target, red: misses it, grey: no target); '
           'black tick: target; hollow circle: original 0.12.1</text>']
    if not recs:
        out.append(f'<text x="8" y="{_TOP + 10}">no figures in this run</text>')
    y = _TOP
    for unit, rows in groups.items():
        lo, hi, log = _axis(rows)

        def px(v: float, lo=lo, hi=hi, log=log) -> float:
            if log:
                v = min(max(v, lo), hi)
                frac = (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))
            else:
                frac = (min(max(v, lo), hi) - lo) / (hi - lo or 1)
            return round(_LABEL_W + frac * _PLOT_W, 1)

        y += 16
        out.append(f'<text x="{_LABEL_W}" y="{y}" font-weight="bold">'
                   f'{html.escape(_UNIT_TITLES.get(unit, unit))}{" (log scale)" if log else ""}</text>')
        y += 6
        bottom = y + len(rows) * _ROW_H
        for t in _ticks(lo, hi, log):
            x = px(t)
            out.append(f'<line x1="{x}" y1="{y}" x2="{x}" y2="{bottom}" stroke="#ddd"/>')
            out.append(f'<text x="{x}" y="{bottom + 12}" text-anchor="middle" fill="#555">{_fmt(t)}</text>')
        for r in rows:
            name, tip = str(r.get("name", "")), f"{r.get('script', '')}: {r.get('detail', '')}"
            if len(name) > 72:
                name = name[:69] + "..."
            color = {True: "#2a8a3e", False: "#c0392b"}.get(r.get("ok"), "#999")
            mid = y + _ROW_H / 2
            out.append(f'<text x="{_LABEL_W - 6}" y="{mid + 4}" text-anchor="end">'
                       f'<title>{html.escape(tip)}</title>{html.escape(name)}</text>')
            x0, x1 = px(lo if log else 0.0), px(r["value"])
            out.append(f'<rect x="{x0}" y="{y + 3}" width="{max(x1 - x0, 1)}" height="{_ROW_H - 6}" '
                       f'fill="{color}"/>')
            value_text = f"{_fmt(r['value'])}{unit}"
            if r.get("target") is not None:
                value_text += f" ({r.get('op', '>=')} {_fmt(r['target'])})"
                xt = px(r["target"])
                out.append(f'<line x1="{xt}" y1="{y + 1}" x2="{xt}" y2="{y + _ROW_H - 1}" stroke="black" '
                           'stroke-width="2"/>')
            if isinstance(r.get("original"), (int, float)) and r["original"] > 0:
                out.append(f'<circle cx="{px(r["original"])}" cy="{mid}" r="4" fill="none" stroke="#236" '
                           'stroke-width="1.5"/>')
            out.append(f'<text x="{_LABEL_W + _PLOT_W + 6}" y="{mid + 4}">{html.escape(value_text)}</text>')
            y += _ROW_H
        y = bottom + _GROUP_GAP - 22
    out.append("</svg>")
    return "\n".join(out) + "\n"


def write_chart(results_path: str, out_path: str, include_info: bool = False) -> str:
    """Read ``results_path`` (``results.json``), write the chart to ``out_path``; returns ``out_path``."""
    with open(results_path) as f:
        results = json.load(f)
    svg = render_svg(results, include_info=include_info)
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    tmp = out_path + ".tmp"
    with open(tmp, "w") as f:
        f.write(svg)
    os.replace(tmp, out_path)
    return out_path


def main(argv=None) -> int:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import common  # bench-out/, or PETASTORM_BENCH_DIR

    bench_dir = common.BENCH_DIR
    p = argparse.ArgumentParser(description="Draw bench-out/results.json as an SVG bar chart.")
    p.add_argument("--results", default=os.path.join(bench_dir, "results.json"))
    p.add_argument("--out", default=os.path.join(bench_dir, DEFAULT_NAME))
    p.add_argument("--all", action="store_true", help="also draw figures without a target")
    args = p.parse_args(argv)
    print(write_chart(args.results, args.out, include_info=args.all))
    return 0


if __name__ == "__main__":
    sys.exit(main())
