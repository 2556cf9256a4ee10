"""The original's module path of the batched shuffling buffers is a facade over petastorm.pytorch_impl.batched_buffers
(their behaviour is tested through that path in tests/pytorch_impl/test_batched.py)."""
import subprocess
import sys

import petastorm.pytorch_impl.batched_buffers as impl
import petastorm.reader_impl.pytorch_shuffling_buffer as facade


def test_the_original_path_gives_the_buffers_of_the_torch_loaders():
    assert facade.__all__ == ["BatchedShufflingBufferBase", "BatchedNoopShufflingBuffer",
                              "BatchedRandomShufflingBuffer"]
    for name in facade.__all__:
        assert getattr(facade, name) is getattr(impl, name)
    buffer = facade.BatchedRandomShufflingBuffer(10, 2, batch_size=3, seed=1)
    buffer.add_many([list(range(8))])
    assert buffer.size == 8 and buffer.can_retrieve()


def test_importing_the_original_path_does_not_import_torch():
    code = ("import sys, petastorm.reader_impl.pytorch_shuffling_buffer as m; "
            "m.BatchedNoopShufflingBuffer(2); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "False"
