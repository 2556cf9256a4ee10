"""Column batches, the unit the loaders' batching works on: a dict of field name -> numpy array of rows (every
array with the same number of rows), and the helpers that count, cut, join and check them."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from petastorm.errors import PetastormSchemaError, PetastormTypeError

__all__ = ["Columns", "num_rows", "slice_columns", "concat_columns", "check_columns", "as_records",
           "wrapped_in_nanoseconds"]

#: A batch of columns: field name -> array of shape (rows, ...) (every array has the same number of rows).
Columns = dict


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


def check_columns(columns: Mapping[str, Any]) -> None:
    """Raise for the first column of a batch that is not an array of rows, or for columns of different lengths
    (nothing for an aligned batch).

    Raises
    ------
    PetastormTypeError
        A column that is not a numpy array of at least one dimension (names the field and its type).
    PetastormSchemaError
        Columns of different lengths (names each field's rows).
    """
    for name, col in columns.items():
        if not isinstance(col, np.ndarray) or col.ndim == 0:
            raise PetastormTypeError(f"field '{name}' must be a numpy array of rows, got {type(col).__name__}")
    sizes = {name: len(col) for name, col in columns.items()}
    if len(set(sizes.values())) > 1:
        rows = ", ".join(f"'{name}' {n} rows" for name, n in sizes.items())
        raise PetastormSchemaError(f"the columns of a batch have different lengths: {rows}")


def as_records(block: np.ndarray) -> "np.ndarray | None":
    """A C-contiguous block as a 1-D array of opaque rows (numpy moves those several times faster than
    fancy-indexed rows of a 2-D array); None for object blocks (references cannot be viewed as bytes), strided
    ones and rows of no bytes (fields of empty cells: gathered as they are)."""
    cell = int(np.prod(block.shape[1:]))
    if block.dtype.hasobject or not block.flags.c_contiguous or cell == 0:
        return None
    return block.reshape(len(block), cell).view(np.dtype((np.void, block.itemsize * cell)))[:, 0]


#: Units finer than a nanosecond: their cast to nanoseconds cannot overflow.
_FINER_THAN_NS = frozenset({"ps", "fs", "as"})


def wrapped_in_nanoseconds(column: np.ndarray, nanos: np.ndarray) -> np.ndarray:
    """The values of a ``datetime64`` / ``timedelta64`` ``column`` that its cast to nanoseconds, ``nanos``, wrapped.

    numpy's cast does not raise where int64 nanoseconds cannot hold a value (timestamps outside 1677-09-22 ..
    2262-04-11, durations beyond ~292 years): the sentinel 9999-12-31 became 1816-03-29. The JAX and
    TensorFlow adapters, which hand times on as int64 nanoseconds, refuse such values naming the field.

    Parameters
    ----------
    column : numpy.ndarray
        ``datetime64`` or ``timedelta64`` values of any unit and shape.
    nanos : numpy.ndarray
        ``column.astype('datetime64[ns]')`` (or ``'timedelta64[ns]'``).

    Returns
    -------
    numpy.ndarray
        The wrapped values of ``column``, flattened, in order (NaT never counts); empty when none wrapped.
    """
    flat = column.reshape(-1)
    if np.datetime_data(column.dtype)[0] in _FINER_THAN_NS or not column.size:
        return flat[:0]
    with np.errstate(over="ignore", invalid="ignore"):  # a coarser unit: the cast back differs where it wrapped
        wrapped = (nanos.astype(column.dtype) != column) & ~np.isnat(column)
    return flat[wrapped.reshape(-1)]
