"""The types of decoded scalar values, as the original library gives them.

The codecs decode a column into the array the reader's fast paths want (strings as an object array of
``str``, timestamps in the column's unit, dates as ``datetime64[D]``). The original (0.12.1, recorded as
a black box) gave other types for some scalar fields, and user code can tell:

=====================  ===============================  ========================================
field                  ``make_reader`` row value         ``make_batch_reader`` column
=====================  ===============================  ========================================
``np.str_``            ``numpy.str_`` (None if null)     ``<U`` array of ``numpy.str_``
``np.bytes_``          ``numpy.bytes_`` (None if null)   object array of ``bytes`` (unchanged)
timestamp column       ``datetime64[us]``                the column's unit (unchanged)
date column            ``datetime64[D]`` (unchanged)     object array of ``datetime.date``
=====================  ===============================  ========================================

Kept on purpose: a batch column of a nullable string field that holds nulls stays an object array of
``str`` and ``None`` (the original's ``<U`` array held the string ``'None'``), a nullable integer column
with nulls stays an object array (the original's became float64 with NaN).
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

__all__ = ["retyped_fields", "as_original_values"]

#: A batch string column becomes a ``<U`` array only when that array is at most this many times the
#: UTF-32 size of its characters (very uneven lengths would make it huge) or smaller than 1 MiB.
_MAX_PADDING = 4


def _value_kind(field: Any) -> Optional[str]:
    """'str', 'bytes', 'datetime' or None (nothing to change) for a scalar field."""
    from petastorm.codecs import ScalarCodec, dtype_type

    if field is None or field.shape or not (field.codec is None or type(field.codec) is ScalarCodec):
        return None
    kind = dtype_type(field.numpy_dtype)
    if kind is np.str_:
        return "str"
    if kind is np.bytes_:
        return "bytes"
    if kind is np.datetime64:
        return "datetime"
    return None


def retyped_fields(schema: Any, names: list) -> dict:
    """Field name -> kind (see :func:`as_original_values`) for the fields of ``names`` whose values change."""
    out = {}
    for name in names:
        kind = _value_kind(schema.fields.get(name))
        if kind is not None:
            out[name] = kind
    return out


def as_original_values(kind: str, values: np.ndarray, batch: bool, column: Any = None) -> np.ndarray:
    """A decoded column with the original's value types (table above).

    Parameters
    ----------
    kind : {'str', 'bytes', 'datetime'}
    values : numpy.ndarray, shape (rows,)
        What the codec decoded.
    batch : bool
        ``make_batch_reader`` (a column) rather than ``make_reader`` (values handed out one by one).
    column : pyarrow.Array, optional
        The Arrow column ``values`` came from (its offsets bound the size of a ``<U`` array; its type tells
        a date from a timestamp).
    """
    if not len(values):
        return values
    if kind in ("str", "bytes"):
        if values.dtype != object:
            return values
        if batch:
            return _str_column(values, column) if kind == "str" else values
        scalar = np.str_ if kind == "str" else np.bytes_
        nulls = values == None  # noqa: E711 (elementwise)
        out = np.empty(len(values), dtype=object)
        if nulls.any():
            keep = ~nulls
            out[keep] = np.frompyfunc(scalar, 1, 1)(values[keep])
        else:
            out[:] = np.frompyfunc(scalar, 1, 1)(values)
        return out
    if kind == "datetime" and values.dtype.kind == "M" and column is not None:
        import pyarrow as pa

        typ = column.type
        if pa.types.is_dictionary(typ):
            typ = typ.value_type
        if batch and pa.types.is_date(typ):
            return values.astype(object)  # datetime.date (None for NaT)
        if not batch and pa.types.is_timestamp(typ) and np.datetime_data(values.dtype)[0] in ("ns", "ps", "fs", "as"):
            return values.astype("datetime64[us]")
    return values


def _str_column(values: np.ndarray, column: Any) -> np.ndarray:
    """A ``<U`` array of an object array of ``str`` without nulls; unchanged when it holds None or the
    array would be much larger than its characters."""
    if column is not None and getattr(column, "null_count", 0):
        return values
    if column is not None:
        from petastorm.codecs import binary_cells

        try:
            offsets, _, _ = binary_cells(column)
        except Exception:
            offsets = None
        if offsets is not None and len(offsets) > 1:
            longest = int(np.diff(offsets).max())  # bytes: at least the characters
            padded = 4 * longest * (len(offsets) - 1)
            if padded > (1 << 20) and padded > _MAX_PADDING * 4 * int(offsets[-1] - offsets[0]):
                return values
    try:
        return values.astype(np.str_)
    except (TypeError, ValueError):  # None or something else among the values
        return values
