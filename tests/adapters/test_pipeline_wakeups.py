"""The prefetch thread is woken once the consumer has emptied the deque of blocks (one wake-up per ``prefetch``
blocks): a pass never waits on the producer's timed re-check (0.5 s), and the deque stays bounded."""
import time

import numpy as np

from petastorm.adapters import BatchPipeline
from petastorm.pytorch_impl.device import TensorConverter
from tests.adapters._list_reader import ListReader, make_chunks


def _pipeline(prefetch, sizes=(64,) * 60):
    conv = TensorConverter()
    return BatchPipeline(ListReader(make_chunks(sizes)), 16, convert=conv, prefetch=prefetch,
                         convert_block=conv.convert_block)


def test_a_pass_of_blocks_never_waits_on_the_producers_timeout():
    for prefetch in (1, 2, 3):
        t0 = time.monotonic()
        with _pipeline(prefetch) as p:
            ids = np.concatenate([b["id"].numpy() for b in p])
        # 60 blocks of 4 batches: a missed wake-up per block would cost 0.5 s each
        assert time.monotonic() - t0 < 5.0, prefetch
        assert ids.tolist() == list(range(64 * 60))


def test_the_deque_holds_at_most_prefetch_blocks_while_the_consumer_is_slow():
    with _pipeline(2) as p:
        seen = []
        for i, batch in enumerate(p):
            if i % 4 == 0:
                time.sleep(0.01)
                seen.append(len(p._shared.ready))
            del batch
    assert max(seen) <= 2 and len(seen) == 60


def test_single_batches_keep_the_deque_full():
    # batches straddling reader batches are single-batch chunks: the producer is woken at every take
    with BatchPipeline(ListReader(make_chunks((10,) * 30)), 16, prefetch=2) as p:
        it = iter(p)
        next(it)
        time.sleep(0.2)
        assert len(p._shared.ready) == 2
        assert sum(len(b["id"]) for b in it) == 300 - 16
