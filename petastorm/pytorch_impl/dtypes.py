"""The original's type promotions for torch, on a row value and on a whole column (numpy only, no torch import).

Recorded from petastorm 0.12.1 (``petastorm.pytorch``) as a black box:

- numpy **arrays** (a row's array value, or a column of ``make_batch_reader``): ``bool -> uint8``,
  ``uint16 -> int32``, ``uint32 -> int64``; every other numeric dtype is kept (``int8``, ``uint64``,
  ``float16``, ``datetime64`` too). Arrays of strings, bytes or objects are refused with the original's
  ``TypeError`` ("Pytorch does not support arrays of string or object classes. Found in field x.").
- numpy **scalars** (a row's scalar value): only ``numpy.bool_ -> numpy.uint8``; ``numpy.uint16`` and
  ``numpy.uint32`` scalars are kept (torch 2.x makes ``torch.uint16`` / ``torch.uint32`` tensors of them).
- ``None`` is refused with the original's ``TypeError`` ("Pytorch does not support nullable fields. Found
  None in x"), with the default collate and with a user ``collate_fn`` alike.
- A ``make_batch_reader`` column of numbers with nulls: the original's batch reader read it through pandas, so
  its loaders got float64 with NaN for integers and the column's own float dtype with NaN for floats. Our batch
  reader gives an object array holding ``None``; :func:`petastorm.adapters.nulls.nullable_numbers_as_nan` turns it back.
- Python values (``str``, ``bytes``, ``Decimal``, ``datetime``, ``int``, ``float``, ``bool``, lists) and
  ``numpy.str_`` / ``numpy.bytes_`` scalars are kept as they are.

One deliberate difference: with ``strings_ok=True`` (a user ``collate_fn``, which may know what to do with
them) arrays of strings, bytes or objects are passed on instead of refused - the original broke string
columns even with a custom ``collate_fn``.
"""
from __future__ import annotations

from functools import partial
from typing import Any, Callable, Dict

import numpy as np

from petastorm.adapters.nulls import nullable_numbers_as_nan
from petastorm.errors import PetastormTypeError

__all__ = [
    "ARRAY_PROMOTIONS",
    "promoted_dtype",
    "is_text_or_object_dtype",
    "promote_array",
    "sanitize_value",
    "sanitize_row",
    "nullable_error",
    "string_array_error",
    "nulls_as_nan_columns",
    "batch_nulls_as_nan",
    "refuse_nulls_columns",
]

#: numpy dtype of an array -> the dtype the original converts it to before making a tensor.
ARRAY_PROMOTIONS: Dict[np.dtype, np.dtype] = {
    np.dtype(np.bool_): np.dtype(np.uint8),
    np.dtype(np.uint16): np.dtype(np.int32),
    np.dtype(np.uint32): np.dtype(np.int64),
}

_TEXT_OR_OBJECT_KINDS = frozenset("USO")
_NUMBERS = (int, float, np.integer, np.floating)
_BOOLS = (bool, np.bool_)


def promoted_dtype(dtype: Any) -> np.dtype:
    """The dtype a numpy array (or column) of ``dtype`` becomes before it is made a torch tensor.

    Parameters
    ----------
    dtype : numpy dtype or anything ``numpy.dtype()`` takes

    Returns
    -------
    numpy.dtype
        ``uint8`` for ``bool``, ``int32`` for ``uint16``, ``int64`` for ``uint32``; ``dtype`` itself otherwise
        (string and object dtypes included: see :func:`is_text_or_object_dtype`).
    """
    dtype = np.dtype(dtype)
    return ARRAY_PROMOTIONS.get(dtype, dtype)


def is_text_or_object_dtype(dtype: Any) -> bool:
    """True for numpy string (``<U``), bytes (``S``) and object dtypes: no torch tensor can hold them."""
    return np.dtype(dtype).kind in _TEXT_OR_OBJECT_KINDS


def nullable_error(name: str) -> PetastormTypeError:
    """The original's error for a ``None`` value of field ``name`` (a ``TypeError``)."""
    return PetastormTypeError(f"Pytorch does not support nullable fields. Found None in {name}")


def string_array_error(name: str) -> PetastormTypeError:
    """The original's error for an array of strings or objects in field ``name`` (a ``TypeError``)."""
    return PetastormTypeError(f"Pytorch does not support arrays of string or object classes. Found in field {name}.")


def promote_array(name: str, array: np.ndarray, strings_ok: bool = False) -> np.ndarray:
    """``array`` converted to its promoted dtype (no copy when nothing changes).

    Parameters
    ----------
    name : str
        Field name, for the error message.
    array : numpy.ndarray, any shape
    strings_ok : bool
        Pass string/bytes/object arrays through unchanged instead of raising.

    Raises
    ------
    PetastormTypeError
        (a ``TypeError``) for a string, bytes or object array unless ``strings_ok``.
    """
    if array.dtype.kind in _TEXT_OR_OBJECT_KINDS:
        if strings_ok:
            return array
        raise string_array_error(name)
    target = ARRAY_PROMOTIONS.get(array.dtype)
    return array if target is None else array.astype(target)


def sanitize_value(name: str, value: Any, strings_ok: bool = False) -> Any:
    """One row value as the original hands it to ``collate_fn``.

    Parameters
    ----------
    name : str
        Field name, for the error messages.
    value : Any
        A decoded row value: numpy scalar or array, Python scalar, ``Decimal``, ``None``...
    strings_ok : bool
        Pass arrays of strings/bytes/objects through (see the module docstring).

    Raises
    ------
    PetastormTypeError
        (a ``TypeError``) for ``None``, and for an array of strings or objects unless ``strings_ok``.
    """
    if value is None:
        raise nullable_error(name)
    if isinstance(value, np.ndarray):
        return promote_array(name, value, strings_ok)
    if isinstance(value, np.bool_):
        return np.uint8(value)
    return value


def sanitize_row(row: Dict[str, Any], strings_ok: bool = False) -> Dict[str, Any]:
    """Apply :func:`sanitize_value` to every value of ``row`` in place (as the original did) and return it."""
    for name, value in row.items():
        row[name] = sanitize_value(name, value, strings_ok)
    return row


def nulls_as_nan_columns(columns: Dict[str, np.ndarray], array_fields: Any = ()) -> Dict[str, np.ndarray]:
    """A ``make_batch_reader`` column batch with its object columns of numbers and ``None`` as the original's
    batch reader gave them: floats with NaN (``float64`` for integers; see
    :func:`~petastorm.adapters.nulls.nullable_numbers_as_nan`). Other columns are kept as they are.

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

    Returns
    -------
    dict of str -> numpy.ndarray
        ``columns`` itself when nothing changes, else a new dict (same keys and order).
    """
    out = None
    for name, col in columns.items():
        if col.dtype.kind == "O" and col.ndim == 1 and len(col):
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
    """:func:`nulls_as_nan_columns` for the column batches of ``reader`` (its array fields from its schema)."""
    fields = getattr(getattr(reader, "schema", None), "fields", None) or {}
    array_fields = frozenset(name for name, field in fields.items() if getattr(field, "shape", ()))
    return partial(nulls_as_nan_columns, array_fields=array_fields)


def refuse_nulls_columns(columns: Dict[str, np.ndarray], hint: str = "") -> Dict[str, np.ndarray]:
    """``columns`` (rows of ``make_reader`` gathered into columns) unchanged, or the original's nullable
    ``TypeError`` for the first object column holding a ``None``.

    Run on each gathered chunk before batching and shuffling: a ``None`` cell of an array field otherwise
    reaches the shuffling buffer as a cell of shape ``()`` and fails there as cells of different shapes (a
    ``ValueError`` that does not say why), depending on where the row falls.

    Raises
    ------
    PetastormTypeError
        "Pytorch does not support nullable fields. Found None in <name>" (recorded from 0.12.1), then ``hint``.
    """
    for name, col in columns.items():
        if col.dtype.kind == "O" and col.ndim == 1 and any(v is None for v in col.tolist()):
            error = nullable_error(name)
            raise PetastormTypeError(f"{error}. {hint}") if hint else error
    return columns
