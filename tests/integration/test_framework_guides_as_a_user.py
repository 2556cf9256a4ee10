"""docs/pytorch.md, docs/tensorflow.md and docs/jax.md as a new user runs them: the ```python blocks in page
order, as a script file in a fresh interpreter (a block starting ``# In a fresh interpreter`` in a script of its
own, ``# Not run`` blocks left out), over the synthetic MNIST written by ``examples/mnist``'s generator.

Only the pages' dataset URL (``file:///tmp/mnist``) is substituted. After each block the script prints a
marker, and after the last one the values the pages' comments and prose promise (rows per epoch, batches of
``InMemBatchedDataLoader``, dtypes, the digit counts, the sharded batches), so that a block that silently does
less than the page says fails here. ``tests/integration/test_examples.py`` checks only that the pages exit 0.

Found by the new-user review: the pages' blocks must run from a file. Pasted into ``exec`` (a notebook cell
that hides its source from ``inspect``), tensorflow.md's ``@tf.function count_digits`` loses AutoGraph
("could not transform ... will run it as-is") and its Python ``for`` over the dataset never ends; that is
TensorFlow's behaviour, not petastorm's.
"""
import json
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TRAIN, TEST = 2000, 500


def _blocks(page):
    with open(os.path.join(ROOT, "docs", page)) as f:
        return re.findall(r"^```python\n(.*?)^```", f.read(), re.S | re.M)


def _scripts(page, url, trailer=""):
    """(in-order script with a marker after each block, [fresh-interpreter scripts])."""
    together, fresh = [], []
    for block in _blocks(page):
        block = block.replace("file:///tmp/mnist", url)
        if block.startswith("# Not run"):
            continue
        if block.startswith("# In a fresh interpreter"):
            fresh.append(block + "\nprint('=== fresh done', flush=True)\n")
            continue
        together.append(block + f"\nprint('=== block {len(together)} done', flush=True)\n")
    return "\n".join(together) + trailer, fresh


def _run(code, path, env=None):
    path.write_text(code)
    out = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=420,
                         cwd=str(path.parent), env=dict(os.environ, **(env or {})))
    assert out.returncode == 0, f"{path.name} failed:\n{out.stdout[-3000:]}\n{out.stderr[-6000:]}"
    return out.stdout


def _result(stdout):
    line = [ln for ln in stdout.splitlines() if ln.startswith("RESULT ")]
    assert len(line) == 1, stdout[-3000:]
    return json.loads(line[0][len("RESULT "):])


@pytest.fixture(scope="module")
def mnist_url(tmp_path_factory):
    path = tmp_path_factory.mktemp("mnist")
    url = "file://" + str(path)
    out = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "mnist", "generate_petastorm_mnist.py"),
                          "--output-url", url, "--train-size", str(TRAIN), "--test-size", str(TEST),
                          "--workers-count", "1"], capture_output=True, text=True, timeout=300, cwd=str(path))
    assert out.returncode == 0, out.stderr[-3000:]
    return url


@pytest.mark.slow
def test_pytorch_guide(mnist_url, tmp_path):
    trailer = """
import json
print('RESULT ' + json.dumps({'rows_per_epoch': rows_per_epoch, 'inmem_batches': batches,
      'batches_per_rank': batches_per_rank, 'resumed_rows': int(torch.cat(seen).numel()),
      'images': str(images.dtype), 'digits': str(digits.dtype), 'x': str(x.dtype), 'y': str(y.dtype)}))
"""
    script, fresh = _scripts("pytorch.md", mnist_url, trailer)
    assert not fresh
    stdout = _run(script, tmp_path / "pytorch_guide.py")
    assert stdout.count("=== block") == 8      # every block but the torchrun fragment
    got = _result(stdout)
    assert got["rows_per_epoch"] == [TEST, TEST]                     # "each pass yields each row once"
    assert got["inmem_batches"] == 3 * TEST // 100                   # "3 epochs" of batch_size=100
    assert len(set(got["batches_per_rank"])) == 1 and got["batches_per_rank"][0] == -(-(TRAIN // 3) // 64)
    assert got["resumed_rows"] == TRAIN                              # no row lost or repeated
    # the comment of the first block: uint8 images, int64 digits
    assert (got["images"], got["digits"], got["x"], got["y"]) == ("torch.uint8", "torch.int64", "torch.float32",
                                                                  "torch.int64")


@pytest.mark.slow
def test_tensorflow_guide(mnist_url, tmp_path):
    trailer = "\nimport json\nprint('RESULT ' + json.dumps({'counts': counts.numpy().tolist(), 'sizes': sizes}))\n"
    script, fresh = _scripts("tensorflow.md", mnist_url, trailer)
    stdout = _run(script, tmp_path / "tensorflow_guide.py", env={"TF_CPP_MIN_LOG_LEVEL": "2"})
    assert stdout.count("=== block") == 4
    # the page's comment on the printed element_spec
    assert ("MnistSchema_view_view(digit=TensorSpec(shape=(), dtype=tf.int64, name=None), "
            "image=TensorSpec(shape=(28, 28), dtype=tf.uint8, name=None))") in stdout
    got = _result(stdout)
    assert sum(got["counts"]) == TRAIN and len(got["counts"]) == 10     # "rows of each digit, 0-9"
    assert sum(got["sizes"]) == TRAIN and set(got["sizes"][:-1]) == {100}
    assert len(fresh) == 1                                              # the TF1 README snippets
    assert "=== fresh done" in _run(fresh[0], tmp_path / "tensorflow_guide_tf1.py",
                                    env={"TF_CPP_MIN_LOG_LEVEL": "2"})


@pytest.mark.slow
@pytest.mark.parametrize("devices", [1, 2])
def test_jax_guide(mnist_url, tmp_path, devices):
    # the page: "On CPU, XLA_FLAGS=--xla_force_host_platform_device_count=2 makes two devices to try it"
    trailer = """
import json
print('RESULT ' + json.dumps({'devices': len(jax.devices()), 'shards': len(batch['x'].sharding.device_set),
      'counts': counts, 'resumed': int(sum(len(s) for s in seen)), 'digit': str(digit.dtype),
      'image': str(image.dtype)}))
"""
    script, fresh = _scripts("jax.md", mnist_url, trailer)
    assert not fresh
    env = {"XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}", "JAX_PLATFORMS": "cpu"}
    stdout = _run(script, tmp_path / "jax_guide.py", env=env)
    assert stdout.count("=== block") == 6
    first, last = map(float, re.search(r"^loss ([\d.]+) -> ([\d.]+)$", stdout, re.M).groups())
    assert last < first
    got = _result(stdout)
    assert got["devices"] == got["shards"] == devices
    assert len(set(got["counts"])) == 1 and got["counts"][0] == TRAIN // 3
    assert got["resumed"] == TRAIN
    assert (got["image"], got["digit"]) == ("uint8", "int32")          # the first block's comment


_TF_ERROR = """
import os
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
import tensorflow as tf
from petastorm import make_reader, make_batch_reader, TransformSpec
from petastorm.tf_utils import make_petastorm_dataset

def bad(row):
    raise KeyError('boom')

for factory in (make_reader, make_batch_reader):
    with factory('URL/test', schema_fields=['digit'], transform_spec=TransformSpec(bad), num_epochs=1) as reader:
        try:
            for _ in make_petastorm_dataset(reader):
                pass
        except tf.errors.OpError as e:
            assert "KeyError: 'boom'" in e.message, e.message
            assert e.message.startswith('{{function_node'), e.message[:200]   # TensorFlow's prefix comes first
            print('caught', factory.__name__, type(e).__name__)
"""


@pytest.mark.slow
def test_tensorflow_guide_errors_reach_the_loop_with_their_class_and_message(mnist_url, tmp_path):
    # tensorflow.md: "Errors of ... a TransformSpec function ... reach the loop as a tf.errors.OpError whose
    # message holds, after TensorFlow's own prefix, the original exception's class and message"
    stdout = _run(_TF_ERROR.replace("URL", mnist_url), tmp_path / "tf_error.py")
    assert "caught make_reader UnknownError" in stdout and "caught make_batch_reader UnknownError" in stdout


@pytest.mark.slow
def test_pytorch_guide_a_new_pass_after_a_break_raises_the_originals_error(mnist_url):
    # pytorch.md, "Epochs": after a `break` the reader cannot be reset mid-epoch (while it has rows left). Recorded from 0.12.1
    # (DataLoader over make_reader, break after 4 batches, then a new `for`): NotImplementedError
    # "Currently do not support resetting a reader while in the middle of iteration. ..."
    from petastorm import make_batch_reader, make_reader
    from petastorm.pytorch import BatchedDataLoader, DataLoader
    for loader_cls, factory in ((DataLoader, make_reader), (BatchedDataLoader, make_batch_reader)):
        with loader_cls(factory(mnist_url + "/train", schema_fields=["digit"], num_epochs=1), batch_size=10) as loader:
            for i, _ in enumerate(loader):
                if i == 3:
                    break
            with pytest.raises(NotImplementedError, match="Currently do not support resetting a reader while in the "
                                                          "middle of iteration"):
                for _ in loader:
                    pass
