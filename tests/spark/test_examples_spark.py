"""The Spark converter examples (``examples/spark_dataset_converter``) train as users run them.

The PyTorch example runs as a script in a fresh interpreter (its own local Spark session, started and
stopped by the script: the one subprocess JVM of this file); the TensorFlow example's ``main(argv, spark)``
runs in-process with the shared test session. Both train on 3,000 synthetic digits for a few dozen steps:
the loss must go down, the test accuracy must beat chance (0.1), every row must land in train or test,
and the converter's cache must be gone at the end (the examples call ``converter.delete()``). The PyTorch run
draws its digits in the Spark tasks; the TensorFlow run reads them from a LIBSVM file (the layout of the real
MNIST the original examples downloaded). On pyspark 4, the PyTorch example also trains through a Spark
Connect session (the Connect run of ``make test-spark4``).
"""
import importlib.util
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(ROOT, "examples", "spark_dataset_converter")
CACHE_CONF = "petastorm.spark.converter.parentCacheDirUrl"

_SUMMARY = re.compile(r"^(?P<name>\w+): (?P<steps>\d+) steps, loss (?P<first>[\d.]+) -> (?P<last>[\d.]+) "
                      r"\(mean of the first and last \d+\), test accuracy (?P<accuracy>[\d.]+)$", re.MULTILINE)
_ROWS = re.compile(r"^converter: (\d+) train rows, (\d+) test rows, cached in (\S+)$", re.MULTILINE)


def _leftovers(cache_dir):
    """Cache directories the example left behind."""
    return sorted(os.listdir(cache_dir)) if os.path.isdir(cache_dir) else []


@pytest.mark.slow
@pytest.mark.spark        # its own JVM, but a Spark test all the same: make test-spark4 runs it on pyspark 4
@pytest.mark.timeout(600)
def test_pytorch_converter_example_trains_from_a_dataframe_as_a_script(tmp_path):
    cache_dir = tmp_path / "cache"
    env = dict(os.environ, PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable)
    env.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    out = subprocess.run(
        [sys.executable, os.path.join(EXAMPLES, "pytorch_converter_example.py"), "--rows", "3000", "--steps", "60",
         "--log-interval", "20", "--cache-dir-url", f"file://{cache_dir}"],
        capture_output=True, text=True, timeout=540, cwd=str(tmp_path), env=env)
    assert out.returncode == 0, f"{out.stdout}\n{out.stderr[-5000:]}"
    rows = _ROWS.search(out.stdout)
    assert rows, out.stdout
    assert int(rows[1]) + int(rows[2]) == 3000
    assert 2500 < int(rows[1]) < 2900                      # randomSplit 90 / 10
    assert rows[3].startswith(f"file://{cache_dir}/")
    assert len(re.findall(r"^torch: step \d+ loss [\d.]+$", out.stdout, re.MULTILINE)) == 3
    summary = _SUMMARY.search(out.stdout)
    assert summary and summary["name"] == "torch", out.stdout
    assert int(summary["steps"]) == 60
    assert float(summary["last"]) < float(summary["first"]) - 0.2, out.stdout
    assert float(summary["accuracy"]) > 0.2, out.stdout
    assert _leftovers(cache_dir) == []                    # converter.delete() removed both caches


@pytest.fixture
def tf_example():
    spec = importlib.util.spec_from_file_location("tensorflow_converter_example",
                                                  os.path.join(EXAMPLES, "tensorflow_converter_example.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write_libsvm_mnist(path, rows, seed=3):
    """``rows`` synthetic digits (the examples' renderer) as a LIBSVM text file, as the real ``mnist.bz2`` is
    laid out: ``<label> <pixel index from 1>:<value 0-255> ...``, zero pixels left out."""
    import numpy as np

    sys.path.insert(0, EXAMPLES)
    try:
        import mnist_data
    finally:
        sys.path.remove(EXAMPLES)
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, rows)
    images = mnist_data._render_digits()(labels, rng).reshape(rows, -1)
    with open(path, "w") as f:
        for label, image in zip(labels, images):
            nonzero = np.flatnonzero(image)
            f.write(f"{label} " + " ".join(f"{i + 1}:{image[i]}" for i in nonzero) + "\n")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_tensorflow_converter_example_trains_on_a_libsvm_file_with_a_session_of_yours(tf_example, spark_session,
                                                                                      tmp_path, capsys):
    cache_dir = tmp_path / "cache"
    libsvm = tmp_path / "mnist.libsvm"
    _write_libsvm_mnist(libsvm, 3000)
    previous = spark_session.conf.get(CACHE_CONF, None)
    try:
        result = tf_example.main(["--libsvm-path", str(libsvm), "--steps", "60", "--log-interval", "20",
                                  "--cache-dir-url", f"file://{cache_dir}"], spark=spark_session)
    finally:
        if previous is None:
            spark_session.conf.unset(CACHE_CONF)
        else:
            spark_session.conf.set(CACHE_CONF, previous)
    stdout = capsys.readouterr().out
    assert result["train_rows"] + result["test_rows"] == 3000
    assert len(result["losses"]) == 3                      # 60 steps, a Keras epoch of 20 steps each
    assert result["losses"][-1] < result["losses"][0] - 0.2, stdout
    assert result["accuracy"] > 0.2, stdout
    summary = _SUMMARY.search(stdout)
    assert summary and summary["name"] == "keras" and int(summary["steps"]) == 60, stdout
    assert _leftovers(cache_dir) == []
    assert spark_session.range(3).count() == 3            # the session given is left running


@pytest.mark.slow
@pytest.mark.spark_connect  # a pytest run of its own on pyspark 4 (make test-spark4): see tests/_fixtures/spark_connect.py
@pytest.mark.timeout(600)
def test_pytorch_converter_example_trains_through_spark_connect(spark_connect_session, tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("pytorch_converter_example",
                                                  os.path.join(EXAMPLES, "pytorch_converter_example.py"))
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    cache_dir = tmp_path / "cache"
    try:
        result = example.main(["--rows", "3000", "--steps", "60", "--log-interval", "20",
                               "--cache-dir-url", f"file://{cache_dir}"], spark=spark_connect_session)
    finally:
        spark_connect_session.conf.unset(CACHE_CONF)
    stdout = capsys.readouterr().out
    assert result["train_rows"] + result["test_rows"] == 3000
    assert len(result["losses"]) == 60
    assert result["accuracy"] > 0.2, stdout
    assert _leftovers(cache_dir) == []


# --- docs/spark.md: its snippets run as written, in order, in one namespace ------------------------------------

DOC = os.path.join(ROOT, "docs", "spark.md")


def _doc_snippets():
    """The ```python blocks of docs/spark.md, except the Spark Connect one (pyspark>=4 and a server)."""
    with open(DOC) as f:
        blocks = re.findall(r"^```python\n(.*?)^```$", f.read(), re.MULTILINE | re.DOTALL)
    return [b for b in blocks if ".remote(" not in b]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_spark_doc_snippets_run_as_written(spark_session, tmp_path):
    snippets = _doc_snippets()
    assert len(snippets) == 4  # materialize_dataset, reading back, dataset_as_rdd, the converter
    previous = spark_session.conf.get(CACHE_CONF, None)
    namespace = {"__name__": "__main__"}
    try:
        for code in snippets:
            exec(compile(code.replace("file:///tmp/", f"file://{tmp_path}/"), DOC, "exec"), namespace)
    finally:
        if previous is None:
            spark_session.conf.unset(CACHE_CONF)
        else:
            spark_session.conf.set(CACHE_CONF, previous)
    assert namespace["spark"] is spark_session          # getOrCreate() found the running session
    assert (tmp_path / "hello_world_dataset" / "_common_metadata").exists()
    assert tuple(namespace["pair"].shape) == (100, 2)     # the last tf batch of the converter snippet
    assert (tmp_path / "petastorm_cache").is_dir() and _leftovers(tmp_path / "petastorm_cache") == []
