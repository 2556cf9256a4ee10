"""The batched shuffling buffers (``petastorm.reader_impl.pytorch_shuffling_buffer``) given columns of different
lengths."""
import pytest
import torch

from petastorm.reader_impl.pytorch_shuffling_buffer import (
    BatchedNoopShufflingBuffer,
    BatchedRandomShufflingBuffer,
)


@pytest.mark.parametrize("make", [lambda: BatchedRandomShufflingBuffer(100, 0, batch_size=4),
                                  lambda: BatchedNoopShufflingBuffer(batch_size=4)])
def test_batched_buffers_refuse_columns_of_different_lengths(make):
    # 0.12.1 broadcast a 1-row column silently (its batches were [[6, 8, 7, 9], [0, 0, 0, 0]]) and the noop
    # buffer served misaligned batches ([0, 1, 2, 3] with [0]); 10 rows with 5 raised torch's RuntimeError
    buf = make()
    with pytest.raises(RuntimeError, match=r"column 1 1 rows"):
        buf.add_many([torch.arange(10), torch.arange(1)])
    with pytest.raises(RuntimeError, match=r"column 0 10 rows, column 1 5 rows"):
        buf.add_many([torch.arange(10), torch.arange(5)])
    assert buf.size == 0
    buf.add_many([torch.arange(10), torch.arange(10) * 2])
    first, second = buf.retrieve()
    assert torch.equal(first * 2, second)


@pytest.mark.parametrize("state", [{}, None, {"buffer": {}}, {"finished": False, "columns": [0]}])
def test_batched_random_buffer_refuses_a_malformed_state(state):
    # {} raised a bare KeyError 'buffer', None a TypeError (not subscriptable)
    buf = BatchedRandomShufflingBuffer(100, 0, batch_size=4)
    buf.add_many([torch.arange(6)])
    with pytest.raises(ValueError, match="state"):
        buf.load_state_dict(state)
    assert buf.size == 6


def test_batched_random_buffer_refuses_a_different_number_of_columns():
    # a second add_many with two columns after one with one kept only the first (zip): the second column
    # was dropped silently (0.12.1 raised IndexError)
    buf = BatchedRandomShufflingBuffer(100, 0, batch_size=4)
    buf.add_many([torch.arange(4)])
    with pytest.raises(ValueError, match="2 columns.*1 column"):
        buf.add_many([torch.arange(4), torch.arange(4)])
    buf.add_many([])  # no rows: nothing to add (0.12.1 raised IndexError)
    assert buf.size == 4 and len(buf.retrieve()) == 1
