"""docs/spark.md's snippets as a user runs them: one script in a fresh interpreter, without ``PYSPARK_PYTHON``.

``tests/spark/test_examples_spark.py`` runs the same snippets in the test process, whose Spark session was
made with ``PYSPARK_PYTHON`` set (``make test`` exports it). A user running ``.venv/bin/python script.py``
outside an activated venv has no such variable: Spark's Python workers then start ``python3`` from ``PATH``,
and ``dataset_as_rdd`` failed in them with ``No module named 'petastorm'`` (found by the new-user review).
The page's first snippet now points ``PYSPARK_PYTHON`` at its own interpreter; this test keeps it so.
"""
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


@pytest.mark.slow
@pytest.mark.spark
def test_spark_guide_snippets_run_in_a_fresh_interpreter_without_pyspark_python(tmp_path):
    with open(os.path.join(ROOT, "docs", "spark.md")) as f:
        blocks = re.findall(r"^```python\n(.*?)^```$", f.read(), re.MULTILINE | re.DOTALL)
    # writing with materialize_dataset, reading back, dataset_as_rdd (Python code in Spark's workers)
    assert "dataset_as_rdd(" in blocks[2], "the page's third snippet is no longer dataset_as_rdd"
    script = "\n".join(blocks[:3]).replace("file:///tmp/", f"file://{tmp_path}/")
    script += "\nprint('dataset_as_rdd ids sum', rdd.map(lambda r: int(r.id)).sum())\nspark.stop()\n"
    (tmp_path / "spark_guide.py").write_text(script)
    # PATH without this interpreter's directory first, as outside an activated venv
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYSPARK_")}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if os.path.abspath(p) != os.path.dirname(os.path.abspath(sys.executable)))
    out = subprocess.run([sys.executable, str(tmp_path / "spark_guide.py")], capture_output=True, text=True,
                         timeout=540, cwd=str(tmp_path), env=env)
    assert out.returncode == 0, f"docs/spark.md snippets failed:\n{out.stdout[-3000:]}\n{out.stderr[-6000:]}"
    assert "dataset_as_rdd ids sum 45" in out.stdout
    assert (tmp_path / "hello_world_dataset" / "_common_metadata").exists()
