"""What a value must be to go into a field, and the errors of a value that does not fit: shared by the codecs
(:mod:`petastorm.codecs`) and the fields with no codec.

- :func:`dtype_type`: a field's numpy scalar type;
- :func:`check_value_fits_field`: an array value of the field's dtype and shape, or an error naming the field;
- :func:`misfit`: why a decoded array does not fit its field; :func:`decode_error`: the error for such a cell;
- :func:`encode_native`: a value of a field with no codec as a native Parquet value, refusing what Arrow would
  store changed (a fraction in an integer column, a float32 overflow).
"""
from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import numpy as np

from petastorm.errors import PetastormDecodeError, PetastormSchemaError

__all__ = ["FLOAT32_MAX", "dtype_type", "check_value_fits_field", "misfit", "decode_error", "encode_native"]

#: The largest finite float32 (a finite value beyond it would be stored as infinity).
FLOAT32_MAX = float(np.finfo(np.float32).max)


def dtype_type(numpy_dtype: Any) -> Any:
    """The numpy scalar type of a field's dtype (``np.float32`` for ``np.dtype('<f4')`` too)."""
    if numpy_dtype in (Decimal, str, bytes):
        return {Decimal: Decimal, str: np.str_, bytes: np.bytes_}[numpy_dtype]
    try:
        return np.dtype(numpy_dtype).type
    except TypeError:
        return numpy_dtype


def _is_compliant_shape(actual: tuple, expected: tuple) -> bool:
    if len(actual) != len(expected):
        return False
    return all(e is None or a == e for a, e in zip(actual, expected))


def check_value_fits_field(field: Any, value: Any, image: bool = False) -> np.ndarray:
    """Check that an array value has the field's dtype and shape; return it as an ndarray.

    Messages lead with the original's words ('Unexpected type of ... feature', 'Unexpected dimensions of
    ... feature'; ``image`` selects the image codec's punctuation), then ours.

    Raises
    ------
    PetastormSchemaError
        Naming the field, the expected and the actual dtype and shape.
    """
    name = field.name
    if not isinstance(value, np.ndarray):
        raise PetastormSchemaError(
            f"field {name!r} expects a numpy array of {np.dtype(dtype_type(field.numpy_dtype)).name} "
            f"with shape {field.shape}, got {type(value).__name__}")
    expected_type = dtype_type(field.numpy_dtype)
    if value.dtype.type is not expected_type:
        lead = (f"Unexpected type of {name} feature, expected {field.numpy_dtype}, got {value.dtype}" if image else
                f"Unexpected type of {name} feature. Expected {field.numpy_dtype}. Got {value.dtype}")
        raise PetastormSchemaError(
            f"{lead}: field {name!r} expects {np.dtype(expected_type).name} of shape {tuple(field.shape)}, got "
            f"{value.dtype.name} of shape {value.shape}")
    if not _is_compliant_shape(value.shape, tuple(field.shape)):
        lead = (f"Unexpected dimensions of {name} feature, expected {tuple(field.shape)}, got {value.shape}" if image
                else f"Unexpected dimensions of {name} feature. Expected {tuple(field.shape)}. Got {value.shape}")
        raise PetastormSchemaError(
            f"{lead}: field {name!r} expects {value.dtype.name} of shape {tuple(field.shape)}, got "
            f"{value.dtype.name} of shape {value.shape}")
    if not value.dtype.isnative:  # big-endian input: stored (and read back) in this machine's byte order
        value = value.astype(value.dtype.newbyteorder("="))
    return value


def misfit(field: Any, dtype: np.dtype, shape: tuple) -> "str | None":
    """Why a decoded array of ``dtype`` and ``shape`` does not fit ``field``; None when it fits (or when no
    field is given)."""
    if field is None:
        return None
    expected = dtype_type(field.numpy_dtype)
    want = tuple(field.shape) if field.shape is not None else None
    if dtype.type is not expected or (want is not None and not _is_compliant_shape(tuple(shape), want)):
        try:
            expected_name = np.dtype(expected).name
        except TypeError:
            expected_name = getattr(expected, "__name__", str(expected))
        return (f"the stored value is {dtype.name} of shape {tuple(shape)}, the field is {expected_name} of shape "
                f"{want}")
    return None


def decode_error(field: Any, row: int, detail: str) -> PetastormDecodeError:
    """The error for cell ``row`` of a column of ``field`` that cannot be decoded or does not fit the field
    (the reader's worker adds the file, the row group and the row in the row group)."""
    return PetastormDecodeError(f"field {field.name!r}, row {row} of the decoded column: {detail}", row=row,
                                detail=detail)


def encode_native(field: Any, value: Any) -> Any:
    """Encode a value of a field with no codec into a native Parquet value (scalar or list)."""
    if field.shape in ((), None):
        if isinstance(value, np.ndarray) and value.shape != ():
            raise PetastormSchemaError(f"field {field.name!r} expects a scalar, got an array of shape {value.shape}")
        _check_native_scalar(field, value)
        if isinstance(value, np.generic):
            return value.item()
        return value
    arr = check_value_fits_field(field, np.asarray(value) if not isinstance(value, np.ndarray) else value)
    return arr.tolist()


def _check_native_scalar(field: Any, value: Any) -> None:
    """Refuse a number that Arrow would store changed in the field's column: a float with a fraction (or NaN)
    in an integer column is truncated, a finite float beyond float32 range becomes infinity."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        return
    try:
        dtype = np.dtype(field.numpy_dtype)
    except TypeError:
        return
    if dtype.kind in "iu" and isinstance(value, (float, np.floating)) and not float(value).is_integer():
        raise PetastormSchemaError(f"field {field.name!r} expects an integer ({dtype.name}), got {value!r}")
    if dtype == np.float32 and math.isfinite(value) and abs(float(value)) > FLOAT32_MAX:
        raise PetastormSchemaError(f"field {field.name!r}: value {value!r} does not fit the column type float32 "
                                   f"(it would be stored as infinity): use float64")
