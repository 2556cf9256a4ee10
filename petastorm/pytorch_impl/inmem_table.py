"""The in-memory table of ``InMemBatchedDataLoader``: rows loaded once, served as batches of tensors.

Numeric columns of one dtype and cell shape share one block, so a batch is one copy per block (not one per
column) and its tensors are views of that copy (``torch.from_numpy(copy).unbind(0)``: one call, not one per
column). The layout follows the access pattern:

- served in order (``shuffle=False``) with a known batch size: batch-major blocks ``(batches, columns,
  batch_size, *cell)``: a batch is one contiguous run of memory, copied by one ``memcpy`` (a copy of
  ``columns`` strided slices of a column-major block costs about twice as much: ``benchmarks/README.md``,
  "Design measurements");
- served in order without a batch size: column-major blocks ``(columns, rows, *cell)``: a batch is one
  contiguous slice per column, copied in one ``copy()``;
- shuffled: row-major blocks ``(rows, columns, *cell)``: a batch of random rows is one gather of whole rows
  (one cache line per row for all the columns, not one per column), transposed into ``(columns, rows)``.

Columns of other kinds (strings, objects) get a block of their own and go through
:func:`~petastorm.pytorch_impl.device.column_to_tensor` (the original's errors, promotions).
"""
from __future__ import annotations

from typing import Any, Dict, Iterator, List, Optional, Union

import numpy as np

from petastorm.adapters.column_buffer import as_records
from petastorm.errors import PetastormSchemaError
from petastorm.pytorch_impl.device import AS_IS_DTYPES, column_to_tensor

__all__ = ["InMemTable"]

_GROUPED_KINDS = frozenset("biufc")

#: :meth:`InMemTable.batches_from` copies at most this many batches at once ...
GROUP_BATCHES = 8
#: ... and at most this many bytes (a batch bigger than that is copied alone).
GROUP_BYTES = 1 << 20


class InMemTable:
    """Rows of column batches held in memory, served as dicts of tensors.

    Parameters
    ----------
    parts : list of dict of str -> np.ndarray, shape (n_i, ...)
        The column batches, in order, with the same fields; emptied as they are copied (each is freed once
        copied, so the peak is the table plus one part).
    row_major : bool
        Row-major blocks (for random batches) instead of column-major ones (for batches in order).
    row_values : bool
        The columns were gathered from ``make_reader`` rows (see ``column_to_tensor``).
    batch_rows : int, optional
        The batch size the rows will be served in (``row_major=False`` only): blocks are laid out batch by
        batch, so that ``batch(slice(k * batch_rows, (k + 1) * batch_rows))`` copies one contiguous run.
        Other slices and positions are served too (gathered).

    Raises
    ------
    PetastormSchemaError
        (a ``ValueError``) for a field missing from a part, or cells of different shapes in one field.
    """

    def __init__(self, parts: List[Dict[str, np.ndarray]], row_major: bool, row_values: bool = False,
                 batch_rows: Optional[int] = None) -> None:
        self.row_major = row_major
        self.row_values = row_values
        self.names: List[str] = list(parts[0]) if parts else []
        self.rows = sum(len(next(iter(p.values()))) if p else 0 for p in parts)
        dtypes, cells = {}, {}
        for part in parts:
            if set(part) != set(self.names):
                raise PetastormSchemaError(f"fields {sorted(set(self.names) ^ set(part))} are missing from a reader "
                                           f"batch (fields of the first one: {sorted(self.names)})")
            for name, col in part.items():
                cell = col.shape[1:]
                if cells.setdefault(name, cell) != cell:
                    raise PetastormSchemaError(
                        f"field '{name}' has cells of shape {cell} after cells of shape {cells[name]}: cells of "
                        f"different shapes cannot be batched together")
                dtypes[name] = np.result_type(dtypes[name], col.dtype) if name in dtypes else col.dtype
        groups: dict = {}
        for name in self.names:
            dtype = dtypes[name]
            key = (dtype, cells[name]) if dtype.kind in _GROUPED_KINDS else ("own", name)
            groups.setdefault(key, []).append(name)
        # (a batch size over the rows held is one batch of those rows: no padding to the batch size)
        bs = None if row_major or not batch_rows else max(1, min(int(batch_rows), self.rows))
        self._bs = bs
        # [(block, column names, whether its tensors are views of the batch's copy)]
        self.blocks: List[tuple] = []
        for names in groups.values():
            dtype, cell = dtypes[names[0]], cells[names[0]]
            if row_major:
                shape = (self.rows, len(names)) + cell
            elif bs is not None:  # the last batch padded to a whole one (less than a batch of memory)
                shape = (-(-self.rows // bs), len(names), bs) + cell
            else:
                shape = (len(names), self.rows) + cell
            self.blocks.append((np.empty(shape, dtype=dtype), names, dtype in AS_IS_DTYPES))
        start = 0
        while parts:
            part = parts.pop(0)
            n = len(next(iter(part.values()))) if part else 0
            for block, names, _ in self.blocks:
                for j, name in enumerate(names):
                    if row_major:
                        block[start:start + n, j] = part[name]
                    elif bs is not None:
                        _put_batch_major(block, j, start, part[name])
                    else:
                        block[j, start:start + n] = part[name]
            start += n
        self._records = [as_records(b) if row_major else None for b, _, _ in self.blocks]
        # batches_from(): batches copied at once
        batch_bytes = self.blocks[0][0][:1].nbytes if self.blocks and bs is not None else 0
        self._group = max(1, min(GROUP_BATCHES, GROUP_BYTES // max(1, batch_bytes)))
        self._single = len(self.blocks) == 1
        self._plain = (self.blocks[0][0], self.blocks[0][1]) if self._single and self.blocks[0][2] and not row_major \
            else None
        import torch

        self._from_numpy = torch.from_numpy

    def batch(self, rows: Union[slice, np.ndarray]) -> Dict[str, Any]:
        """Tensors of rows ``rows`` (a slice, or positions for a shuffled batch): new memory every call.

        Returns
        -------
        dict of str -> torch.Tensor, shape (n, ...), in the reader's column order
        """
        bs = self._bs
        if bs is not None:
            start, stop, step = rows.indices(self.rows) if isinstance(rows, slice) else (0, 0, 0)
            if step == 1 and start % bs == 0 and start < stop and stop - start == min(bs, self.rows - start):
                return self._whole_batch(start // bs, stop - start)
            return self._gathered(np.arange(start, stop, step) if step else np.asarray(rows))
        if self._plain is not None:  # one block of columns kept as they are, served in order: the common case
            block, names = self._plain
            return dict(zip(names, self._from_numpy(block[:, rows].copy() if isinstance(rows, slice)
                                                     else np.take(block, rows, axis=1)).unbind(0)))
        return self._tensors(self._picked(block, records, rows)
                             for (block, _, _), records in zip(self.blocks, self._records))

    def _picked(self, block: np.ndarray, records: Optional[np.ndarray], rows: Union[slice, np.ndarray]) -> np.ndarray:
        """Rows ``rows`` of a column-major or row-major ``block`` as a new ``(columns, n, *cell)`` array."""
        if not self.row_major:
            return block[:, rows].copy() if isinstance(rows, slice) else np.take(block, rows, axis=1)
        if records is None or isinstance(rows, slice):
            picked = block[rows]
        else:
            picked = np.take(records, rows).view(block.dtype).reshape((len(rows),) + block.shape[1:])
        return np.ascontiguousarray(np.moveaxis(picked, 1, 0))

    @property
    def batches(self) -> Optional[int]:
        """Whole batches of a batch-major table (the last one may be short), None for the other layouts."""
        return None if self._bs is None else -(-self.rows // self._bs)

    def whole_batch(self, b: int) -> Dict[str, Any]:
        """Batch ``b`` of a batch-major table: ``batch(slice(b * batch_rows, (b + 1) * batch_rows))``."""
        bs = self._bs
        return self._whole_batch(b, bs if (b + 1) * bs <= self.rows else self.rows - b * bs)

    def batches_from(self, first: int) -> Iterator[Dict[str, Any]]:
        """Batches ``first, first + 1, ...`` of a batch-major table, in order (the ordered epochs of
        ``InMemBatchedDataLoader``).

        With one block of columns kept as they are, the batches are copied a few at a time (at most
        :data:`GROUP_BATCHES` and :data:`GROUP_BYTES`: one bigger ``memcpy``); each batch's tensors are views of
        its own part of that copy (their storage is that batch's rows only, as a copy of the batch alone), and
        each part is served once: writing into a batch changes no other batch, now or in a later epoch. Keeping
        a batch keeps its copy (a few batches) alive.
        """
        batches, bs, rows = self.batches or 0, self._bs, self.rows
        if self._plain is None or self._group == 1:
            for b in range(first, batches):
                yield self.whole_batch(b)
            return
        (block, names), group, from_numpy = self._plain, self._group, self._from_numpy
        for start in range(first, batches, group):
            copy = block[start:start + group].copy()
            for i in range(len(copy)):
                n = rows - (start + i) * bs
                yield dict(zip(names, from_numpy(copy[i] if n >= bs else copy[i, :, :n]).unbind(0)))

    def _whole_batch(self, b: int, n: int) -> Dict[str, Any]:
        """Batch ``b`` of a batch-major table (``n`` rows: ``batch_rows`` or fewer for the last one)."""
        if self._plain is not None:  # the common case: one copy of one contiguous run, its columns as views
            block, names = self._plain
            return dict(zip(names, self._from_numpy((block[b] if n == self._bs else block[b, :, :n]).copy())
                            .unbind(0)))
        return self._columns(block[b] if n == self._bs else block[b, :, :n] for block, _, _ in self.blocks)

    def _gathered(self, rows: np.ndarray) -> Dict[str, Any]:
        """Rows at positions ``rows`` of a batch-major table (slices not cut at batch boundaries, positions)."""
        rows = rows.astype(np.intp, copy=False)
        if rows.size and (rows.min() < -self.rows or rows.max() >= self.rows):
            raise IndexError(f"row positions out of range for a table of {self.rows} rows")
        rows = rows % max(1, self.rows)
        bs = self._bs
        # block[b, :, r] for each row: (n, columns, *cell), then (columns, n, *cell)
        return self._columns(np.moveaxis(block[rows // bs, :, rows % bs], 0, 1) for block, _, _ in self.blocks)

    def _columns(self, picked: Any) -> Dict[str, Any]:
        """Tensors of one batch from each block's ``(columns, n, *cell)`` rows (copied here: new memory)."""
        return self._tensors(np.array(cols, order="C") for cols in picked)

    def _tensors(self, new_columns: Any) -> Dict[str, Any]:
        """Tensors of one batch from each block's new, C-contiguous ``(columns, n, *cell)`` array."""
        out: Dict[str, Any] = {}
        for (_, names, fast), cols in zip(self.blocks, new_columns):
            if fast:
                out.update(zip(names, self._from_numpy(cols).unbind(0)))
            else:
                for j, name in enumerate(names):
                    out[name] = column_to_tensor(name, cols[j], self.row_values)
        if self._single:
            return out
        return {name: out[name] for name in self.names}


def _put_batch_major(block: np.ndarray, j: int, start: int, values: np.ndarray) -> None:
    """Write ``values`` (rows ``start ..`` of column ``j``) into a batch-major ``block`` ``(batches, columns,
    batch_rows, *cell)``: the rest of a first batch, whole batches at once, the start of a last one."""
    bs, n, pos = block.shape[2], len(values), 0
    off = start % bs
    if off and n:
        m = min(bs - off, n)
        block[start // bs, j, off:off + m] = values[:m]
        pos = m
    full = (n - pos) // bs
    if full:
        b = (start + pos) // bs
        block[b:b + full, j] = values[pos:pos + full * bs].reshape((full, bs) + values.shape[1:])
        pos += full * bs
    if pos < n:
        block[(start + pos) // bs, j, :n - pos] = values[pos:]
