"""Nulls in numeric batch columns, as the original's batch reader gave them.

Our batch reader gives an integer column with nulls as an object array holding ``None`` (float columns keep
NaN). The original's went through pandas, so its loaders got ``float64`` with NaN for integers (recorded from
0.12.1). The torch loaders and ``make_jax_iterator`` turn such columns back with :func:`nullable_numbers_as_nan`,
once per reader batch (:func:`batch_nulls_as_nan`), so every batch cut from it has one dtype (numpy only).
"""
from __future__ import annotations

from functools import partial
from typing import Any, Callable, Dict

import numpy as np

__all__ = ["nullable_numbers_as_nan", "nulls_as_nan_columns", "batch_nulls_as_nan"]

_NUMBERS = (int, float, np.integer, np.floating)
_BOOLS = (bool, np.bool_)


def nullable_numbers_as_nan(col: np.ndarray, without_nulls: bool = False) -> "np.ndarray | None":
    """A 1-D object column of numbers and ``None`` as the original's batch reader gave it: the float dtype of its
    values when they all have one (``float32`` stays ``float32``), else ``float64``, with NaN for the nulls.

    Parameters
    ----------
    col : numpy.ndarray of objects, shape (rows,)
    without_nulls : bool
        Also convert a column of numbers holding no ``None`` (a batch cut from a reader batch whose column held
        one elsewhere: the reader gives the whole column as objects), so every batch of it is floats.

    Returns
    -------
    numpy.ndarray or None
        None when the column holds no ``None`` (unless ``without_nulls``) or anything but numbers (bools,
        strings, arrays...): the caller raises its own error for those.
    """
    values = col.tolist()  # an object array's own elements (numpy scalars stay numpy scalars)
    nulls = np.fromiter((v is None for v in values), dtype=bool, count=len(values))
    if col.ndim != 1 or not (nulls.any() or (without_nulls and len(values))):
        return None
    present = [v for v in values if v is not None]
    if not all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))
               for v in present):
        return None
    dtypes = {v.dtype for v in present if isinstance(v, np.floating)}
    dtype = dtypes.pop() if len(dtypes) == 1 and len(present) == sum(isinstance(v, np.floating) for v in present) \
        else np.dtype(np.float64)
    out = np.full(len(values), np.nan, dtype=dtype)
    out[~nulls] = present
    return out


def nulls_as_nan_columns(columns: Dict[str, np.ndarray], array_fields: Any = (),
                         other_fields: Any = ()) -> Dict[str, np.ndarray]:
    """A ``make_batch_reader`` column batch with its object columns of numbers and ``None`` as the original's
    batch reader gave them: floats with NaN (``float64`` for integers; see
    :func:`nullable_numbers_as_nan`). Other columns are kept as they are.

    Run on each reader batch as a whole, before batching, shuffling and ``transform_fn`` (recorded from
    0.12.1: ``transform_fn`` got such a column as floats with NaN, and every loader batch cut from that reader
    batch had the float dtype, with or without the null row). Converting each loader batch on its own gave
    ``int32`` in the batches without a null and ``float64`` in the others.

    Parameters
    ----------
    columns : dict of str -> numpy.ndarray, shape (rows, ...)
    array_fields : collection of str
        Fields whose cells are arrays: a column of them holding only ``None`` is kept (NaN scalars would
        give its batches the wrong shape).
    other_fields : collection of str
        Fields of strings, bytes, decimals, dates or booleans: kept as they are, also when a batch of them holds
        only ``None`` (NaN floats would pass a column of nulls of a string field off as numbers).

    Returns
    -------
    dict of str -> numpy.ndarray
        ``columns`` itself when nothing changes, else a new dict (same keys and order).
    """
    out = None
    for name, col in columns.items():
        if col.dtype.kind == "O" and col.ndim == 1 and len(col) and name not in other_fields:
            first = col[0]
            if first is not None and (not isinstance(first, _NUMBERS) or isinstance(first, _BOOLS)):
                continue  # str, bytes, Decimal, arrays...: no pass over the column
            filled = nullable_numbers_as_nan(col)
            if filled is not None and (name not in array_fields or not np.isnan(filled).all()):
                if out is None:
                    out = dict(columns)
                out[name] = filled
    return columns if out is None else out


def batch_nulls_as_nan(reader: Any) -> Callable:
    """:func:`nulls_as_nan_columns` for the column batches of ``reader`` (its array fields and the fields of other
    values than numbers from its schema)."""
    fields = getattr(getattr(reader, "schema", None), "fields", None) or {}
    array_fields = frozenset(name for name, field in fields.items() if getattr(field, "shape", ()))
    other_fields = frozenset(name for name, field in fields.items() if not _holds_numbers(field))
    return partial(nulls_as_nan_columns, array_fields=array_fields, other_fields=other_fields)


def _holds_numbers(field: Any) -> bool:
    """Whether a field's values may be numbers: a numeric numpy type, or ``object`` (an Arrow column of type null,
    which the loaders read as NaN)."""
    from petastorm.codec_checks import dtype_type

    t = dtype_type(getattr(field, "numpy_dtype", None))
    return isinstance(t, type) and issubclass(t, np.generic) and np.dtype(t).kind in "iufcO"
