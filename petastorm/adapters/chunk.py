"""What the :class:`~petastorm.adapters.BatchPipeline` producer hands to its consumer at once: a chunk of
converted batches, the numpy rows they came from (for an exact state) and whether the pass ends after them."""
from __future__ import annotations

from typing import Optional

from petastorm.adapters.column_buffer import num_rows, slice_columns

__all__ = ["Chunk"]


class Chunk:
    """What the producer hands over at once: converted batches, the numpy rows they came from, and whether
    the pass ends after them (with the error that ended it, if any)."""

    __slots__ = ("outs", "n", "batches", "block", "end", "error", "origin")

    def __init__(self, outs: Optional[list], batches: Optional[list] = None, block: Optional[dict] = None,
                 end: bool = False, error: Optional[BaseException] = None, origin: Optional[tuple] = None,
                 n: Optional[int] = None) -> None:
        self.outs = outs          # converted batches, in order; None: not converted yet (the consumer does it)
        self.n = len(outs) if n is None else n  # batches in the chunk
        self.batches = batches    # their numpy batches, or None when they are the equal parts of `block`
        self.block = block
        self.end = end
        self.error = error
        self.origin = origin      # a block's (reader batch serial, row offset): Batcher.cut_origin; or None

    def numpy_batches(self, start: int = 0) -> list:
        """The numpy batches of ``outs[start:]`` (cut from the block on demand: only a state needs them)."""
        if self.batches is not None:
            return self.batches[start:]
        k = self.n
        if not k:
            return []
        bs = num_rows(self.block) // k
        return [slice_columns(self.block, i * bs, (i + 1) * bs) for i in range(start, k)]
