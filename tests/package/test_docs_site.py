"""The docs site (``make docs``): Sphinx builds it with warnings as errors, and the key pages are there.

Also the chart of the benchmark figures (``benchmarks/chart.py``), which ``make bench`` writes and the site
embeds.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
# benchmarks/ is not a package: its chart.py loaded by path, leaving sys.path alone
_spec = importlib.util.spec_from_file_location("bench_chart_under_test", os.path.join(REPO, "benchmarks", "chart.py"))
chart = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(chart)

RESULTS = {
    "started": "2026-12-07T12:00:00+00:00", "machine": "test machine, 2 cores", "quick": True,
    "results": [
        {"name": "BatchedDataLoader / pyarrow 2 threads", "value": 0.63, "unit": "x", "target": 0.8,
         "op": ">=", "ok": False, "original": 0.1, "detail": "median of 2", "script": "bench_loaders.py"},
        {"name": "peer ratio", "value": 991.6, "unit": "x", "target": 2.0, "op": ">=", "ok": True,
         "original": None, "detail": "", "script": "bench_loaders.py"},
        {"name": "first row, 2000 files", "value": 0.42, "unit": "s", "target": 1.0, "op": "<=", "ok": True,
         "original": 3.1, "detail": "", "script": "bench_startup.py"},
        {"name": "info: CPU-time ratio", "value": 0.44, "unit": "x", "target": None, "op": ">=", "ok": None,
         "original": None, "detail": "", "script": "bench_loaders.py"},
    ],
}


def _svg_texts(svg: str) -> list:
    root = ET.fromstring(svg)  # well-formed XML, or this raises
    return ["".join(el.itertext()) for el in root.iter("{http://www.w3.org/2000/svg}text")]


def test_chart_draws_each_figure_with_a_target_and_its_verdict_colour():
    svg = chart.render_svg(RESULTS)
    texts = _svg_texts(svg)
    assert any("BatchedDataLoader / pyarrow 2 threads" in t for t in texts)
    assert any("first row, 2000 files" in t for t in texts)
    assert not any("info: CPU-time ratio" in t for t in texts)  # no target: only with include_info
    assert any(t.startswith("0.63x (>= 0.8)") for t in texts)
    assert any(t.startswith("0.42s (<= 1)") for t in texts)
    assert "#c0392b" in svg and "#2a8a3e" in svg  # a miss in red, a pass in green
    assert svg.count("<circle") == 2  # the two figures the original 0.12.1 was measured on
    assert any("(log scale)" in t for t in texts)  # 0.1 .. 991: the ratios on a log axis
    assert any(t.startswith("seconds") for t in texts)  # the times on an axis of their own
    assert any("info: CPU-time ratio" in t for t in _svg_texts(chart.render_svg(RESULTS, include_info=True)))


def test_chart_of_a_run_without_figures_says_so():
    texts = _svg_texts(chart.render_svg({"started": "", "machine": "m", "results": [{"tail": "crashed"}]}))
    assert "no figures in this run" in texts


def test_chart_cli_writes_the_svg(tmp_path):
    results = tmp_path / "results.json"
    results.write_text(json.dumps(RESULTS))
    out = tmp_path / "sub" / "chart.svg"
    script = os.path.join(REPO, "benchmarks", "chart.py")
    cmd = [sys.executable, script, "--results", str(results), "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert any("peer ratio" in t for t in _svg_texts(out.read_text()))


def test_make_bench_run_writes_the_chart_next_to_its_results(tmp_path):
    env = dict(os.environ, PETASTORM_BENCH_DIR=str(tmp_path))
    proc = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", "run_all.py"), "--only", "none_such"],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert (tmp_path / "results.json").is_file()
    assert "no figures in this run" in _svg_texts((tmp_path / chart.DEFAULT_NAME).read_text())
    assert f"chart: {tmp_path / chart.DEFAULT_NAME}" in proc.stdout


@pytest.mark.slow
def test_docs_site_builds_with_warnings_as_errors(tmp_path):
    bench_dir = tmp_path / "bench-out"
    bench_dir.mkdir()
    (bench_dir / "results.json").write_text(json.dumps(RESULTS))  # no chart yet: the build draws it
    out = tmp_path / "site"
    env = dict(os.environ, PETASTORM_BENCH_DIR=str(bench_dir))
    proc = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
                           "-d", str(tmp_path / "doctrees"), os.path.join(REPO, "docs"), str(out)],
                          capture_output=True, text=True, timeout=600, env=env, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    def page(name: str) -> str:
        return (out / name).read_text(encoding="utf-8")

    assert "Quick start" in page("index.html")  # the README is the home page
    for guide in ("pytorch", "tensorflow", "jax", "spark", "elastic_resume", "migration", "architecture",
                  "settings", "benchmarks"):
        assert (out / f"{guide}.html").is_file(), guide
        assert f'href="{guide}.html"' in page("index.html"), f"{guide} missing from the navigation"
    assert "BatchedDataLoader" in page("pytorch.html")
    assert "PETASTORM_MP_START" in page("settings.html")  # the settings table
    assert "reader_impl" in page("architecture.html")
    # the API reference: documented objects, with their numpy-style parameters rendered
    reader = page("api/reader.html")
    assert 'id="petastorm.reader.make_reader"' in reader
    assert 'id="petastorm.reader.make_batch_reader"' in reader
    assert "dataset_url" in reader and "Parameters" in reader
    for module, name in (("pytorch", "petastorm.pytorch.BatchedDataLoader"),
                         ("unischema", "petastorm.unischema.Unischema"),
                         ("tf_utils", "petastorm.tf_utils.make_petastorm_dataset"),
                         ("jax", "petastorm.jax.make_jax_iterator"),
                         ("spark", "petastorm.spark.make_spark_converter"),
                         ("errors", "petastorm.errors.PetastormArgumentError"),
                         ("writer", "petastorm.etl.writer.write_dataset"),
                         ("materialize", "petastorm.etl.materialize.materialize_dataset"),
                         ("settings", "petastorm.settings.Settings")):
        assert f'id="{name}"' in page(f"api/{module}.html"), name
    # the benchmark chart of the last run (here drawn from results.json), embedded in its page
    assert re.search(r'<img[^>]+src="_static/benchmarks.svg"', page("benchmarks.html"))
    assert any("peer ratio" in t for t in _svg_texts(page("_static/benchmarks.svg")))
