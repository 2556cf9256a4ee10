"""A shuffling buffer of whole columns: rows live in preallocated numpy arrays, batches leave by random
index blocks.

Adding ``n`` rows is one slice assignment per column; retrieving a batch of ``k`` rows is one
``rng.choice`` of ``k`` distinct slots, one fancy-index gather per column and one swap-with-tail move that
fills the ``k`` holes with the rows at the end of the buffer. There is no Python work per row, and the
buffer never holds more than its capacity (no lists of rows, no growth).
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

import numpy as np

from petastorm.errors import PetastormArgumentError, PetastormSchemaError, PetastormStateError

__all__ = ["Columns", "ColumnShufflingBuffer", "num_rows", "slice_columns", "concat_columns"]

#: A batch of columns: field name -> array of shape (rows, ...) (every array has the same number of rows).
Columns = dict

_ROWS = "rows"
_GROUPED_KINDS = frozenset("biufcmM")
_RNG = "rng"
_CAPACITY = "capacity"


def num_rows(columns: Mapping[str, np.ndarray]) -> int:
    """Rows in a column batch (0 for a batch with no column)."""
    for col in columns.values():
        return len(col)
    return 0


def slice_columns(columns: Mapping[str, np.ndarray], start: int, stop: int) -> Columns:
    """Rows ``[start, stop)`` of every column (views, no copy)."""
    return {name: col[start:stop] for name, col in columns.items()}


def concat_columns(parts: list) -> Columns:
    """Concatenate column batches with the same fields row-wise (one ``np.concatenate`` per column).

    Raises
    ------
    PetastormSchemaError
        When the parts' cells of one field have different shapes (names the field).
    """
    if len(parts) == 1:
        return dict(parts[0])
    out = {}
    for name in parts[0]:
        try:
            out[name] = np.concatenate([p[name] for p in parts])
        except ValueError as e:
            shapes = sorted({tuple(p[name].shape[1:]) for p in parts})
            raise PetastormSchemaError(
                f"field '{name}' has cells of different shapes {shapes} in consecutive reader batches: "
                f"they cannot be batched together ({e})") from None
    return out


def _as_records(block: np.ndarray) -> "np.ndarray | None":
    """A C-contiguous block as a 1-D array of opaque rows (numpy moves those ~5x faster than fancy-indexed rows
    of a 2-D array); None for object blocks (references cannot be viewed as bytes)."""
    if block.dtype.hasobject or not block.flags.c_contiguous:
        return None
    return block.reshape(len(block), -1).view(np.dtype((np.void, block.itemsize * max(1, block[0].size))))[:, 0]


class ColumnShufflingBuffer:
    """Up to ``capacity`` rows kept as columns, handed out in uniformly random order.

    Parameters
    ----------
    capacity : int
        Rows the buffer holds (its arrays are allocated with this many rows on the first :meth:`add`).
    seed : int, optional
        Seed of the retrieval order (``np.random.default_rng(seed)``); None: a random one.

    Notes
    -----
    Memory: ``capacity`` x (bytes of one row) allocated once. Each :meth:`retrieve` allocates only its
    output batch (callers may keep it: it is never written again).
    """

    def __init__(self, capacity: int, seed: Optional[int] = None) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, (int, np.integer)) or capacity <= 0:
            raise PetastormArgumentError(f"capacity must be a positive integer, got {capacity!r}")
        self._capacity = int(capacity)
        self._rng = np.random.default_rng(seed)
        self._blocks: Optional[list] = None   # [(array (capacity, k, *cell), [k column names])]
        self._where: dict = {}                 # column name -> (block index, position in the block)
        self._size = 0
        self._views: dict = {}                 # column name -> (its strided view, dtype, cell shape)
        self._records: list = []               # per block: its rows as opaque records (None: object block)

    @property
    def capacity(self) -> int:
        """Rows the buffer can hold."""
        return self._capacity

    @property
    def size(self) -> int:
        """Rows in the buffer now."""
        return self._size

    @property
    def free(self) -> int:
        """Rows that can still be added."""
        return self._capacity - self._size

    # Storage: columns of one numeric dtype and cell shape share a row-major block of shape
    # (capacity, columns, *cell): a random row is then one cache line for all of them, so gathering a batch
    # and filling the holes it leaves touch batch_size rows, not batch_size x columns scattered cells.
    # Other columns (strings, objects) get a block of their own.

    def _allocate(self, columns: Mapping[str, np.ndarray]) -> None:
        groups: dict = {}
        for name, col in columns.items():
            key = (col.dtype, col.shape[1:]) if col.dtype.kind in _GROUPED_KINDS else ("own", name)
            groups.setdefault(key, []).append(name)
        self._blocks = []
        self._where = dict.fromkeys(columns)  # batches keep the reader's column order
        for names in groups.values():
            col = columns[names[0]]
            self._new_block(names, col.dtype, col.shape[1:])

    def _new_block(self, names: list, dtype: np.dtype, cell: tuple) -> None:
        block = np.empty((self._capacity, len(names)) + tuple(cell), dtype=dtype)
        b = len(self._blocks)
        self._blocks.append((block, list(names)))
        for j, name in enumerate(names):
            self._where[name] = (b, j)
        self._cache_views()

    def _cache_views(self) -> None:
        """Recompute the per-column views and per-block records after the blocks changed."""
        self._records = [_as_records(block) for block, _ in self._blocks]
        self._views = {}
        for name, where in self._where.items():
            if where is not None:
                view = self._blocks[where[0]][0][:, where[1]]
                self._views[name] = (view, view.dtype, view.shape[1:])

    def _column(self, name: str) -> np.ndarray:
        """A (strided) view of column ``name``: shape (capacity, *cell)."""
        b, j = self._where[name]
        return self._blocks[b][0][:, j]

    def _fit(self, name: str, col: np.ndarray) -> np.ndarray:
        """The buffer's view of ``name``, re-typed when ``col`` needs a wider dtype (e.g. longer strings)."""
        if name not in self._where:
            raise PetastormSchemaError(
                f"field '{name}' appears in a reader batch but not in the earlier ones (fields "
                f"{sorted(self._where)})")
        buf = self._column(name)
        if col.shape[1:] != buf.shape[1:]:
            raise PetastormSchemaError(
                f"field '{name}' has cells of shape {col.shape[1:]} after cells of shape {buf.shape[1:]}: "
                f"cells of different shapes cannot be batched together")
        if col.dtype != buf.dtype:
            dtype = np.result_type(buf.dtype, col.dtype)
            if dtype != buf.dtype:  # move the column to a block of its own with the wider dtype
                rows = buf[:self._size]
                self._new_block([name], dtype, buf.shape[1:])
                buf = self._column(name)
                buf[:self._size] = rows
        return buf

    def add(self, columns: Mapping[str, np.ndarray]) -> None:
        """Copy a column batch into the buffer.

        Parameters
        ----------
        columns : dict of str -> np.ndarray, shape (n, ...)
            ``n <= free`` rows; the same fields every call.
        """
        n = num_rows(columns)
        if n > self.free:
            raise PetastormArgumentError(f"cannot add {n} rows: only {self.free} of {self._capacity} are free")
        if n == 0:
            return
        if self._blocks is None:
            self._allocate(columns)
        if len(columns) != len(self._where):
            missing = sorted(set(self._where) - set(columns))
            raise PetastormSchemaError(f"fields {missing} are missing from a reader batch")
        start, stop, views = self._size, self._size + n, self._views
        for name, col in columns.items():
            try:
                view, dtype, cell = views[name]
            except KeyError:
                view, dtype, cell = None, None, None
            if col.dtype != dtype or col.shape[1:] != cell:
                view = self._fit(name, col)
            view[start:stop] = col
        self._size = stop

    def _gather(self, idx: "np.ndarray | slice") -> Columns:
        """Rows ``idx`` of every column, each C-contiguous (a view of one new array per block)."""
        per_block = []
        for (block, names), records in zip(self._blocks or [], self._records):
            if isinstance(idx, slice):
                rows = block[idx]                              # a view: copied below
            elif records is None:
                rows = block[idx]
            else:                                              # (n, k, *cell), one gather per block
                rows = np.take(records, idx).view(block.dtype).reshape((len(idx),) + block.shape[1:])
            if len(names) == 1:
                rows = rows.reshape((1,) + rows.shape[:1] + rows.shape[2:])
                per_block.append(rows.copy() if isinstance(idx, slice) else rows)
            else:
                per_block.append(np.ascontiguousarray(rows.swapaxes(0, 1)))  # (k, n, *cell)
        return {name: per_block[b][j] for name, (b, j) in self._where.items()}

    def take(self, idx: "np.ndarray | slice") -> Columns:
        """Copies of rows ``idx`` (positions ``< size``), left in the buffer: an in-memory table served by
        row blocks (one gather of whole rows per block of columns).

        Parameters
        ----------
        idx : np.ndarray of int, shape (n,), or slice
            Non-negative positions below ``size`` (not checked, for speed; positions past the arrays raise
            ``IndexError``).
        """
        if self._blocks is None:
            return {}
        if isinstance(idx, slice):
            idx = slice(*idx.indices(self._size))
        return self._gather(idx)

    def retrieve(self, count: int) -> Columns:
        """Remove ``min(count, size)`` uniformly chosen rows and return them as new arrays.

        Returns
        -------
        dict of str -> np.ndarray, shape (min(count, size), ...), C-contiguous
        """
        k = min(int(count), self._size)
        if self._blocks is None or k == 0:
            return {name: self._column(name)[:0].copy() for name in self._where}
        size = self._size
        if k == size:
            idx = self._rng.permutation(size)
        else:
            idx = self._rng.choice(size, k, replace=False)
        out = self._gather(idx)
        tail = size - k
        if tail > 0:
            taken_in_tail = np.zeros(k, dtype=bool)
            taken_in_tail[idx[idx >= tail] - tail] = True
            holes = idx[idx < tail]
            if len(holes):
                movers = tail + np.flatnonzero(~taken_in_tail)
                for (block, _), records in zip(self._blocks, self._records):
                    if records is None:
                        block[holes] = block[movers]
                    else:
                        records[holes] = np.take(records, movers)
        self._size = tail
        return out

    def grow(self, capacity: int) -> None:
        """Raise the capacity to ``capacity`` rows (the arrays are reallocated and the rows copied once)."""
        capacity = int(capacity)
        if capacity <= self._capacity:
            return
        if self._blocks is not None:
            for i, (block, names) in enumerate(self._blocks):
                wider = np.empty((capacity,) + block.shape[1:], dtype=block.dtype)
                wider[:self._size] = block[:self._size]
                self._blocks[i] = (wider, names)
            self._capacity = capacity
            self._cache_views()
        self._capacity = capacity

    def clear(self) -> None:
        """Forget every row (the arrays are kept for reuse)."""
        self._size = 0

    def state_dict(self) -> dict:
        """The rows held (copies), the RNG state and the capacity."""
        rows = {n: np.array(self._column(n)[:self._size]) for n in self._where}
        return {_CAPACITY: self._capacity, _ROWS: rows, _RNG: self._rng.bit_generator.state}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore rows and RNG saved by :meth:`state_dict`.

        Raises
        ------
        PetastormStateError
            The state is malformed or holds more rows than this buffer's capacity.
        """
        try:
            rows, rng_state = state[_ROWS], state[_RNG]
        except (KeyError, TypeError):
            raise PetastormStateError(
                f"malformed shuffling buffer state: expected a dict with keys '{_ROWS}' and '{_RNG}'") from None
        n = num_rows(rows)
        if n > self._capacity:
            raise PetastormStateError(
                f"saved shuffling buffer holds {n} rows, more than this buffer's capacity {self._capacity}: "
                f"resume with the same shuffling_queue_capacity (saved with {state.get(_CAPACITY)})")
        self._rng.bit_generator.state = rng_state
        self._size = 0
        self._blocks, self._where, self._views, self._records = None, {}, {}, []
        if n:
            self.add({name: np.asarray(col) for name, col in rows.items()})
