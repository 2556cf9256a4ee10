"""Nulls in numeric batch columns, as the original's batch reader gave them.

Our batch reader gives a numeric column with nulls as an object array holding ``None``. The original's went
through pandas, so its loaders got ``float64`` with NaN for integers and the column's own float dtype with NaN
for floats (recorded from 0.12.1). The torch loaders and ``make_jax_iterator`` turn such columns back with
:func:`nullable_numbers_as_nan` (numpy only).
"""
from __future__ import annotations

import numpy as np

__all__ = ["nullable_numbers_as_nan"]


def nullable_numbers_as_nan(col: np.ndarray) -> "np.ndarray | None":
    """A 1-D object column of numbers and ``None`` as the original's batch reader gave it: the float dtype of its
    values when they all have one (``float32`` stays ``float32``), else ``float64``, with NaN for the nulls.

    Returns
    -------
    numpy.ndarray or None
        None when the column holds no ``None`` or anything but numbers (bools, strings, arrays...): the caller
        raises its own error for those.
    """
    values = col.tolist()  # an object array's own elements (numpy scalars stay numpy scalars)
    nulls = np.fromiter((v is None for v in values), dtype=bool, count=len(values))
    if col.ndim != 1 or not nulls.any():
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
