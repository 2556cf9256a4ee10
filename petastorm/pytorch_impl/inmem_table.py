"""The in-memory table of ``InMemBatchedDataLoader``: rows loaded once, served as batches of tensors.

Numeric columns of one dtype and cell shape share one block, so a batch is one copy per block (not one per
column) and its tensors are views of that copy (``torch.from_numpy(copy).unbind(0)``: one call, not one per
column). The layout follows the access pattern:

- served in order (``shuffle=False``): column-major blocks ``(columns, rows, *cell)``: a batch is one
  contiguous slice per column, copied in one ``copy()``;
- shuffled: row-major blocks ``(rows, columns, *cell)``: a batch of random rows is one gather of whole rows
  (one cache line per row for all the columns, not one per column), transposed into ``(columns, rows)``.

Columns of other kinds (strings, objects) get a block of their own and go through
:func:`~petastorm.pytorch_impl.device.column_to_tensor` (the original's errors, promotions).
"""
from __future__ import annotations

from typing import Any, Dict, List, Union

import numpy as np

from petastorm.adapters.column_buffer import as_records
from petastorm.errors import PetastormSchemaError
from petastorm.pytorch_impl.device import AS_IS_DTYPES, column_to_tensor

__all__ = ["InMemTable"]

_GROUPED_KINDS = frozenset("biufc")


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

    Raises
    ------
    PetastormSchemaError
        (a ``ValueError``) for a field missing from a part, or cells of different shapes in one field.
    """

    def __init__(self, parts: List[Dict[str, np.ndarray]], row_major: bool, row_values: bool = False) -> None:
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
        # [(block, column names, whether its tensors are views of the batch's copy)]
        self.blocks: List[tuple] = []
        for names in groups.values():
            dtype, cell = dtypes[names[0]], cells[names[0]]
            shape = (self.rows, len(names)) + cell if row_major else (len(names), self.rows) + cell
            self.blocks.append((np.empty(shape, dtype=dtype), names, dtype in AS_IS_DTYPES))
        start = 0
        while parts:
            part = parts.pop(0)
            n = len(next(iter(part.values()))) if part else 0
            for block, names, _ in self.blocks:
                for j, name in enumerate(names):
                    if row_major:
                        block[start:start + n, j] = part[name]
                    else:
                        block[j, start:start + n] = part[name]
            start += n
        self._records = [as_records(b) if row_major else None for b, _, _ in self.blocks]
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
        if self._plain is not None:  # one block of columns kept as they are, served in order: the common case
            block, names = self._plain
            return dict(zip(names, self._from_numpy(block[:, rows].copy() if isinstance(rows, slice)
                                                     else np.take(block, rows, axis=1)).unbind(0)))
        out: Dict[str, Any] = {}
        for (block, names, fast), records in zip(self.blocks, self._records):
            if not self.row_major:
                cols = block[:, rows].copy() if isinstance(rows, slice) else np.take(block, rows, axis=1)
            else:
                if records is None or isinstance(rows, slice):
                    picked = block[rows]
                else:
                    picked = np.take(records, rows).view(block.dtype).reshape((len(rows),) + block.shape[1:])
                cols = np.ascontiguousarray(np.moveaxis(picked, 1, 0))   # (columns, n, *cell)
            if fast:
                out.update(zip(names, self._from_numpy(cols).unbind(0)))
            else:
                for j, name in enumerate(names):
                    out[name] = column_to_tensor(name, cols[j], self.row_values)
        if self._single:
            return out
        return {name: out[name] for name in self.names}
