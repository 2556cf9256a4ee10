"""The producer side of :class:`~petastorm.adapters.pipeline.BatchPipeline`: what its prefetch thread runs
(the :class:`~petastorm.adapters.batcher.Batcher`, ``transform_fn`` and ``convert``) and everything that thread
touches, shared with the consumer under one ``Condition``. The thread refers only to this object, never to the
pipeline, so a pipeline abandoned mid-epoch is freed by reference counting (its ``__del__`` stops the thread).
"""
from __future__ import annotations

import gc
import threading
from collections import deque
from typing import Any, Callable, Optional

from petastorm.adapters.batcher import Batcher
from petastorm.adapters.chunk import Chunk
from petastorm.adapters.column_buffer import num_rows, slice_columns
from petastorm.errors import PetastormReaderError

__all__ = ["SharedProducer", "CHUNK_BATCHES"]

#: Most batches cut and handed over at once (views of one reader batch) with a ``convert_block`` ...
CHUNK_BATCHES = 64

#: Seconds between two looks at the reader while the producer waits on a full deque (a reader stopped under a
#: held iterator ends the thread: it would otherwise wait, holding its batches, until the loader is collected).
_READER_CHECK_S = 0.5


class SharedProducer:
    """Everything the producer thread touches (it never sees the pipeline itself)."""

    def __init__(self, batcher: Batcher, transform_fn: Optional[Callable], convert: Optional[Callable],
                 capacity: int, convert_block: Optional[Callable] = None) -> None:
        self.batcher = batcher
        self.transform_fn = transform_fn
        self.convert = convert
        # whole batches are cut and converted a block at a time only when nothing runs per batch in between
        self.convert_block = convert_block if transform_fn is None else None
        self.capacity = max(1, capacity)
        # ... and at most half the collector's first threshold of Python objects (a batch: its columns + its
        # dict): tensors alive at a collection are promoted, enough promotions trigger a full collection of the
        # heap; bigger chunks cost more in collections than they save (figures: benchmarks/README.md)
        threshold = gc.get_threshold()[0] if gc.isenabled() else 0
        self.max_objects = threshold // 2 if threshold > 0 else None
        self.cond = threading.Condition()
        self.ready: deque = deque()   # Chunk entries, the last one with end=True
        self.stop = False
        self.paused = 0
        self.busy = False
        self.waiting = 0              # consumers waiting on an empty deque
        self.finished = False         # the producer appended its last entry

    def _one(self, batch: Any) -> Any:
        out = batch
        if self.transform_fn is not None:
            out = self.transform_fn(out)
        if self.convert is not None:
            out = self.convert(out)
        return out

    def produce_one(self, reraise_interrupt: bool = False) -> Chunk:
        """One chunk: one batch, or up to ``CHUNK_BATCHES`` whole batches of one reader batch; the end marker
        (with the error that ended the pass) is a chunk with ``end=True``. With ``convert_block`` the chunk is
        cut, not converted (``outs`` None): the consumer converts it (:meth:`convert_chunk`).

        ``reraise_interrupt`` (the consumer's thread, no prefetch thread): a ``KeyboardInterrupt`` that came out of
        the batch reader's ``next()`` is raised as it is, the batcher unchanged, instead of ending the pass."""
        self.batcher.source.interrupted = False
        try:
            if self.convert_block is None:
                batch = self.batcher.next_batch()
                if batch is None:
                    return Chunk([], end=True)
                return Chunk([self._one(batch)], [batch])
            got = self.batcher.next_block(CHUNK_BATCHES, self.max_objects)
            if got is None:
                return Chunk([], end=True)
            block, k = got
            if k == 1:
                return Chunk(None, [block], n=1)
            return Chunk(None, block=block, origin=self.batcher.cut_origin, n=k)
        except BaseException as e:  # noqa: BLE001 - every error must reach the consumer
            source, interrupted = self.batcher.source, self.batcher.source.interrupted
            source.interrupted = False
            if reraise_interrupt and interrupted and isinstance(e, KeyboardInterrupt):
                # a Ctrl-C while the reader was asked, in the consumer's thread: the batcher took nothing, so it is
                # the caller's interruption, not the pass's error (a state taken then is exact, and the pass may go
                # on), as a Ctrl-C in the threaded consumer's wait is
                raise
            return Chunk([], end=True, error=e)

    def convert_chunk(self, chunk: Chunk) -> None:
        """Fill ``chunk.outs`` (a chunk cut by :meth:`produce_one` with ``convert_block``). An error ends the
        chunk after the batches before the one that raised it."""
        if chunk.batches is not None:
            try:
                chunk.outs = [self._one(chunk.batches[0])]
            except Exception as e:  # noqa: BLE001 - Ctrl-C is not the pass's error: see _next_chunk
                chunk.outs, chunk.n, chunk.end, chunk.error = [], 0, True, e
            return
        block, k = chunk.block, chunk.n
        try:
            outs = self.convert_block(block, k)
        except Exception:  # noqa: BLE001 - converted again batch by batch: the error comes at its own batch
            outs = None
        if outs is not None:
            chunk.outs = list(outs)
            return
        outs = []
        bs = num_rows(block) // k
        for i in range(k):
            try:
                outs.append(self._one(slice_columns(block, i * bs, (i + 1) * bs)))
            except Exception as e:  # noqa: BLE001 - Ctrl-C is not the pass's error: see _next_chunk
                chunk.outs, chunk.n, chunk.block, chunk.end, chunk.error = (
                    outs, i, slice_columns(block, 0, i * bs), True, e)
                return
        chunk.outs = outs

    def run(self) -> None:
        while True:
            with self.cond:
                # the deque is kept full (a consumer about as fast as the producer would otherwise wait on it)
                while not self.stop and (self.paused or len(self.ready) >= self.capacity):
                    self.cond.wait(_READER_CHECK_S)
                    if not self.paused and getattr(self.batcher.source.reader, "stopped", False):
                        self.ready.append(Chunk([], end=True, error=PetastormReaderError(
                            "the reader was stopped (reader.stop()) while a pass of this loader was running")))
                        self.finished = True
                        self.cond.notify_all()
                        return
                if self.stop:
                    return
                self.busy = True
            entry = self.produce_one()
            with self.cond:
                self.busy = False
                self.ready.append(entry)
                if entry.end:
                    self.finished = True
                # a waiting consumer is woken by a chunk of several batches at once, by single batches once the
                # deque is full (a GIL hand-off per `capacity` batches, not per batch); a pause as soon as it is in
                if (self.finished or self.paused or len(self.ready) >= self.capacity
                        or (self.waiting and entry.n > 1)):
                    self.cond.notify_all()
                if self.finished:
                    return
