"""Which numpy columns JAX can hold, checked once per field up front and once per column per batch.

JAX arrays hold numbers and booleans only, with one shape per array, and, unless 64-bit mode is on
(``jax.config.update('jax_enable_x64', True)``), JAX silently narrows 64-bit values: ``int64 -> int32``,
``uint64 -> uint32``, ``float64 -> float32``. Narrowing floats loses precision the way every JAX user
expects; narrowing integers wraps values (``2**40`` becomes ``0``), so an integer column whose values do not
fit the narrower type is refused here with an error naming the field, instead of arriving corrupted.

Every check is per column (``dtype`` tests, one ``min``/``max`` pass over 64-bit integer columns); nothing
runs per row except on the way to raising an error.
"""
from __future__ import annotations

import datetime
import decimal
from typing import AbstractSet, Any, Dict, Mapping, NamedTuple, Optional

import numpy as np

from petastorm.adapters.checks import ensure_aligned
from petastorm.adapters.columns import wrapped_in_nanoseconds
from petastorm.adapters.nulls import nullable_numbers_as_nan
from petastorm.errors import PetastormSchemaError, PetastormTypeError

__all__ = ["FieldHints", "check_schema_fields", "field_hints", "jax_ready_columns"]

_NUMERIC_KINDS = frozenset("biufc")  # bool, signed, unsigned, float, complex
_NARROW_INTS = {np.dtype(np.int64): np.dtype(np.int32), np.dtype(np.uint64): np.dtype(np.uint32)}
_HOW_TO_FIX = ("leave it out with schema_fields=[...] on the reader, or turn it into a numeric array in "
               "transform_fn")


def _kind_words(dtype: np.dtype, sample: Any = None) -> str:
    """Words for what a non-numeric column holds."""
    if dtype.kind in "US":
        what = "strings" if dtype.kind == "U" else "bytes"
        return f"{what} (numpy {dtype})" if dtype.itemsize else what
    if isinstance(sample, decimal.Decimal) or dtype.type is decimal.Decimal:
        return "Decimal values"
    if isinstance(sample, (str, np.str_)):
        return "strings"
    if isinstance(sample, (bytes, np.bytes_)):
        return "bytes"
    if isinstance(sample, (datetime.date, datetime.datetime)):
        return f"{type(sample).__name__} objects"
    if isinstance(sample, np.ndarray):
        return "arrays of different shapes (a variable-shape field)"
    if dtype.kind == "O" and sample is None:
        return "values of numpy object dtype (Python objects, or only nulls: a column of Arrow type null)"
    if sample is not None:
        return f"Python objects ({type(sample).__name__})"
    return f"values of numpy type {dtype}"


class FieldHints(NamedTuple):
    """What the reader's schema says of the columns of its batches (used when no ``transform_fn`` renames them).

    ``array_fields``: fields whose cells are arrays (a non-empty ``shape``): a column of them holding ``None``
    is refused (as NaN scalars it would arrive with the shape ``(rows,)``). ``float_fields``: nullable integer
    fields declared in a Unischema, given as floats in every batch, not only in those holding a null, so the
    field keeps one dtype through the pass.
    """

    array_fields: AbstractSet[str] = frozenset()
    float_fields: AbstractSet[str] = frozenset()


def field_hints(reader: Any) -> FieldHints:
    """The :class:`FieldHints` of ``reader``'s schema (empty without a schema).

    Only the nullable integer fields a Unischema declares (with a codec: a field inferred from a plain Parquet
    store is nullable whatever it holds) of a reader without a ``TransformSpec`` are ``float_fields`` (a
    ``TransformSpec`` function may fill the nulls without declaring the field anew: its integers stay integers).
    The torch loaders keep 0.12.1's integers for a ``make_batch_reader`` batch without a null; JAX has no such
    past, and one dtype per field spares a ``jit`` step a recompilation, or a failure, mid-pass.
    """
    fields = getattr(getattr(reader, "schema", None), "fields", None) or {}
    array_fields = frozenset(name for name, field in fields.items() if tuple(getattr(field, "shape", None) or ()))
    float_fields: AbstractSet[str] = frozenset()
    if not getattr(reader, "has_transform_spec", False):
        float_fields = frozenset(
            name for name, field in fields.items()
            if getattr(field, "nullable", False) and getattr(field, "codec", None) is not None
            and name not in array_fields and _is_integer(field.numpy_dtype))
    return FieldHints(array_fields, float_fields)


def _is_integer(numpy_dtype: Any) -> bool:
    try:
        return np.dtype(numpy_dtype).kind in "iu"
    except TypeError:
        return False


def check_schema_fields(schema: Any) -> None:
    """Refuse, before any reading, a schema field JAX cannot hold: a string, bytes, Decimal or other
    object dtype, or a variable shape (``None`` in ``UnischemaField.shape``) declared with a codec.

    Called only when no ``transform_fn`` may change the fields. A variable shape without a codec is a plain
    Parquet list column, whose lists often all have one length (embeddings): the reader gives those as a
    ``(rows, length)`` array, and a batch of lists of different lengths is refused, naming the field, when
    it is placed.

    Raises
    ------
    PetastormTypeError
        Naming the first such field, what it holds and how to leave it out or convert it.
    """
    for name, field in schema.fields.items():
        try:
            dtype = np.dtype(field.numpy_dtype)
        except TypeError:
            dtype = np.dtype(object)
        if dtype.kind not in _NUMERIC_KINDS and dtype.kind not in "Mm":
            what = "Decimal values" if field.numpy_dtype is decimal.Decimal else _kind_words(dtype)
            raise PetastormTypeError(f"field {name!r} holds {what}: JAX arrays hold numbers only; {_HOW_TO_FIX}")
        shape = tuple(field.shape or ())
        if any(dim is None for dim in shape) and getattr(field, "codec", None) is not None:
            raise PetastormTypeError(
                f"field {name!r} has a variable shape {shape}: a JAX batch needs one shape per field; pad or crop "
                f"it to a fixed shape in transform_fn, or leave it out with schema_fields=[...] on the reader")


def _object_column_error(name: str, column: np.ndarray) -> PetastormTypeError:
    flat = column.reshape(-1)
    if any(value is None for value in flat):
        return PetastormTypeError(
            f"field {name!r} holds None (a nullable field with missing values in this batch): JAX arrays have no "
            f"missing values; fill them in transform_fn (e.g. with a sentinel and a mask column), or leave the "
            f"field out with schema_fields=[...] on the reader")
    sample = next(iter(flat), None)
    if isinstance(sample, np.ndarray) and len({np.shape(cell) for cell in flat}) == 1 and \
            any(cell is None for cells in flat for cell in np.asarray(cells).reshape(-1)):
        return PetastormTypeError(
            f"field {name!r} holds lists with missing elements (None inside a list): JAX arrays have no missing "
            f"values; fill them in transform_fn (e.g. with a sentinel and a mask column), or leave the field out "
            f"with schema_fields=[...] on the reader")
    return PetastormTypeError(f"field {name!r} holds {_kind_words(column.dtype, sample)}: JAX arrays hold numbers "
                              f"only, one shape per batch; {_HOW_TO_FIX}")


def _as_array(name: str, column: Any) -> Any:
    """A column a ``transform_fn`` returned as a list (or another sequence) as a numpy array."""
    import jax

    if isinstance(column, (np.ndarray, jax.Array)):
        return column
    if column is None:  # numpy would make it a 0-d object array, blamed as "a scalar" or as a null
        raise PetastormTypeError(f"field {name!r} is None, not an array: transform_fn must give every field it "
                                 f"returns an array of the batch's rows; leave a field out of its dict to drop it")
    if isinstance(column, Mapping):  # numpy would make it a 0-d object array, blamed as "a scalar"
        raise PetastormTypeError(f"field {name!r} holds a {type(column).__name__} (a nested batch): make_jax_iterator "
                                 f"places a flat dict of arrays; give its fields names of their own in transform_fn "
                                 f"(e.g. '{name}/...') and nest them again in the training step")
    try:
        return np.asarray(column)
    except (ValueError, TypeError) as error:  # ragged: items of different lengths
        raise PetastormTypeError(f"field {name!r} holds a {type(column).__name__} that is not an array of one shape "
                                 f"({error}): JAX arrays hold numbers only, one shape per batch; "
                                 f"{_HOW_TO_FIX}") from error


def _check_fits_narrow(name: str, column: np.ndarray, what: Optional[str] = None) -> None:
    narrow = _NARROW_INTS.get(column.dtype)
    if narrow is None or column.size == 0:
        return
    info = np.iinfo(narrow)
    low, high = column.min(), column.max()
    if low < info.min or high > info.max:
        raise PetastormSchemaError(
            f"field {name!r} holds {what or column.dtype} values from {low} to {high}, outside {narrow} "
            f"[{info.min}, {info.max}], the type JAX gives them while 64-bit mode is off (they would wrap "
            f"silently): turn it on with jax.config.update('jax_enable_x64', True) before creating arrays, or "
            f"cast the field in transform_fn")


#: numpy types that JAX has no type for (``float128``/``complex256`` where numpy's long double is wider than 64 bits)
_NO_JAX_TYPE = frozenset({np.dtype(np.longdouble), np.dtype(np.clongdouble)}) - \
    {np.dtype(np.float64), np.dtype(np.complex128)}


def _unmasked(name: str, column: np.ma.MaskedArray) -> np.ndarray:
    """The data of a numpy masked array that masks nothing; one that masks values is refused: its mask would be
    dropped, the masked values arriving as whatever the array holds under them."""
    masked = int(np.ma.count_masked(column))
    if masked:
        raise PetastormTypeError(
            f"field {name!r} is a numpy masked array with {masked} masked value{'s' if masked != 1 else ''}: JAX "
            f"arrays have no mask, and the values under it would arrive as data; fill them in transform_fn "
            f"(column.filled(...), with a mask column if the model needs one)")
    return np.ma.getdata(column)


def _as_nanoseconds(name: str, column: np.ndarray) -> np.ndarray:
    """A ``datetime64``/``timedelta64`` column (no NaT) as ``int64`` nanoseconds, refusing the values that int64
    nanoseconds cannot hold: numpy's cast wraps them silently (the sentinel 9999-12-31 became 1816-03-29)."""
    kind = column.dtype.kind
    nanos = column.astype("datetime64[ns]" if kind == "M" else "timedelta64[ns]")
    bad = wrapped_in_nanoseconds(column, nanos)
    if bad.size:
        span = "timestamps from 1677-09-22 to 2262-04-11" if kind == "M" else "durations within 292 years"
        raise PetastormSchemaError(
            f"field {name!r} holds {column.dtype} values that int64 nanoseconds cannot hold ({bad.size} of "
            f"them, such as {bad[0]}): JAX has no time type, so they arrive as int64 nanoseconds ({span}), "
            f"and they would wrap silently; replace them in transform_fn (a sentinel such as 9999-12-31 by "
            f"a value in range and a mask column), or give the field in its own unit there "
            f"(column.view('int64'))")
    return nanos.view(np.int64)


#: The integers a float type holds exactly, whatever their neighbours: up to 2**24 for float32, 2**53 for float64.
_EXACT_INTEGERS = {np.dtype(np.float32): 1 << 24, np.dtype(np.float64): 1 << 53}


def _rounded_integers(column: np.ndarray, filled: np.ndarray, x64: bool) -> list:
    """The integers of ``column`` that its float form ``filled`` rounds (see :func:`_check_integers_fit_float`)."""
    if filled.dtype != np.float64:
        return []
    target = np.dtype(np.float64 if x64 else np.float32)
    present = filled[~np.isnan(filled)]
    if not present.size or np.abs(present).max() < _EXACT_INTEGERS[target]:
        return []  # every integer below the bound is exact (a rounded one would reach the bound)
    if column.dtype.kind in "iu":  # no null in the batch: one vectorised round trip, no Python loop per value
        with np.errstate(invalid="ignore", over="ignore"):  # beyond int64 a round trip wraps: still "rounded"
            rounded = column.astype(target).astype(column.dtype) != column
        return column[rounded].reshape(-1).tolist()
    ints = [int(v) for v in column.reshape(-1).tolist()
            if isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))]
    return [v for v in ints if int(target.type(v)) != v]


def _check_integers_fit_float(name: str, column: np.ndarray, filled: np.ndarray, x64: bool) -> None:
    """Refuse integers (``column``: an integer array, or objects with ``None``) that their float form (``filled``,
    ``float64``) rounds, or that ``float32`` rounds once JAX narrows it (64-bit mode off).

    The comparison is with the integers themselves: ``2**60 + 1`` becomes ``2**60`` in ``float64``, which
    ``float32`` holds exactly, so checking the floats alone let it pass. Per value only for columns holding an
    integer beyond 2**24 (or 2**53).
    """
    rounded = _rounded_integers(column, filled, x64)
    if not rounded:
        return  # floats (narrowed as every JAX user expects), or integers the target holds exactly
    if x64:
        raise PetastormSchemaError(
            f"field {name!r} holds integers that arrive as floats (a nullable integer field: NaN for the nulls); "
            f"{len(rounded)} of them, such as {rounded[0]}, do not fit float64 exactly (integers up to 2**53) and "
            f"would be rounded silently: fill the nulls in transform_fn (e.g. with a sentinel and a mask column), "
            f"or leave the field out with schema_fields=[...] on the reader")
    raise PetastormSchemaError(
        f"field {name!r} holds integers that arrive as floats (a nullable integer field: NaN for the nulls); "
        f"{len(rounded)} of them, such as {rounded[0]}, do not fit float32 exactly (integers up to 2**24), the "
        f"type JAX gives them while 64-bit mode is off (they would be rounded silently): turn it on with "
        f"jax.config.update('jax_enable_x64', True) before creating arrays, or fill the nulls in transform_fn")


def jax_ready_columns(batch: Mapping[str, Any], x64: Optional[bool] = None,
                      hints: FieldHints = FieldHints()) -> Dict[str, Any]:
    """Check a batch of numpy columns and return the columns JAX takes as they are.

    Parameters
    ----------
    batch : mapping of str to np.ndarray, each of shape (rows,) + field shape
    x64 : bool, optional
        Whether JAX keeps 64-bit types (``jax_enable_x64``); read from JAX when None.
    hints : FieldHints
        What the reader's schema says of the fields (none with a ``transform_fn``).

    Returns
    -------
    dict of str to np.ndarray or jax.Array
        The same arrays (``jax.Array`` values made by a ``transform_fn`` pass as they are), except
        big-endian columns, given in native byte order, ``datetime64``/``timedelta64`` columns, given as
        ``int64`` nanoseconds (JAX has no time types; as ``tf_utils`` maps them), and numbers with nulls (and
        the ``hints.float_fields``), given as floats with NaN.

    Raises
    ------
    PetastormTypeError
        A column that is not numeric (strings, bytes, Decimal, dates, None in a field that is not a number, arrays of
        different shapes): the message names the field.
    PetastormSchemaError
        A 64-bit integer column whose values JAX would wrap while 64-bit mode is off.
    """
    if not isinstance(batch, Mapping):
        raise PetastormTypeError(f"a batch must be a dict of field name -> numpy array, got {type(batch).__name__}"
                                 f" (does transform_fn return a dict?)")
    import jax
    import jax.numpy  # noqa: F401 - jax.numpy.issubdtype knows bfloat16 and the float8 types (numpy kind 'V')

    if x64 is None:
        x64 = bool(jax.config.jax_enable_x64)
    if any(not isinstance(column, (np.ndarray, jax.Array)) for column in batch.values()):
        batch = {name: _as_array(name, column) for name, column in batch.items()}
    ensure_aligned(batch, "a batch's columns")
    float_fields = hints.float_fields
    for name, column in batch.items():  # the common case, one cheap test a column: plain numeric arrays
        if type(column) is not np.ndarray or column.dtype.kind not in _NUMERIC_KINDS or \
                (not x64 and column.dtype in _NARROW_INTS) or not column.dtype.isnative or \
                (name in float_fields and column.dtype.kind in "iu") or column.dtype in _NO_JAX_TYPE:
            break
    else:
        return dict(batch)
    out: Dict[str, Any] = {}
    for name, column in batch.items():
        if isinstance(column, jax.Array):  # made by transform_fn on device: JAX types already
            out[name] = column
            continue
        if isinstance(column, np.ma.MaskedArray):
            column = _unmasked(name, column)
        column = np.asarray(column) if not isinstance(column, np.ndarray) else column
        if column.dtype in _NO_JAX_TYPE:
            raise PetastormTypeError(f"field {name!r} holds {column.dtype} values, a type JAX does not have: cast it "
                                     f"to float64 (complex128) or narrower in transform_fn")
        if not column.dtype.isnative:  # big-endian (a field declared '>f4'): JAX takes native byte order only
            column = column.astype(column.dtype.newbyteorder("="))
        kind = column.dtype.kind
        what = None
        if kind in "Mm":
            if np.isnat(column).any():  # as int64, NaT would be the sentinel -2**63 (the year 1677)
                raise PetastormTypeError(
                    f"field {name!r} holds NaT (missing {'timestamps' if kind == 'M' else 'durations'} in this "
                    f"batch): JAX arrays have no missing values; fill them in transform_fn (e.g. with a sentinel "
                    f"and a mask column), or leave the field out with schema_fields=[...] on the reader")
            what = f"{column.dtype} (as int64 nanoseconds)"
            column = _as_nanoseconds(name, column)
        elif kind == "O" and name in hints.array_fields:  # arrays of several shapes, or None
            raise _object_column_error(name, column)
        elif kind in "iu" and name in float_fields:  # a nullable integer: floats in every batch, not only with a null
            filled = column.astype(np.float64)
            if not _rounded_integers(column, filled, x64):
                column = filled
            # else: a batch without a null whose integers a float would round (ids beyond 2**24 with 64-bit mode
            # off) keeps them as integers, exact, as before these fields were floats: nothing in it needs a NaN,
            # and refusing it failed a pass over a nullable-declared field that holds no null at all
        elif kind == "O":
            # numbers with nulls: NaN, as the torch loaders give them; and so every batch of a reader batch that
            # held a null (an object column) is floats, those without the null too
            filled = nullable_numbers_as_nan(column, without_nulls=True)
            if filled is None:
                raise _object_column_error(name, column)
            _check_integers_fit_float(name, column, filled, x64)
            column = filled
        elif kind not in _NUMERIC_KINDS and not (kind == "V" and jax.numpy.issubdtype(column.dtype,
                                                                                     jax.numpy.number)):
            raise PetastormTypeError(f"field {name!r} holds {_kind_words(column.dtype)}: JAX arrays hold numbers "
                                     f"only; {_HOW_TO_FIX}")
        if not x64:
            _check_fits_narrow(name, column, what)
        out[name] = column
    return out
