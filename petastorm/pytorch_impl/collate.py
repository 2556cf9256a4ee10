"""``decimal_friendly_collate`` (the original's) and its column form ``columns_to_torch``.

``decimal_friendly_collate(batch)`` - behaviour recorded from petastorm 0.12.1, looking at ``batch[0]``:

- a mapping: ``{key: decimal_friendly_collate([d[key] for d in batch]) for key in batch[0]}`` (a plain
  ``dict``; a key missing from a later element is a ``KeyError``);
- a ``Decimal``, ``str`` or ``bytes`` (``numpy.str_`` too): ``batch`` itself, unchanged (a list stays a list,
  a tuple a tuple);
- another sequence (list, tuple, namedtuple): ``[decimal_friendly_collate(s) for s in zip(*batch)]`` - a
  list; ``zip`` stops at the shortest element;
- anything else: ``torch.utils.data.default_collate(batch)`` (numbers and numpy values become tensors).

An empty batch raises ``IndexError``, as the original's.

``columns_to_torch(columns)`` gives, from a batch of columns, what the default collate gives from the same
rows - without a Python step per row: numeric columns become tensors (with the original's promotions of
arrays: ``bool -> uint8``, ``uint16 -> int32``, ``uint32 -> int64``), ``str``/``bytes``/``Decimal`` columns
Python lists, ``None`` the original's ``TypeError``. One deliberate difference: the original promoted array
values only, so on torch >= 2.3 a ``uint16``/``uint32`` *scalar* field of ``make_reader`` came out as a
``torch.uint16``/``torch.uint32`` tensor (types most torch operations do not support); here every
``uint16``/``uint32`` column is promoted, as the original's documentation says.
"""
from __future__ import annotations

import decimal
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any, Dict, Union

import numpy as np

from petastorm.adapters.nulls import nullable_numbers_as_nan
from petastorm.errors import PetastormBatchShapeError, PetastormTypeError
from petastorm.pytorch_impl.device import AS_IS_DTYPES, block_to_tensors, numeric_to_tensor
from petastorm.pytorch_impl.dtypes import (
    ARRAY_PROMOTIONS,
    nullable_error,
    string_array_error,
)

__all__ = ["decimal_friendly_collate", "column_to_torch", "columns_to_torch", "columns_block_to_torch"]

_KEPT_AS_LISTS = (decimal.Decimal, str, bytes)


def decimal_friendly_collate(batch: Any) -> Any:
    """Collate a list of samples into a batch, keeping ``Decimal`` and string values as lists.

    Parameters
    ----------
    batch : list
        Samples: dicts (rows), sequences, numpy values, numbers, Decimals, strings...

    Returns
    -------
    dict, list, tuple or torch.Tensor
        See the module docstring.
    """
    first = batch[0]
    if isinstance(first, Mapping):
        return {key: decimal_friendly_collate([d[key] for d in batch]) for key in first}
    if isinstance(first, _KEPT_AS_LISTS):
        return batch
    if isinstance(first, Sequence):
        return [decimal_friendly_collate(samples) for samples in zip(*batch)]
    from torch.utils.data import default_collate

    return default_collate(batch)


def _collated_object_column(name: str, col: np.ndarray, nulls_as_nan: bool) -> Union[list, np.ndarray]:
    """An object column: a list (str/bytes/Decimal), or a numeric array of its stacked cells (with
    ``nulls_as_nan``, numbers and None: floats with NaN, as the original's batch reader gave them)."""
    values = list(col)
    if any(v is None for v in values):
        # a batch of nulls only is refused: NaN scalars would give an array field's batch the wrong shape (a
        # number column's nulls arrive as NaN already: see nulls_as_nan_columns)
        present = any(v is not None for v in values)
        out = nullable_numbers_as_nan(col) if nulls_as_nan and present else None
        if out is None:
            raise nullable_error(name)
        return out
    if isinstance(values[0], _KEPT_AS_LISTS):
        return values
    try:
        stacked = np.stack([np.asarray(v) for v in values])
    except ValueError as e:  # cells of different shapes
        raise PetastormBatchShapeError(f"field {name!r}: its values cannot form one tensor ({e}); use a collate_fn "
                                 f"that handles them, or a TransformSpec that gives them one shape") from None
    if stacked.dtype.kind in "USO":
        raise PetastormTypeError(f"field {name!r}: values of type {type(values[0]).__name__} cannot form a tensor; "
                                 f"use a collate_fn that handles them")
    return stacked


def column_to_torch(name: str, col: np.ndarray, nulls_as_nan: bool = False) -> Any:
    """One column of a batch as the default collate gives it.

    Parameters
    ----------
    name : str
        Field name (for error messages).
    col : numpy.ndarray, shape (rows, ...)
    nulls_as_nan : bool
        A column of ``make_batch_reader``: numbers with ``None`` become floats with NaN, as the original's
        batch reader gave them (see :func:`~petastorm.adapters.nulls.nullable_numbers_as_nan`).

    Returns
    -------
    torch.Tensor of shape (rows, ...), or a list of ``rows`` values (str, bytes, Decimal columns).

    Raises
    ------
    PetastormTypeError
        (a ``TypeError``) for ``None`` values, arrays of strings per row, and types torch has no tensor for
        (``datetime64``, dates...), naming the field.
    """
    if col.dtype.kind in "US":
        if col.ndim > 1:
            raise string_array_error(name)
        return list(col)
    if col.dtype.kind == "O":
        col = _collated_object_column(name, col, nulls_as_nan)
        if isinstance(col, list):
            return col
    return numeric_to_tensor(name, col, ARRAY_PROMOTIONS.get(col.dtype),
                             "convert it with a TransformSpec, or use a collate_fn that handles it")


def columns_to_torch(columns: Dict[str, np.ndarray], nulls_as_nan: bool = False) -> Dict[str, Any]:
    """Every column of a batch through :func:`column_to_torch` (same keys, same order)."""
    from torch import from_numpy

    out = {}
    for name, col in columns.items():
        flags = col.flags
        # the common case inline (no call, no import per column): a dtype kept as it is, writable, contiguous
        if col.dtype in AS_IS_DTYPES and flags.writeable and flags.c_contiguous:
            out[name] = from_numpy(col)
        else:
            out[name] = column_to_torch(name, col, nulls_as_nan)
    return out


def _array_promotion(col: np.ndarray) -> Any:
    return ARRAY_PROMOTIONS.get(col.dtype)


def columns_block_to_torch(columns: Dict[str, np.ndarray], k: int, nulls_as_nan: bool = False) -> list:
    """:func:`columns_to_torch` of each of the ``k`` equal row ranges of ``columns``, done a column at a time
    (:func:`~petastorm.pytorch_impl.device.block_to_tensors`; str/Decimal columns give a list per batch)."""
    return block_to_tensors(columns, k, partial(column_to_torch, nulls_as_nan=nulls_as_nan), _array_promotion)
