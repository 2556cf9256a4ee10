"""numpy -> TensorFlow types: the dtype table and the conversion of values and columns (numpy only).

The table is the original's (0.12.1, recorded as a black box with TensorFlow 2.16):

=================================  ===============  ==============================================
field ``numpy_dtype``              TensorFlow dtype value
=================================  ===============  ==============================================
bool, int8/16/32/64, uint8,        the same         unchanged
float32, float64
uint16                             int32            widened (TensorFlow has no uint16 math)
uint32                             int64            widened
float16                            float16          unchanged (the original refused float16)
str_, bytes_                       string           UTF-8 bytes
Decimal                            string           ``str(value.normalize())`` (``Decimal('100.000')``
                                                    -> ``b'1E+2'``, ``Decimal('1.500')`` -> ``b'1.5'``)
datetime64                         int64            rows of a scalar field (``ScalarCodec``): the count in
                                                    the value's own unit (timestamps: microseconds, dates:
                                                    days); rows of an ``NdarrayCodec`` field (any shape) and
                                                    batches: nanoseconds
anything else (uint64, complex,    --               ``PetastormSchemaError`` naming the field
object, timedelta64)
=================================  ===============  ==============================================

A ``None`` (a null in a nullable field) has no tensor: it raises, naming the field, as the original did
for rows - except in a scalar float field, where it is NaN in rows and batches, as the original gave it. In
other batch columns it raises (the original let pandas turn those nulls into ``-2**31``/``'None'``/``False``,
and null timestamps into ``-2**63``: we raise instead of feeding made-up values to a model). A null
timestamp or date of a scalar field (read as ``NaT``) raises the same way, in rows (where the original failed
to decode it) and batches; a ``NaT`` stored inside an ``NdarrayCodec`` array is a value and gives ``-2**63``,
as in the original.
"""
from __future__ import annotations

import datetime
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Optional, Tuple

import numpy as np

from petastorm.adapters.columns import wrapped_in_nanoseconds
from petastorm.codecs import ScalarCodec
from petastorm.errors import PetastormSchemaError

__all__ = ["FieldConversion", "field_conversion", "convert_value", "convert_column"]

#: numpy scalar type -> (TensorFlow dtype name, numpy dtype of the values handed to TensorFlow).
_NUMERIC = {
    np.bool_: ("bool", np.bool_),
    np.int8: ("int8", np.int8),
    np.int16: ("int16", np.int16),
    np.int32: ("int32", np.int32),
    np.int64: ("int64", np.int64),
    np.uint8: ("uint8", np.uint8),
    np.uint16: ("int32", np.int32),
    np.uint32: ("int64", np.int64),
    np.float16: ("float16", np.float16),
    np.float32: ("float32", np.float32),
    np.float64: ("float64", np.float64),
}

_NUMERIC_KIND, _STRING, _DECIMAL, _DATETIME = "numeric", "string", "decimal", "datetime"


@dataclass(frozen=True)
class FieldConversion:
    """How one field reaches TensorFlow.

    Attributes
    ----------
    name : str
        Field name.
    kind : {'numeric', 'string', 'decimal', 'datetime'}
    tf_dtype : str
        TensorFlow dtype name (``tf.as_dtype(tf_dtype)``).
    np_dtype : numpy.dtype
        dtype of the arrays handed to TensorFlow (``object`` for strings).
    shape : tuple of (int or None)
        Static shape of one value (``None`` for a dimension of variable length); a batch column has one
        more leading dimension of ``None``.
    scalar_codec : bool
        The field is stored as a Parquet scalar (``ScalarCodec``, or no codec: a plain Parquet column), so a
        ``NaT`` in it is a null; otherwise it is an ``NdarrayCodec``-style array (datetime rows in ns).
    """

    name: str
    kind: str
    tf_dtype: str
    np_dtype: np.dtype
    shape: Tuple[Optional[int], ...]
    scalar_codec: bool = True


def field_conversion(field: Any) -> FieldConversion:
    """The conversion of a :class:`~petastorm.unischema.UnischemaField`.

    Raises
    ------
    PetastormSchemaError
        For a ``numpy_dtype`` TensorFlow cannot hold; the message leads with the original's words and names
        the field.
    """
    dtype = field.numpy_dtype
    shape = tuple(field.shape or ())
    if isinstance(dtype, type) and issubclass(dtype, Decimal):
        return FieldConversion(field.name, _DECIMAL, "string", np.dtype(object), shape)
    if isinstance(dtype, type) and issubclass(dtype, (datetime.date, datetime.datetime)):
        return FieldConversion(field.name, _DATETIME, "int64", np.dtype(np.int64), shape)
    try:
        np_type = np.dtype(dtype).type
    except TypeError:
        np_type = None
    if np_type is np.datetime64:
        codec = getattr(field, "codec", None)
        scalar = not shape and (codec is None or isinstance(codec, ScalarCodec))
        return FieldConversion(field.name, _DATETIME, "int64", np.dtype(np.int64), shape, scalar)
    if np_type in (np.str_, np.bytes_):
        return FieldConversion(field.name, _STRING, "string", np.dtype(object), shape)
    if np_type in _NUMERIC:
        tf_name, np_target = _NUMERIC[np_type]
        return FieldConversion(field.name, _NUMERIC_KIND, tf_name, np.dtype(np_target), shape)
    raise PetastormSchemaError(
        f"Unknown mapping of numpy {dtype!r} to tensorflow dtype: field {field.name!r} cannot be a tensor "
        f"(TensorFlow takes bool, int8-64, uint8-32, float16-64, strings, Decimal and datetime64 fields); "
        f"leave it out with schema_fields or convert it with a TransformSpec")


def _none_error(name: str, where: str = "") -> PetastormSchemaError:
    # The original's words (0.12.1), with the space it lacked after "tensor."
    return PetastormSchemaError(
        f'Encountered "{name}"=None{where}. Tensorflow does not support None values as a tensor. '
        f"Consider filtering out these rows using a predicate.")


def _value_error(conv: FieldConversion, value: Any, reason: str) -> PetastormSchemaError:
    return PetastormSchemaError(
        f"field {conv.name!r} ({conv.tf_dtype} in TensorFlow) got a value it cannot hold: "
        f"{type(value).__name__} {value!r:.80} ({reason}); fix the TransformSpec's edit_fields or the data")


def _encode(value: Any, conv: FieldConversion) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, bytes):
        return bytes(value)
    # bytes(5) would be five zero bytes: a value that is not text is refused, naming the field
    raise _value_error(conv, value, "a string field takes str or bytes")


def _decimal_string(value: Any) -> bytes:
    return str(value.normalize() if isinstance(value, Decimal) else value).encode("utf-8")


def convert_value(conv: FieldConversion, value: Any) -> Any:
    """One row's value of a field -> a numpy array (or ``bytes``) of ``conv.np_dtype``.

    Raises
    ------
    PetastormSchemaError
        If ``value`` is ``None``.
    """
    if value is None:
        if conv.kind == _NUMERIC_KIND and conv.np_dtype.kind == "f" and not conv.shape:
            return np.asarray(np.nan, dtype=conv.np_dtype)  # the original's rows (0.12.1, recorded): NaN
        raise _none_error(conv.name)
    kind = conv.kind
    if kind == _NUMERIC_KIND:
        try:
            return np.asarray(value, dtype=conv.np_dtype)
        except (ValueError, TypeError, OverflowError) as error:  # e.g. a str, or 2**40 for an int32 field
            raise _value_error(conv, value, str(error)) from None
    if kind == _STRING:
        if isinstance(value, (str, bytes)):
            return _encode(value, conv)
        return _strings_array(np.asarray(value), conv)
    if kind == _DECIMAL:
        if isinstance(value, np.ndarray):
            return np.array([_decimal_string(v) for v in value.ravel()], dtype=object).reshape(value.shape)
        return _decimal_string(value)
    # datetime, as the original's rows: a scalar field's count in the value's own unit; an array field's in ns
    if isinstance(value, (datetime.date, datetime.datetime)):
        value = np.datetime64(value)
    value = np.asarray(value)
    if value.dtype.kind == "M":
        if conv.scalar_codec and np.isnat(value).any():
            raise _none_error(conv.name)  # a null timestamp/date (the original failed to decode it)
        if not conv.scalar_codec:
            value = value.astype("datetime64[ns]")
    return value.astype(np.int64)


def _strings_array(column: np.ndarray, conv: FieldConversion) -> np.ndarray:
    """A ``<U``, ``|S`` or object array of str/bytes -> an array of UTF-8 bytes TensorFlow takes."""
    if column.dtype.kind == "U":
        return np.char.encode(column, "utf-8")
    if column.dtype.kind == "S":
        return column
    flat = [_encode(v, conv) for v in column.ravel()]
    out = np.empty(len(flat), dtype=object)
    out[:] = flat
    return out.reshape(column.shape)


def _check_no_none(conv: FieldConversion, column: np.ndarray) -> None:
    if column.dtype == object:
        for i, v in enumerate(column):
            if v is None:
                raise _none_error(conv.name, f" in row {i} of a batch")


def _dense(conv: FieldConversion, column: np.ndarray) -> np.ndarray:
    """An object column of equal-shape arrays -> one stacked array; ragged rows raise naming the field."""
    if column.dtype != object:
        return column
    if not conv.shape:
        return np.array(column.tolist())
    try:
        return np.stack([np.asarray(v) for v in column]) if len(column) else \
            np.zeros((0,) + tuple(d or 0 for d in conv.shape))
    except ValueError:
        shapes = sorted({np.shape(v) for v in column})
        raise PetastormSchemaError(
            f"field {conv.name!r} of shape {conv.shape} holds values of different shapes in one batch "
            f"({shapes[:4]}{'...' if len(shapes) > 4 else ''}); a batch column must be one dense tensor: "
            f"read it with make_reader (one row at a time) or pad it with a TransformSpec") from None


def convert_column(conv: FieldConversion, column: Any) -> np.ndarray:
    """A batch column of a field (``shape (rows,) + field shape``) -> an array TensorFlow takes.

    Whole-column numpy operations; per-cell Python only for object columns (Decimal, dates, ragged).

    Raises
    ------
    PetastormSchemaError
        For a ``None`` in the column, or a variable-shape field whose rows differ in shape.
    """
    column = np.asarray(column)
    kind = conv.kind
    if kind == _NUMERIC_KIND and conv.np_dtype.kind == "f" and column.dtype == object and not conv.shape:
        # nulls of a float field: NaN, as the original's batches (its batch reader went through pandas)
        column = np.array([np.nan if v is None else v for v in column], dtype=conv.np_dtype)
    _check_no_none(conv, column)
    if kind == _NUMERIC_KIND:
        dense = _dense(conv, column)
        try:
            with np.errstate(invalid="ignore", over="ignore"):
                out = dense.astype(conv.np_dtype, copy=False)
        except (ValueError, TypeError, OverflowError) as error:
            raise _value_error(conv, dense, str(error)) from None
        changed = out != dense if out is not dense and out.dtype.kind in "iub" and dense.dtype.kind in "fc" else None
        if changed is not None and changed.any():
            # fractions or values out of range (a TransformSpec that made floats of an integer field without
            # declaring it): refused, naming the field, rather than cut silently (0.12.1 cut them)
            bad = dense.reshape(-1)[np.argmax(changed.reshape(-1))]
            raise _value_error(conv, bad, f"an integer field cannot hold {dense.dtype} values that are not whole "
                                          f"numbers in its range; declare the field's dtype in edit_fields")
        return out
    if kind == _STRING:
        return _strings_array(_dense(conv, column) if conv.shape else column, conv)
    if kind == _DECIMAL:
        out = np.empty(len(column), dtype=object)
        out[:] = [_decimal_string(v) for v in column]
        return out
    # datetime: nanoseconds, as the original's batches
    if conv.shape:
        column = _dense(conv, column)  # an object column of equal-shape arrays; ragged ones raise naming the field
    if column.dtype.kind != "M":  # dates and datetimes as objects: in their own unit (D, us), so that the
        values = column.tolist()  # check below sees the values the cast to nanoseconds wraps (9999-12-31)
        column, nanos = np.array(values, dtype="datetime64"), np.array(values, dtype="datetime64[ns]")
    else:
        nanos = column.astype("datetime64[ns]")
    if conv.scalar_codec:
        nulls = np.flatnonzero(np.isnat(nanos))
        if len(nulls):
            raise _none_error(conv.name, f" in row {nulls[0]} of a batch")
    wrapped = wrapped_in_nanoseconds(column, nanos)
    if wrapped.size:
        raise _value_error(conv, wrapped[0], "TensorFlow gets timestamps as int64 nanoseconds, from 1677-09-22 to "
                                             "2262-04-11")
    return nanos.view(np.int64)
