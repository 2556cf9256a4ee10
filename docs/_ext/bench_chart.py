"""Sphinx extension: put the chart of the last benchmark run at ``_static/benchmarks.svg`` of the site.

The chart is the one ``make bench`` wrote (``bench-out/benchmarks.svg``, see ``benchmarks/chart.py``); when
only ``bench-out/results.json`` is there, it is drawn from it; with neither (no benchmark run on this
machine yet), a small SVG says so. ``PETASTORM_BENCH_DIR`` moves ``bench-out`` as it does for the benchmarks.
"""
from __future__ import annotations

import importlib.util
import os
import shutil

__all__ = ["setup", "chart_svg"]

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_NAME = "benchmarks.svg"
_PLACEHOLDER = ('<svg xmlns="http://www.w3.org/2000/svg" width="520" height="40" font-family="sans-serif" '
                'font-size="13"><text x="8" y="24">No benchmark run on this machine yet: run make bench, '
                'then make docs.</text></svg>\n')


def _bench_dir() -> str:
    return os.environ.get("PETASTORM_BENCH_DIR", os.path.join(_REPO, "bench-out"))


def chart_svg(dest_dir: str) -> str:
    """Write ``benchmarks.svg`` into ``dest_dir`` (copied, drawn from results.json, or a placeholder)."""
    os.makedirs(dest_dir, exist_ok=True)
    dest = os.path.join(dest_dir, _NAME)
    svg, results = os.path.join(_bench_dir(), _NAME), os.path.join(_bench_dir(), "results.json")
    if os.path.isfile(svg):
        shutil.copyfile(svg, dest)
    elif os.path.isfile(results):
        path = os.path.join(_REPO, "benchmarks", "chart.py")
        spec = importlib.util.spec_from_file_location("_bench_chart", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.write_chart(results, dest)
    else:
        with open(dest, "w") as f:
            f.write(_PLACEHOLDER)
    return dest


def _builder_inited(app) -> None:
    if app.builder.format != "html":
        return
    static = os.path.join(app.doctreedir, "bench-chart")
    chart_svg(static)
    app.config.html_static_path = list(app.config.html_static_path) + [static]


def setup(app) -> dict:
    app.connect("builder-inited", _builder_inited)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
