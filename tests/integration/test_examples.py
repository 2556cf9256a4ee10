"""The examples run as users run them: each script in a fresh interpreter, its output checked.

The datasets are written once per module by the generator scripts themselves (small: a few thousand
rows), and every example reads them. Training examples must print a loss that goes down and a test
accuracy above chance (0.1).
"""
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
HELLO = os.path.join(ROOT, "examples", "hello_world")
MNIST = os.path.join(ROOT, "examples", "mnist")

# "<name>: <steps> steps, loss <first> -> <last> (...), test accuracy <accuracy>", printed by each
# training example at its end.
_SUMMARY = re.compile(r"^(?P<name>[\w ()]+): (?P<steps>\d+) steps, loss (?P<first>[\d.]+) -> (?P<last>[\d.]+)"
                      r".*test accuracy (?P<accuracy>[\d.]+)$", re.MULTILINE)


def _run(script, *args, cwd, env=None, timeout=300):
    """Run ``script`` with this interpreter as a user would; return its stdout (fails on a non-zero exit)."""
    full_env = dict(os.environ, **(env or {}))
    out = subprocess.run([sys.executable, script, *map(str, args)], capture_output=True, text=True,
                         timeout=timeout, cwd=str(cwd), env=full_env)
    assert out.returncode == 0, f"{os.path.basename(script)} failed:\n{out.stdout}\n{out.stderr}"
    return out.stdout


def _summaries(stdout):
    """{name: (steps, first loss, last loss, accuracy)} from the summary lines of a training example."""
    return {m["name"]: (int(m["steps"]), float(m["first"]), float(m["last"]), float(m["accuracy"]))
            for m in _SUMMARY.finditer(stdout)}


@pytest.fixture(scope="module")
def hello_url(tmp_path_factory):
    """The hello-world dataset, 20 rows, written by its generator script."""
    path = tmp_path_factory.mktemp("hello") / "hello_world_dataset"
    url = "file://" + str(path)
    stdout = _run(os.path.join(HELLO, "generate_petastorm_dataset.py"), url, 20, cwd=path.parent)
    assert f"wrote 20 rows in 1 file(s) to {url}" in stdout
    return url


@pytest.fixture(scope="module")
def mnist_url(tmp_path_factory):
    """The synthetic MNIST, 2,000 train and 500 test rows, written by its generator script."""
    path = tmp_path_factory.mktemp("mnist")
    url = "file://" + str(path)
    stdout = _run(os.path.join(MNIST, "generate_petastorm_mnist.py"), "--output-url", url, "--train-size", 2000,
                  "--test-size", 500, "--workers-count", 1, cwd=path)
    assert f"wrote 2000 rows to {url}/train" in stdout
    assert f"wrote 500 rows to {url}/test" in stdout
    return url


# --- make demo ---------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_demo_writes_reads_back_and_trains_with_the_loss_going_down(tmp_path):
    stdout = _run(os.path.join(HELLO, "demo.py"), tmp_path / "hello", cwd=tmp_path)
    assert "read back 50 rows" in stdout
    assert "HelloWorldSchema" in stdout
    assert "wrote 4000 + 1000 MNIST-shaped rows" in stdout
    step_losses = [float(v) for v in re.findall(r"step \d+ loss ([\d.]+)", stdout)]
    assert len(step_losses) == 10, stdout        # 200 steps, a line every 20
    assert step_losses[-1] < step_losses[0] - 0.2, stdout
    trained = re.search(r"trained 200 steps in [\d.]+ s: loss ([\d.]+) -> ([\d.]+), test accuracy ([\d.]+)", stdout)
    assert trained, stdout
    assert float(trained[2]) < float(trained[1])
    assert float(trained[3]) > 0.5, stdout
    assert (tmp_path / "hello" / "_common_metadata").exists()
    assert (tmp_path / "mnist" / "train" / "_common_metadata").exists()


# --- hello world ---------------------------------------------------------------------------------------------

def test_python_hello_world_prints_a_row_and_a_batch(hello_url, tmp_path):
    stdout = _run(os.path.join(HELLO, "python_hello_world.py"), hello_url, cwd=tmp_path)
    assert re.search(r"^row: id=\d+ image1=\(128, 256, 3\) uint8 array_4d=\(4, 128, 30, 3\)$", stdout, re.M), stdout
    assert "batch: id=(20,) int32 image1=(20, 128, 256, 3) array_4d=(20, 4, 128, 30, 3)" in stdout


def test_pytorch_hello_world_prints_tensor_batches(hello_url, tmp_path):
    stdout = _run(os.path.join(HELLO, "pytorch_hello_world.py"), hello_url, cwd=tmp_path)
    rows = re.search(r"^DataLoader: id=\[(.*)\] image1=\(4, 128, 256, 3\) torch.uint8$", stdout, re.M)
    assert rows, stdout
    assert len(rows[1].split(",")) == 4
    assert "BatchedDataLoader: id=(8,) torch.int32 image1=(8, 128, 256, 3)" in stdout


@pytest.mark.slow
def test_tensorflow_hello_world_eager(hello_url, tmp_path):
    stdout = _run(os.path.join(HELLO, "tensorflow_hello_world.py"), hello_url, cwd=tmp_path)
    assert re.search(r"^tf.data: id=\[\d+, \d+, \d+, \d+\] image1=\(4, 128, 256, 3\) uint8$", stdout, re.M), stdout


@pytest.mark.slow
def test_tensorflow_hello_world_tf1_style_runs_as_the_original(hello_url, tmp_path):
    stdout = _run(os.path.join(HELLO, "tensorflow_hello_world.py"), hello_url, "--tf1", cwd=tmp_path)
    assert re.search(r"^tf_tensors: id=\d+$", stdout, re.M), stdout
    assert re.search(r"^make_one_shot_iterator: id=\d+$", stdout, re.M), stdout


def test_jax_hello_world_prints_a_device_batch(hello_url, tmp_path):
    stdout = _run(os.path.join(HELLO, "jax_hello_world.py"), hello_url, cwd=tmp_path)
    line = re.search(r"^jax: id=\[(.*)\] image1=\(8, 128, 256, 3\) uint8 on \['cpu:0'\] mean=([\d.]+)$", stdout,
                     re.M)
    assert line, stdout
    assert len(line[1].split(",")) == 8
    assert 100 < float(line[2]) < 155             # uniform random pixels: mean ~127


# --- mnist -------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_mnist_pytorch_example_learns_with_both_loaders(mnist_url, tmp_path):
    stdout = _run(os.path.join(MNIST, "pytorch_example.py"), "--dataset-url", mnist_url, "--epochs", 2,
                  "--log-interval", 10, cwd=tmp_path)
    summaries = _summaries(stdout)
    assert set(summaries) == {"DataLoader", "BatchedDataLoader"}, stdout
    for name, (steps, first, last, accuracy) in summaries.items():
        assert steps == 2 * 32, (name, stdout)    # 2 epochs of 2,000 rows in batches of 64 (the last short)
        assert last < first - 0.3, (name, stdout)
        assert accuracy > 0.3, (name, stdout)
    assert re.search(r"^DataLoader: step 10 loss", stdout, re.M) and "BatchedDataLoader: step 60 loss" in stdout


@pytest.mark.slow
def test_mnist_pytorch_distributed_example_ranks_get_equal_batches_and_learn(mnist_url, tmp_path):
    stdout = _run(os.path.join(MNIST, "pytorch_distributed_example.py"), "--dataset-url", mnist_url,
                  "--world-size", 2, "--epochs", 2, cwd=tmp_path)
    # balanced shards: 1,000 rows per rank, 16 batches of 64 (the last short) on both ranks, every epoch
    assert "epoch 0: 16 batches on each of 2 ranks [16, 16]" in stdout, stdout
    assert "epoch 1: 16 batches on each of 2 ranks [16, 16]" in stdout, stdout
    for rank in (0, 1):
        # no ^ anchor: the ranks print from their own processes, so a line may follow another's unterminated one
        line = re.search(rf"rank {rank}: 32 steps, loss ([\d.]+) -> ([\d.]+)", stdout)
        assert line, stdout
        assert float(line[2]) < float(line[1]) - 0.1, stdout


@pytest.mark.slow
def test_mnist_tf_example_learns_with_keras_fit(mnist_url, tmp_path):
    stdout = _run(os.path.join(MNIST, "tf_example.py"), "--dataset-url", mnist_url, "--steps", 60,
                  "--log-interval", 20, cwd=tmp_path)
    assert "keras: steps 1-20 loss" in stdout and "keras: steps 41-60 loss" in stdout, stdout
    (steps, first, last, accuracy), = _summaries(stdout).values()
    assert steps == 60
    assert last < first - 0.3, stdout
    assert accuracy > 0.3, stdout


_JAX_ARGS = ("--epochs", 3)          # 3 x 2,000 rows in batches of 128: 46 full batches (drop_last)


@pytest.fixture(scope="module")
def jax_single_device_run(mnist_url, tmp_path_factory):
    """Output of the JAX example on one device (shared: the data-parallel test compares with it)."""
    return _run(os.path.join(MNIST, "jax_example.py"), "--dataset-url", mnist_url, *_JAX_ARGS,
                cwd=tmp_path_factory.mktemp("jax"))


@pytest.mark.slow
def test_mnist_jax_example_learns(jax_single_device_run):
    stdout = jax_single_device_run
    assert "batch: image (128, 28, 28) uint8 sharding SingleDeviceSharding" in stdout, stdout
    (steps, first, last, accuracy), = _summaries(stdout).values()
    assert steps == 3 * 2000 // 128
    assert last < first - 0.3, stdout
    assert accuracy > 0.3, stdout


@pytest.mark.slow
def test_mnist_jax_example_data_parallel_over_two_cpu_devices_learns_the_same(mnist_url, jax_single_device_run,
                                                                              tmp_path):
    parallel = _run(os.path.join(MNIST, "jax_example.py"), "--dataset-url", mnist_url, *_JAX_ARGS,
                    "--data-parallel", cwd=tmp_path, env={"XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
    assert "data-parallel over 2 devices: ['cpu:0', 'cpu:1']" in parallel, parallel
    assert "sharding NamedSharding(mesh=Mesh('data': 2" in parallel and "spec=P('data',)" in parallel, parallel
    # The same rows in the same order, the same steps: the same losses and accuracy, up to float rounding.
    (p_steps, p_first, p_last, p_acc), = _summaries(parallel).values()
    (s_steps, s_first, s_last, s_acc), = _summaries(jax_single_device_run).values()
    assert p_steps == s_steps == 3 * 2000 // 128
    assert p_last < p_first - 0.3, parallel
    assert p_first == pytest.approx(s_first, abs=2e-3) and p_last == pytest.approx(s_last, abs=2e-3)
    assert p_acc == pytest.approx(s_acc, abs=0.01)


# --- the user-guide pages ----------------------------------------------------------------------------------

_FRESH = "# In a fresh interpreter"          # a block that runs in a process of its own (e.g. TF1 mode)
_NOT_RUN = "# Not run by the tests"          # a fragment that needs more than one machine or process


def _page_scripts(page, mnist_url):
    """The ```python blocks of ``docs/<page>``, as scripts: in page order in one script, except the blocks
    that start with ``_FRESH`` (one script each); ``_NOT_RUN`` blocks are left out. The dataset URL of the
    pages, ``file:///tmp/mnist``, is replaced by the test's."""
    with open(os.path.join(ROOT, "docs", page)) as f:
        blocks = re.findall(r"^```python\n(.*?)^```", f.read(), re.S | re.M)
    assert blocks, page
    together, fresh = [], []
    for block in blocks:
        block = block.replace("file:///tmp/mnist", mnist_url)
        if block.startswith(_NOT_RUN):
            continue
        (fresh.append(block) if block.startswith(_FRESH) else together.append(block))
    return ["\n".join(together)] + fresh


@pytest.mark.slow
@pytest.mark.parametrize("page", ["pytorch.md", "tensorflow.md", "jax.md"])
def test_user_guide_snippets_run_as_written(page, mnist_url, tmp_path):
    for i, script in enumerate(_page_scripts(page, mnist_url)):
        path = tmp_path / f"{page.split('.')[0]}_{i}.py"
        path.write_text(script)
        _run(path, cwd=tmp_path)
