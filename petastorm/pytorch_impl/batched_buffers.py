"""The original's batched shuffling buffers: they hold columns (a list of tensors or arrays with the same number
of rows) and hand out batches of ``batch_size`` rows as lists of tensors.

Users import them from the original's module path, ``petastorm.reader_impl.pytorch_shuffling_buffer`` (a
facade over this module); they live here, with the torch loaders, because they return torch tensors and run
on the loaders' :class:`~petastorm.adapters.ColumnShufflingBuffer`, both layers above ``reader_impl``.

Behaviour recorded from petastorm 0.12.1 (black box) and kept:

- ``add_many(columns)`` takes a list of torch tensors or numpy arrays (one per column, all with the same rows:
  columns of different lengths raise ``RuntimeError`` here, where the original broadcast a 1-row column and
  the noop buffer served misaligned rows); ``retrieve()``
  returns a list of torch tensors of ``min(batch_size, size)`` rows; ``size`` is a property.
- :class:`BatchedNoopShufflingBuffer`: first in, first out; ``can_add()`` is always True;
  ``can_retrieve()`` once ``batch_size`` rows are held (after ``finish()``: while any row is held, and a
  ``retrieve()`` on an empty finished buffer returns empty tensors).
- :class:`BatchedRandomShufflingBuffer(shuffling_buffer_capacity, min_after_retrieve, extra_capacity=1000,
  batch_size=1)`: ``can_add()`` while fewer than ``shuffling_buffer_capacity`` rows are held (never after
  ``finish()``); ``can_retrieve()`` with at least ``batch_size`` rows and more than ``min_after_retrieve``
  (after ``finish()``: while any row is held); adding past ``capacity + extra_capacity`` rows and retrieving
  when ``can_retrieve()`` is False raise the original's ``RuntimeError``, and so does ``add_many`` after
  ``finish()`` (the noop buffer ignores such an add, as the original's did).

Here the random buffer stores rows in numpy arrays (a
:class:`~petastorm.adapters.column_buffer.ColumnShufflingBuffer` of ``capacity + extra_capacity`` rows, whose
arrays grow as rows arrive) and draws each batch by one random index block, instead of concatenating and permuting
tensors; it also takes an optional ``seed`` and saves/restores its rows and RNG with ``state_dict()`` /
``load_state_dict()``.
"""
from __future__ import annotations

from abc import abstractmethod
from collections import deque
from typing import Any, List, Mapping, Optional

import numpy as np

from petastorm.adapters.column_buffer import ColumnShufflingBuffer
from petastorm.errors import (
    PetastormArgumentError,
    PetastormReaderError,
    PetastormSchemaError,
    PetastormStateError,
)
from petastorm.pytorch_impl.device import numeric_to_tensor
from petastorm.reader_impl.shuffling_buffer import ADD_AFTER_FINISH_ERROR, BufferInterface

__all__ = ["BatchedShufflingBufferBase", "BatchedNoopShufflingBuffer", "BatchedRandomShufflingBuffer",
           "column_as_numpy"]

_STATE_KEYS = ("buffer", "finished", "columns")
_DEQUEUE_ERROR = ('Can not dequeue. Check the return value of "can_dequeue()" to check if any items are '
                  'available.')


def column_as_numpy(col: Any) -> np.ndarray:
    """A column handed to a torch loader or buffer as a numpy array: an array as it is, a torch tensor through
    ``detach().cpu().numpy()`` (shares memory on the CPU), anything else through ``np.asarray`` (whose error,
    if any, propagates)."""
    if isinstance(col, np.ndarray):
        return col
    if hasattr(col, "detach") and hasattr(col, "cpu"):
        return col.detach().cpu().numpy()
    return np.asarray(col)


def _to_tensors(columns: Any) -> List[Any]:
    """The columns of a batch (in the order they were added) as tensors (:func:`numeric_to_tensor`)."""
    return [numeric_to_tensor(f"column {i}", col, None, "the batched buffers hold numeric columns")
            for i, col in enumerate(columns)]


class BatchedShufflingBufferBase(BufferInterface):
    """Interface of the batched buffers (the original's abstract class and methods: :meth:`_add_many` and
    those of :class:`~petastorm.reader_impl.shuffling_buffer.BufferInterface`, ``retrieve()`` giving a list of
    tensors of ``min(batch_size, size)`` rows)."""

    def __init__(self, batch_size: int = 1) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise PetastormArgumentError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.batch_size = int(batch_size)
        self._done_adding = False

    def add_many(self, items: List[Any]) -> None:
        """Add rows: ``items`` is a list of columns (tensors or arrays), each with the same number of rows."""
        if self._done_adding:
            self._add_after_finish()
            return
        columns = [column_as_numpy(c) for c in items]
        if len({len(c) for c in columns}) > 1:  # 0.12.1 broadcast a 1-row column, served misaligned rows
            rows = ", ".join(f"column {i} {len(c)} rows" for i, c in enumerate(columns))
            raise PetastormReaderError(f"add_many: the columns have different lengths: {rows}")
        return self._add_many(columns)

    @abstractmethod
    def _add_many(self, items: List[np.ndarray]) -> None:
        """Store the columns."""

    def _add_after_finish(self) -> None:
        """An ``add_many`` after ``finish()``: ignored, as the original's noop buffer did (it neither stored nor
        raised)."""


class BatchedNoopShufflingBuffer(BatchedShufflingBufferBase):
    """First in, first out, in batches of ``batch_size`` rows (no shuffling)."""

    def __init__(self, batch_size: int = 1) -> None:
        super().__init__(batch_size)
        self._chunks: deque = deque()
        self._size = 0
        self._empty: Optional[List[np.ndarray]] = None

    def _add_many(self, items: List[np.ndarray]) -> None:
        n = len(items[0]) if items else 0
        if self._empty is None and items:
            self._empty = [c[:0] for c in items]
        if n:
            self._chunks.append(items)
            self._size += n

    def retrieve(self) -> List[Any]:
        need = min(self.batch_size, self._size)
        parts: list = []
        while need:
            head = self._chunks[0]
            rows = len(head[0])
            if rows <= need:
                parts.append(head)
                self._chunks.popleft()
                need -= rows
            else:
                parts.append([c[:need] for c in head])
                self._chunks[0] = [c[need:] for c in head]
                need = 0
        if not parts:
            return _to_tensors(self._empty or [])
        self._size -= sum(len(p[0]) for p in parts)
        if len(parts) == 1:
            return _to_tensors(parts[0])
        return _to_tensors(np.concatenate(cols) for cols in zip(*parts))

    def can_add(self) -> bool:
        return True

    def can_retrieve(self) -> bool:
        return self._size >= self.batch_size or (self._done_adding and self._size > 0)

    @property
    def size(self) -> int:
        return self._size

    def finish(self) -> None:
        self._done_adding = True


class BatchedRandomShufflingBuffer(BatchedShufflingBufferBase):
    """Rows shuffled uniformly, handed out in batches of ``batch_size`` rows.

    Parameters
    ----------
    shuffling_buffer_capacity : int
        ``can_add()`` is True while fewer rows are held.
    min_after_retrieve : int
        ``can_retrieve()`` needs more rows than this (until ``finish()``).
    extra_capacity : int
        Rows that may be held beyond ``shuffling_buffer_capacity`` (one ``add_many`` may overshoot).
    batch_size : int
        Rows per batch.
    seed : int, optional
        Seed of the order (new; the original used torch's global RNG).
    """

    def __init__(self, shuffling_buffer_capacity: int, min_after_retrieve: int, extra_capacity: int = 1000,
                 batch_size: int = 1, *, seed: Optional[int] = None) -> None:
        super().__init__(batch_size)
        for name, value in (("shuffling_buffer_capacity", shuffling_buffer_capacity),
                            ("min_after_retrieve", min_after_retrieve), ("extra_capacity", extra_capacity)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise PetastormArgumentError(f"{name} must be a non-negative integer, got {value!r}")
        self._capacity = int(shuffling_buffer_capacity)
        self._min_after_retrieve = int(min_after_retrieve)
        self._max_rows = self._capacity + int(extra_capacity)
        self._buffer = ColumnShufflingBuffer(max(1, self._max_rows), seed)
        self._names: Optional[List[int]] = None

    def _add_many(self, items: List[np.ndarray]) -> None:
        n = len(items[0]) if items else 0
        size = self._buffer.size
        if size + n > self._max_rows:
            raise PetastormReaderError(
                f"Attempt to enqueue more elements than the capacity allows. Current size: {size}, new size "
                f"{size + n}, maximum allowed: {self._max_rows}")
        if self._names is None:
            self._names = list(range(len(items)))
        elif items and len(items) != len(self._names):
            raise PetastormSchemaError(f"add_many: {len(items)} columns after {len(self._names)} column(s) in the "
                                       f"earlier calls")
        self._buffer.add(dict(zip(self._names, items)))

    def _add_after_finish(self) -> None:
        """The original's random buffer refused rows after ``finish()`` (recorded from 0.12.1)."""
        raise PetastormReaderError(ADD_AFTER_FINISH_ERROR)

    def retrieve(self) -> List[Any]:
        if not self.can_retrieve():
            raise PetastormReaderError(_DEQUEUE_ERROR)
        batch = self._buffer.retrieve(self.batch_size)
        return _to_tensors(batch[i] for i in (self._names or []))

    def can_add(self) -> bool:
        return self._buffer.size < self._capacity and not self._done_adding

    def can_retrieve(self) -> bool:
        size = self._buffer.size
        if self._done_adding:
            return size > 0
        return size >= self.batch_size and size > self._min_after_retrieve

    @property
    def size(self) -> int:
        return self._buffer.size

    def finish(self) -> None:
        self._done_adding = True

    def state_dict(self) -> dict:
        """Rows held (copies), RNG state and the finished flag."""
        return {"buffer": self._buffer.state_dict(), "finished": self._done_adding, "columns": self._names}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`.

        Raises
        ------
        PetastormStateError
            The state is not one of this class (names the keys it needs) or its rows cannot be restored.
        """
        if not isinstance(state, Mapping) or any(key not in state for key in _STATE_KEYS):
            raise PetastormStateError(f"not a BatchedRandomShufflingBuffer state: expected a dict with keys "
                                      f"{list(_STATE_KEYS)}, got {type(state).__name__}"
                                      f"{f' with keys {sorted(state)}' if isinstance(state, Mapping) else ''}")
        self._buffer.load_state_dict(state["buffer"])
        self._done_adding = bool(state["finished"])
        self._names = state["columns"]
