"""The loaders' shuffling buffer run on row ids: the order in which a loader serves an epoch, for ``explain()``.

``explain()`` measures how well an epoch is shuffled from the plan alone
(:mod:`petastorm.reader_impl.shuffle_quality`). A loader's shuffling buffer changes that order, so a loader's
``explain()`` also reports the quality *after* the buffer: the reader's row ids of the epoch
(:func:`~petastorm.reader_impl.shuffle_quality.plan_row_sequence`) are passed through the loaders' own
:class:`~petastorm.adapters.batcher.Batcher` (a one-column table of row ids), so the simulated order cannot
drift from the loaders': same buffer layout, same rounds of several batches, same drain at the end, and with
the loader's seed the very order it serves.

This lives in the adapters layer, with the Batcher it runs. The reader's explain (``reader_impl``, a layer
below) takes the simulation as an argument: a loader calls ``explain_reader(reader, epoch,
buffer_order=loader_buffer(capacity, batch_size, seed=<the seed of its next pass>))``. Only
``reader.explain(shuffling_queue_capacity=...)``, the reader's own shortcut, builds it from below (the one
upward import left, listed in ``tests/package/test_layers.py``).
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np

from petastorm.adapters.batcher import Batcher
from petastorm.adapters.checks import ensure_int

__all__ = ["through_shuffling_buffer", "loader_buffer", "pass_seed"]


class _RowIds:
    """A minimal in-memory source for the loaders' :class:`~petastorm.adapters.batcher.Batcher`: the rows of
    a sequence of row ids, as a one-column table (``{"id": ...}``), ``max_rows`` at a time."""

    is_batched = False
    fields = ["id"]

    def __init__(self, sequence: np.ndarray) -> None:
        self._seq = sequence
        self._pos = 0

    def next_chunk(self, max_rows: int) -> Optional[dict]:
        if self._pos >= len(self._seq):
            return None
        chunk = self._seq[self._pos:self._pos + max_rows]
        self._pos += len(chunk)
        return {"id": chunk}

    def state_dict(self) -> None:  # nothing to resume: the simulation runs in one go
        return None

    def load_state_dict(self, state: Any) -> None:
        return None


def through_shuffling_buffer(sequence: np.ndarray, capacity: int, batch_size: int = 1,
                             seed: Any = 0, min_after_retrieve: Optional[int] = None) -> np.ndarray:
    """The order in which the loaders' shuffling buffer serves ``sequence``: the loaders' own batching, on row ids.

    Runs the :class:`~petastorm.adapters.batcher.Batcher` the loaders use (``BatchedDataLoader``,
    ``DataLoader``, ``make_jax_iterator``...) with ``shuffling_queue_capacity=capacity`` over a one-column
    table of the row ids, so the order (and the quality ``explain()`` reports from it) is the loaders' own:
    its :class:`~petastorm.adapters.column_buffer.ColumnShufflingBuffer` of
    :func:`~petastorm.adapters.batcher.shuffle_buffer_layout` rows (``max(capacity, min_after_retrieve +
    batch_size)``, ``min_after_retrieve`` defaulting to ``capacity - batch_size``, plus the extra rows of its
    rounds), its rounds of several batches drawn at once, and its drain at the end.

    Parameters
    ----------
    sequence : np.ndarray, shape (n,)
        Row ids in the reader's order.
    capacity : int
        ``shuffling_queue_capacity`` (0: the sequence is returned unchanged).
    batch_size : int
    seed : int, list of int or None
        Seed of the buffer, as the loader gives it to its Batcher (``BatchedDataLoader``: ``[seed, pass]``,
        see :func:`pass_seed`): with the loader's seed the order is the one it serves.
    min_after_retrieve : int, optional
        As the loaders' argument.

    Returns
    -------
    np.ndarray, shape (n,)
    """
    capacity = ensure_int("capacity", capacity, 0)
    batch_size = ensure_int("batch_size", batch_size, 1)
    seq = np.asarray(sequence)
    if capacity == 0 or len(seq) < 2:
        return seq.copy()
    if min_after_retrieve is not None:
        min_after_retrieve = ensure_int("min_after_retrieve", min_after_retrieve, 0)
    batcher = Batcher(_RowIds(seq), batch_size, capacity, min_after_retrieve=min_after_retrieve, seed=seed)
    out = np.empty_like(seq)
    taken = 0
    while (batch := batcher.next_batch()) is not None:
        ids = batch["id"]
        out[taken:taken + len(ids)] = ids
        taken += len(ids)
    return out


def pass_seed(seed: Optional[int], pass_index: int) -> Optional[list]:
    """The seed of a loader's shuffling buffer in its pass ``pass_index`` (0-based): ``[seed mod 2**128,
    pass_index]``, entropy as ``numpy.random.default_rng`` takes it (non-negative ints); None stays None
    (fresh entropy). The torch loaders seed every pass with it (``seed`` is theirs, else the reader's)."""
    return None if seed is None else [int(seed) % (1 << 128), int(pass_index)]


def loader_buffer(capacity: int, batch_size: int = 1, *, min_after_retrieve: Optional[int] = None,
                  seed: Any = None) -> Callable[[np.ndarray, int], np.ndarray]:
    """The ``buffer_order`` argument of :func:`~petastorm.reader_impl.explain.explain_reader`: the loaders'
    shuffling buffer of ``capacity`` rows serving batches of ``batch_size`` rows.

    Parameters
    ----------
    capacity : int
        ``shuffling_queue_capacity`` (>= 1).
    batch_size : int
    min_after_retrieve : int, optional
    seed : int, list of int or None
        The buffer's seed as the loader gives it to its Batcher. None: :func:`pass_seed` (pass 0) of the
        reader's seed (a ``BatchedDataLoader``'s first pass).

    Returns
    -------
    callable
        ``(row ids in the reader's order, the reader's seed) -> row ids in the order the loader serves them``.
    """
    capacity = ensure_int("shuffling_queue_capacity", capacity, 1)
    batch_size = ensure_int("batch_size", batch_size, 1)
    if min_after_retrieve is not None:
        min_after_retrieve = ensure_int("min_after_retrieve", min_after_retrieve, 0)

    def order(sequence: np.ndarray, reader_seed: int) -> np.ndarray:
        return through_shuffling_buffer(sequence, capacity, batch_size,
                                        seed=pass_seed(reader_seed, 0) if seed is None else seed,
                                        min_after_retrieve=min_after_retrieve)

    return order
