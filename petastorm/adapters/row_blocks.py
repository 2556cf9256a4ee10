"""The storage of :class:`~petastorm.adapters.column_buffer.ColumnShufflingBuffer`: rows of named columns in
preallocated arrays, written and read as whole rows.

Columns of one numeric dtype and cell shape share a row-major block of shape ``(slots, columns, *cell)``: a
random row is then one cache line for all of them, so gathering a batch and filling the slots it leaves
touch ``batch_size`` rows, not ``batch_size`` x columns scattered cells. Other columns (strings, objects)
get a block of their own. Which slots hold rows is the buffer's business; this module only copies rows in
and out of given slots.
"""
from __future__ import annotations

from typing import Mapping, Optional

import numpy as np

from petastorm.adapters.columns import Columns, as_records
from petastorm.errors import PetastormSchemaError

__all__ = ["RowBlocks"]

_GROUPED_KINDS = frozenset("biufcmM")
_STAGED_ROW_BYTES = 4096        # rows up to this size are assembled before being scattered as whole rows
_STAGING_BYTES = 1 << 18        # at most this much staging at once
_TRANSPOSE_ROWS = 256


def _transpose(rows: np.ndarray) -> np.ndarray:
    """``rows`` (n, k, *cell) as a new C-contiguous (k, n, *cell) array; rows of scalars in blocks of 256
    (numpy's plain transposing copy is slower; figures in ``benchmarks/README.md``)."""
    n = len(rows)
    if rows.ndim > 2 or n <= _TRANSPOSE_ROWS:
        return np.ascontiguousarray(rows.swapaxes(0, 1))
    out = np.empty(rows.shape[1::-1], dtype=rows.dtype)
    for start in range(0, n, _TRANSPOSE_ROWS):
        out[:, start:start + _TRANSPOSE_ROWS] = rows[start:start + _TRANSPOSE_ROWS].T
    return out


class RowBlocks:
    """``slots`` rows of the columns of a first batch, kept in blocks of whole rows.

    Parameters
    ----------
    columns : dict of str -> np.ndarray, shape (n, ...)
        A batch of the columns to hold: their names, order, dtypes and cell shapes (its rows are not copied).
    slots : int
        Rows the arrays have room for (:meth:`reserve` raises it).

    Attributes
    ----------
    slots : int
        Rows the arrays have room for.
    where : dict of str -> (int, int)
        Column name -> (its block, its position in the block), in the order of ``columns``.
    views : dict of str -> (np.ndarray, np.dtype, tuple)
        Column name -> (its strided view, shape (slots, *cell); its dtype; its cell shape). Replaced (a new
        dict) when the blocks change: read it again after :meth:`fit` or :meth:`reserve`.

    Notes
    -----
    :meth:`fill` keeps staging blocks of at most 256 KB (at most 4).
    """

    def __init__(self, columns: Mapping[str, np.ndarray], slots: int) -> None:
        self.slots = slots
        self._blocks: list = []                # [(array (slots, k, *cell), [k column names])]
        self.where: dict = dict.fromkeys(columns)  # batches keep the reader's column order
        self.views: dict = {}
        self._records: list = []               # per block: its rows as opaque records (None: object block)
        self._stagings: dict = {}              # (block, rows) -> staging block reused by fill, see _staging
        self._one_block: Optional[list] = None  # the column names when one block holds them all, in order
        groups: dict = {}
        for name, col in columns.items():
            key = (col.dtype, col.shape[1:]) if col.dtype.kind in _GROUPED_KINDS else ("own", name)
            groups.setdefault(key, []).append(name)
        for names in groups.values():
            col = columns[names[0]]
            self._new_block(names, col.dtype, col.shape[1:])

    @property
    def fields(self) -> list:
        """The column names, in the order batches give them."""
        return list(self.where)

    def _new_block(self, names: list, dtype: np.dtype, cell: tuple) -> None:
        block = np.empty((self.slots, len(names)) + tuple(cell), dtype=dtype)
        b = len(self._blocks)
        self._blocks.append((block, list(names)))
        for j, name in enumerate(names):
            self.where[name] = (b, j)
        self._cache_views()

    def _cache_views(self) -> None:
        """Recompute the per-column views and per-block records after the blocks changed."""
        self._records = [as_records(block) for block, _ in self._blocks]
        self._stagings = {}
        names = list(self.where)
        self._one_block = names if len(self._blocks) == 1 and self._blocks[0][1] == names else None
        self.views = {}
        for name, where in self.where.items():
            if where is not None:
                view = self._blocks[where[0]][0][:, where[1]]
                self.views[name] = (view, view.dtype, view.shape[1:])

    def _column(self, name: str) -> np.ndarray:
        """A (strided) view of column ``name``: shape (slots, *cell)."""
        b, j = self.where[name]
        return self._blocks[b][0][:, j]

    def fit(self, name: str, col: np.ndarray, top: int) -> np.ndarray:
        """The view of ``name``, re-typed when ``col`` needs a wider dtype (e.g. longer strings): the column
        moves to a block of its own, its slots ``[0, top)`` copied.

        Raises
        ------
        PetastormSchemaError
            ``name`` is not a column held, or ``col`` has cells of another shape (names the field).
        """
        if name not in self.where:
            raise PetastormSchemaError(
                f"field '{name}' appears in a reader batch but not in the earlier ones (fields "
                f"{sorted(self.where)})")
        buf = self._column(name)
        if col.shape[1:] != buf.shape[1:]:
            raise PetastormSchemaError(
                f"field '{name}' has cells of shape {col.shape[1:]} after cells of shape {buf.shape[1:]}: "
                f"cells of different shapes cannot be batched together")
        if col.dtype != buf.dtype:
            dtype = np.result_type(buf.dtype, col.dtype)
            if dtype != buf.dtype:  # move the column to a block of its own with the wider dtype
                rows = buf[:top]
                self._new_block([name], dtype, buf.shape[1:])
                buf = self._column(name)
                buf[:top] = rows
        return buf

    def fill(self, slots: np.ndarray, columns: Mapping[str, np.ndarray], m: int) -> None:
        """Write the first ``m`` rows of ``columns`` into ``slots``: per block of small rows, the rows are
        assembled in a staging block (one strided copy per column) and scattered as whole rows."""
        for b, ((block, names), records) in enumerate(zip(self._blocks, self._records)):
            row_bytes = block.itemsize * (block[0].size or 1)
            if len(names) == 1 or records is None or row_bytes > _STAGED_ROW_BYTES:
                for j, name in enumerate(names):
                    block[slots, j] = columns[name][:m]
                continue
            step = max(1, _STAGING_BYTES // row_bytes)
            for start in range(0, m, step):
                stop = min(m, start + step)
                staged, targets = self._staging(b, stop - start)
                for target, name in zip(targets, names):
                    col = columns[name]
                    target[...] = col if start == 0 and len(col) == stop else col[start:stop]
                np.put(records, slots[start:stop], staged)

    def _staging(self, b: int, rows: int) -> tuple:
        """A staging block of ``rows`` rows for block ``b``, reused across calls: (its rows as records, its
        columns as strided views)."""
        key = (b, rows)
        cached = self._stagings.get(key)
        if cached is None:
            block = self._blocks[b][0]
            staging = np.empty((rows,) + block.shape[1:], dtype=block.dtype)
            if len(self._stagings) >= 4:
                self._stagings.clear()
            cached = self._stagings[key] = (staging.reshape(rows, -1).view(self._records[b].dtype)[:, 0],
                                            [staging[:, j] for j in range(block.shape[1])])
        return cached

    def move(self, dst: np.ndarray, src: np.ndarray) -> None:
        """Copy the rows in slots ``src`` to slots ``dst`` (all of them read before any is written)."""
        for (block, _), records in zip(self._blocks, self._records):
            if records is None:
                block[dst] = block[src]
            else:
                np.put(records, dst, np.take(records, src))

    def gather(self, idx: "np.ndarray | slice") -> Columns:
        """Rows ``idx`` of every column, each C-contiguous (a view of one new array per block)."""
        per_block = []
        for (block, names), records in zip(self._blocks, self._records):
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
                per_block.append(_transpose(rows))
        if self._one_block:  # the common case: one block, its columns in the reader's order
            return dict(zip(self._one_block, per_block[0]))
        return {name: per_block[b][j] for name, (b, j) in self.where.items()}

    def reserve(self, slots: int, top: int) -> None:
        """Reallocate the arrays with room for ``slots`` rows, copying slots ``[0, top)``."""
        self.slots = slots
        for i, (block, names) in enumerate(self._blocks):
            wider = np.empty((slots,) + block.shape[1:], dtype=block.dtype)
            wider[:top] = block[:top]
            self._blocks[i] = (wider, names)
        self._cache_views()
