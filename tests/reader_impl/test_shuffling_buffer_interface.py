"""The shuffling buffers' shared interface (``BufferInterface``): the item buffers and the torch loaders'
batched buffers declare the same abstract methods once, and each keeps the abstract methods and the class
relations recorded from petastorm 0.12.1 (black box)."""
from petastorm.reader_impl.pytorch_shuffling_buffer import (
    BatchedNoopShufflingBuffer,
    BatchedRandomShufflingBuffer,
    BatchedShufflingBufferBase,
)
from petastorm.reader_impl.shuffling_buffer import (
    BufferInterface,
    NoopShufflingBuffer,
    RandomShufflingBuffer,
    ShufflingBufferBase,
)


def test_abstract_methods_are_the_originals():
    # recorded from 0.12.1: the abstract methods of each base class
    assert sorted(BatchedShufflingBufferBase.__abstractmethods__) == [
        "_add_many", "can_add", "can_retrieve", "finish", "retrieve", "size"]
    assert sorted(ShufflingBufferBase.__abstractmethods__) == [
        "add_many", "can_add", "can_retrieve", "finish", "retrieve", "size"]


def test_batched_buffers_are_not_item_buffers():
    # recorded from 0.12.1: issubclass(BatchedShufflingBufferBase, ShufflingBufferBase) is False
    assert not issubclass(BatchedShufflingBufferBase, ShufflingBufferBase)
    assert not isinstance(BatchedNoopShufflingBuffer(batch_size=2), ShufflingBufferBase)


def test_every_buffer_offers_the_shared_interface():
    buffers = [NoopShufflingBuffer(), RandomShufflingBuffer(10, 0), BatchedNoopShufflingBuffer(batch_size=2),
               BatchedRandomShufflingBuffer(10, 0, batch_size=2)]
    for buf in buffers:
        assert isinstance(buf, BufferInterface)
        assert buf.size == 0 and buf.can_add()
        buf.finish()
        assert not buf.can_retrieve()
