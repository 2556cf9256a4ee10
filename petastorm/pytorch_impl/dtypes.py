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

from typing import Any, Dict

import numpy as np

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
    "refuse_nulls_columns",
    "refuse_string_arrays",
    "first_present",
]

#: numpy dtype of an array -> the dtype the original converts it to before making a tensor.
ARRAY_PROMOTIONS: Dict[np.dtype, np.dtype] = {
    np.dtype(np.bool_): np.dtype(np.uint8),
    np.dtype(np.uint16): np.dtype(np.int32),
    np.dtype(np.uint32): np.dtype(np.int64),
}

_TEXT_OR_OBJECT_KINDS = frozenset("USO")


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


def first_present(col: np.ndarray) -> Any:
    """The first cell of a 1-D object column that is not ``None`` (None when there is none)."""
    if len(col) and col[0] is not None:
        return col[0]
    return next((v for v in col.tolist() if v is not None), None)


def refuse_string_arrays(columns: Dict[str, np.ndarray], hint: str = "") -> Dict[str, np.ndarray]:
    """``columns`` (one reader batch) unchanged, or the original's ``TypeError`` for the first field whose cells
    are arrays of strings, bytes or objects (no tensor can hold them; recorded from 0.12.1 for ``DataLoader``,
    ``BatchedDataLoader`` and ``InMemBatchedDataLoader`` over both readers).

    Run on each reader batch before batching: the batch reader gives such a field as a 2-D ``S``/``U`` array
    in a batch whose cells have one length, and as an object array of arrays in one whose cells differ, and
    concatenating the two failed as "cells of different shapes [(), (2,)]", which does not say why. One dtype
    check per column (and one cell of an object column).

    Raises
    ------
    PetastormTypeError
        "Pytorch does not support arrays of string or object classes. Found in field <name>." then ``hint``.
    """
    for name, col in columns.items():
        kind = col.dtype.kind
        bad = kind in "US" and col.ndim > 1
        if kind == "O" and col.ndim == 1:
            first = first_present(col)
            bad = isinstance(first, np.ndarray) and first.dtype.kind in _TEXT_OR_OBJECT_KINDS
        if bad:
            error = string_array_error(name)
            raise PetastormTypeError(f"{error} {hint}") if hint else error
    return columns
