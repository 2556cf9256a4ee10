"""A small in-memory stand-in for a petastorm Reader (the thing under test is the batching core, not the
reader): yields column batches (``is_batched_reader``) or rows, and saves/restores its position."""
from __future__ import annotations

from collections import namedtuple

import numpy as np

from petastorm.adapters.column_buffer import slice_columns

Batch = namedtuple("Batch", ["id", "vec"])


def make_chunks(sizes):
    """Column batches with ids 0..sum(sizes)-1 in order and a (n, 2) column derived from the id."""
    chunks, start = [], 0
    for n in sizes:
        ids = np.arange(start, start + n, dtype=np.int64)
        chunks.append(Batch(id=ids, vec=np.stack([ids * 2, ids * 3], axis=1).astype(np.float32)))
        start += n
    return chunks


class ListReader:
    """Yields the given column batches (or their rows when ``batched=False``); ``state_dict`` is the position."""

    def __init__(self, chunks, batched=True):
        self.is_batched_reader = batched
        self.ngram = None
        if batched:
            self._items = list(chunks)
        else:
            self._items = [Batch(id=c.id[i], vec=c.vec[i]) for c in chunks for i in range(len(c.id))]
        self._pos = 0
        self.stopped = False

    def __iter__(self):
        return self

    def __next__(self):
        if self._pos >= len(self._items):
            raise StopIteration
        self._pos += 1
        return self._items[self._pos - 1]

    def state_dict(self):
        return {"position": self._pos, "items": len(self._items)}

    def load_state_dict(self, state):
        assert state["items"] == len(self._items)
        self._pos = state["position"]

    def stop(self):
        self.stopped = True

    def join(self):
        pass


def copy_batch(batch):
    """A batch of columns as copies (what a loader that keeps its batches would hold)."""
    return {k: np.array(v) for k, v in batch.items()}


def block_to_list(calls):
    """A pipeline ``convert_block`` that records each call's ``k`` in ``calls`` and converts each of the ``k``
    equal parts of the block to copies."""
    def convert_block(block, k):
        calls.append(k)
        bs = len(block["id"]) // k
        return [copy_batch(slice_columns(block, i * bs, (i + 1) * bs)) for i in range(k)]
    return convert_block
