"""Mapping between Arrow types, numpy types, Spark SQL types and Unischema fields.

:func:`arrow_column_to_numpy` runs once per column of every row group a reader reads: a numeric column
without nulls (the common case) is recognised by its Arrow type id in one dict look-up and viewed in place
before any other type test (3 us instead of 6 per column, about 60 us less per row group of 20 columns).
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any

import numpy as np

from petastorm.errors import PetastormSchemaError
from petastorm.spark_types import spark_type_name

__all__ = [
    "arrow_field_to_unischema_field",
    "arrow_type_for_field",
    "arrow_type_for_spark_type",
    "arrow_column_to_numpy",
    "numpy_type_for_arrow_type",
    "partition_field_names",
]


def numpy_type_for_arrow_type(arrow_type: Any, column_name: str = "?") -> Any:
    """numpy scalar type (or ``Decimal``) for a non-nested Arrow type.

    Raises
    ------
    PetastormSchemaError
        Naming the column and the type, when the type has no numpy equivalent.
    """
    import pyarrow as pa
    import pyarrow.types as pat

    if pat.is_dictionary(arrow_type):
        return numpy_type_for_arrow_type(arrow_type.value_type, column_name)
    if isinstance(arrow_type, pa.BaseExtensionType):  # e.g. arrow.uuid: the values of its storage type
        return numpy_type_for_arrow_type(arrow_type.storage_type, column_name)
    if pat.is_boolean(arrow_type):
        return np.bool_
    if pat.is_integer(arrow_type) or pat.is_floating(arrow_type):
        return arrow_type.to_pandas_dtype()
    if pat.is_string(arrow_type) or pat.is_large_string(arrow_type) or pat.is_string_view(arrow_type):
        return np.str_
    if pat.is_binary(arrow_type) or pat.is_large_binary(arrow_type) or pat.is_fixed_size_binary(arrow_type) \
            or pat.is_binary_view(arrow_type):
        return np.bytes_
    if pat.is_decimal(arrow_type):
        return Decimal
    if pat.is_timestamp(arrow_type) or pat.is_date(arrow_type):
        return np.datetime64
    if pat.is_duration(arrow_type):
        return np.timedelta64
    if pat.is_null(arrow_type):
        return np.object_
    raise PetastormSchemaError(f"column {column_name!r} has Arrow type {arrow_type}, which is not supported")


def arrow_field_to_unischema_field(arrow_field: Any) -> Any:
    """A codec-less UnischemaField for an Arrow field: scalars have shape ``()``, lists ``(None,)``,
    lists of lists ``(None, None)``."""
    import pyarrow.types as pat

    from petastorm.unischema import UnischemaField

    t = _storage_type(arrow_field.type)
    shape: tuple = ()
    while _is_list_type(t):
        shape = shape + (None,)
        t = _storage_type(t.value_type)
    if pat.is_struct(t) or pat.is_map(t) or pat.is_union(t):
        raise PetastormSchemaError(f"column {arrow_field.name!r} has Arrow type {arrow_field.type}, which is "
                                   f"not supported (struct/map/union columns)")
    numpy_type = numpy_type_for_arrow_type(t, arrow_field.name)
    return UnischemaField(arrow_field.name, numpy_type, shape, None, bool(arrow_field.nullable))


def partition_field_names(dataset: Any) -> list[str]:
    """Names of the Hive partition columns of a ``pyarrow.dataset.Dataset`` or ``ParquetDataset``."""
    partitioning = getattr(dataset, "partitioning", None)
    schema = getattr(partitioning, "schema", None)
    return list(schema.names) if schema is not None else []


_SPARK_TO_ARROW = {
    "ByteType": "int8", "ShortType": "int16", "IntegerType": "int32", "LongType": "int64",
    "FloatType": "float32", "DoubleType": "float64", "BooleanType": "bool_", "StringType": "string",
    "BinaryType": "binary", "DateType": "date32",
}


def arrow_type_for_spark_type(spark_type: Any, field: Any = None) -> Any:
    """Arrow type that Spark writes for a Spark SQL type (``LongType`` -> ``int64``...)."""
    import pyarrow as pa

    name = spark_type_name(spark_type)
    if name in _SPARK_TO_ARROW:
        return getattr(pa, _SPARK_TO_ARROW[name])()
    if name == "DecimalType":
        return pa.decimal128(spark_type.precision, spark_type.scale)
    if name in ("TimestampType", "TimestampNTZType"):
        return pa.timestamp("us", tz="UTC" if name == "TimestampType" else None)
    if name == "ArrayType":
        return pa.list_(arrow_type_for_spark_type(spark_type.elementType, field))
    fname = getattr(field, "name", "?")
    raise PetastormSchemaError(f"field {fname!r}: Spark type {spark_type!r} has no Arrow mapping")


def arrow_type_for_field(field: Any) -> Any:
    """Arrow type of the Parquet column that stores a Unischema field."""
    import pyarrow as pa

    if field.codec is not None:
        return field.codec.arrow_type(field)
    from petastorm.codecs import dtype_type

    t = dtype_type(field.numpy_dtype)
    if t is Decimal:
        base = pa.decimal128(38, 18)
    elif t is np.str_:
        base = pa.string()
    elif t is np.bytes_:
        base = pa.binary()
    elif t is np.datetime64:
        base = pa.timestamp("ns")
    elif t is np.timedelta64:
        base = pa.duration("ns")
    else:
        try:
            base = pa.from_numpy_dtype(np.dtype(t))
        except (TypeError, pa.ArrowNotImplementedError) as e:
            raise PetastormSchemaError(f"field {field.name!r}: numpy type {field.numpy_dtype} has no Arrow type") from e
    shape = tuple(field.shape or ())
    for _ in shape:
        base = pa.list_(base)
    return base


def _floating_field(field: Any) -> bool:
    """A field of a float numpy type, declared as a type (``np.float32``) or a dtype (``np.dtype('>f4')``)."""
    from petastorm.codecs import dtype_type

    t = dtype_type(field.numpy_dtype)
    return isinstance(t, type) and issubclass(t, np.floating)


def arrow_column_to_numpy(column: Any, field: Any = None) -> np.ndarray:
    """Convert an Arrow column of a native type to numpy.

    - Integers, floats and booleans without nulls come through without a copy where Arrow allows
      (cast to ``field.numpy_dtype`` when a field is given and its type differs).
    - Timestamps and dates become ``datetime64`` arrays in the column's unit (``[D]`` for ``date32``,
      ``[ms]`` for ``date64``); nulls become ``NaT``. Time-zone-aware timestamps hold the UTC instant.
    - Durations become ``timedelta64`` arrays (nulls ``NaT``).
    - Strings, binaries and decimals become object arrays of ``str``, ``bytes`` and ``Decimal``.
    - Floats with nulls stay float arrays with NaN for the nulls (as 0.12.1 gave them); other scalar columns
      with nulls become object arrays with ``None`` for the nulls.
    - Dictionary-encoded columns are decoded first; extension columns (``arrow.uuid``...) give the values of
      their storage type (``bytes`` for a uuid); list views read as lists, string and binary views as strings.
    - With ``field``: a column of another type than the field's (files of a dataset that disagree) is cast only
      where no value changes; else :class:`~petastorm.errors.PetastormSchemaError` names the field (an ``int64``
      value that ``int32`` cannot hold wrapped, a float that ``float32`` cannot hold became ``inf``, strings
      came through a number field).
    - Lists: a ``(rows, length)`` array (``(rows, n, m)`` for lists of lists...) when every list of the
      column has the same length and neither lists nor values are null; otherwise an object array of
      ``rows`` items, each a 1-D array of the row's values (``None`` for a null list). A row of a
      list of lists is then a 1-D object array of 1-D arrays, whatever the lengths.

    Parameters
    ----------
    column : pyarrow.Array or pyarrow.ChunkedArray, length ``rows``
    field : UnischemaField, optional
        When given, numeric values are cast to ``field.numpy_dtype``.

    Returns
    -------
    numpy.ndarray of shape ``(rows,)`` or ``(rows, length, ...)``
    """
    import pyarrow as pa
    import pyarrow.types as pat

    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    t = column.type
    dtype = (_FIXED_WIDTH or _fixed_width_dtypes()).get(t.id)
    if dtype is not None and not column.null_count:
        # the common case first, with no type tests: a view of the values buffer (Array.to_numpy() imports
        # pandas, about 1 s in every fresh process)
        arr = np.frombuffer(column.buffers()[1], dtype=dtype, count=len(column), offset=column.offset * dtype.itemsize)
        if field is None or field.numpy_dtype is dtype.type:
            return arr
        return _cast_to_field(arr, field)
    if pat.is_dictionary(t):
        column = column.dictionary_decode()
        t = column.type
    if isinstance(t, pa.BaseExtensionType):
        column = column.storage
        t = column.type
    if field is not None:
        _ensure_column_fits_field(t, field)
    if _is_list_type(t):
        return _list_column_to_numpy(column, regular=True)
    if pat.is_timestamp(t) or pat.is_date(t) or pat.is_duration(t):
        return column.to_numpy(zero_copy_only=False)  # NaT for nulls
    if column.null_count and pat.is_floating(t) and (field is None or _floating_field(field)):
        # NaN for the nulls, as 0.12.1 gave them (recorded: float32 [1.5, nan, 2.5] from make_batch_reader, NaN of
        # the field's type in make_reader's rows): a float column stays a float array
        arr = column.to_numpy(zero_copy_only=False)
        return _cast_to_field(arr, field) if field is not None else arr
    if column.null_count and field is not None and _is_number_type(t) and _number_field(field):
        out = np.empty(len(column), dtype=object)  # None for the nulls, the others as numpy scalars of the field
        out[column.is_valid().to_numpy(zero_copy_only=False)] = list(
            _cast_to_field(column.drop_null().to_numpy(zero_copy_only=False), field))
        return out
    if column.null_count:
        values = column.to_pylist()
        out = np.empty(len(values), dtype=object)
        if field is not None and field.numpy_dtype not in (Decimal,):
            conv = _scalar_converter(field)
            values = [None if v is None else conv(v) for v in values]
        out[:] = values
        return out
    if pat.is_decimal(t) or pat.is_string(t) or pat.is_large_string(t) or pat.is_binary(t) or pat.is_large_binary(t) \
            or pat.is_string_view(t) or pat.is_binary_view(t):
        return column.to_numpy(zero_copy_only=False)
    arr = column.to_numpy(zero_copy_only=False)  # booleans (numbers without nulls took the first branch)
    return _cast_to_field(arr, field) if field is not None else arr


#: Arrow type id -> numpy dtype of the fixed-width numeric types whose values buffer numpy can view as it is
#: (filled on first use: pyarrow is imported lazily).
_FIXED_WIDTH: dict = {}


def _fixed_width_dtypes() -> dict:
    import pyarrow as pa

    for t in (pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.uint8(), pa.uint16(), pa.uint32(), pa.uint64(),
              pa.float16(), pa.float32(), pa.float64()):
        _FIXED_WIDTH[t.id] = np.dtype(t.to_pandas_dtype())
    return _FIXED_WIDTH


def _cast_to_field(arr: np.ndarray, field: Any) -> np.ndarray:
    """``arr`` (numbers or booleans) cast to ``field.numpy_dtype`` when that is another number type.

    Raises
    ------
    PetastormSchemaError
        Naming the field, when the cast would change a value: an integer out of the field's range (it would
        wrap), a float with a fraction into an integer field, a finite float that becomes ``inf``.
    """
    if arr.dtype.kind not in "biuf":
        return arr
    from petastorm.codecs import dtype_type

    target = dtype_type(field.numpy_dtype)
    if target in (np.str_, np.bytes_):
        raise PetastormSchemaError(
            f"field {field.name!r} is {np.dtype(target).name} but a file holds it as {arr.dtype.name}: {_DISAGREE}")
    if target in (Decimal, np.datetime64, np.timedelta64, np.object_) or arr.dtype.type is target:
        return arr
    with np.errstate(over="ignore", invalid="ignore"):
        out = arr.astype(target)
    if not np.can_cast(arr.dtype, out.dtype, "safe"):
        changed = _changed_by_cast(arr, out)
        if changed.any():
            raise PetastormSchemaError(
                f"field {field.name!r} is {out.dtype.name} but a file holds it as {arr.dtype.name}, with values that "
                f"{out.dtype.name} cannot hold (e.g. {arr[changed][0].tolist()!r}): {_DISAGREE}")
    return out


def _changed_by_cast(arr: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Where casting ``arr`` to ``out`` changed a value, as a boolean array of ``arr``'s shape: an integer out of
    range (it wrapped), a float with a fraction or out of range cast to an integer, a finite float become
    ``inf``, a number other than 0 and 1 cast to bool. Floats losing precision in a narrower float type count as
    kept."""
    if out.dtype.kind == "b":
        return (arr != 0) & (arr != 1)
    if out.dtype.kind == "f":
        return np.isinf(out) & np.isfinite(arr)
    if arr.dtype.kind in "biu":
        info = np.iinfo(out.dtype)
        return (arr < info.min) | (arr > info.max)
    with np.errstate(over="ignore", invalid="ignore"):
        return out.astype(arr.dtype) != arr  # float -> integer: NaN compares unequal too


#: numpy types of the Unischema fields whose values are numbers (booleans included).
_NUMBER_KINDS = "biuf"
_DISAGREE = ("the files of the dataset disagree on its type (the reader's schema comes from one of them); "
             "leave the field out with schema_fields, or read the files that agree")


def _ensure_column_fits_field(arrow_type: Any, field: Any) -> None:
    """Refuse a column of strings or bytes read for a number field, numbers for a string or bytes field, or lists
    for a scalar field (files of a dataset that disagree on a column's type: the values would come through uncast).

    Raises
    ------
    PetastormSchemaError
        Naming the field, its type and the column's Arrow type.
    """
    from petastorm.codecs import dtype_type

    if _is_list_type(arrow_type) and not tuple(field.shape or ()):
        raise PetastormSchemaError(
            f"field {field.name!r} is a scalar but a file holds it as Arrow {arrow_type}: {_DISAGREE}")
    while _is_list_type(arrow_type):
        arrow_type = _storage_type(arrow_type.value_type)
    target = dtype_type(field.numpy_dtype)
    if target in (Decimal, np.datetime64, np.timedelta64, np.object_) or not isinstance(target, type):
        return
    try:
        stored = numpy_type_for_arrow_type(arrow_type, field.name)
    except PetastormSchemaError:
        return
    is_text, stored_is_text = target in (np.str_, np.bytes_), stored in (np.str_, np.bytes_)
    if (not is_text and stored_is_text) or (is_text and _is_number_numpy_type(stored)):
        raise PetastormSchemaError(
            f"field {field.name!r} is {np.dtype(target).name} but a file holds it as Arrow {arrow_type}: {_DISAGREE}")


def _is_list_type(t: Any) -> bool:
    import pyarrow.types as pat

    return pat.is_list(t) or pat.is_large_list(t) or pat.is_fixed_size_list(t) or pat.is_list_view(t) \
        or pat.is_large_list_view(t)


def _storage_type(t: Any) -> Any:
    """An extension type's storage type (``fixed_size_binary[16]`` for ``arrow.uuid``); other types as they are."""
    import pyarrow as pa

    return t.storage_type if isinstance(t, pa.BaseExtensionType) else t


def _is_number_type(t: Any) -> bool:
    import pyarrow.types as pat

    return pat.is_integer(t) or pat.is_floating(t) or pat.is_boolean(t)


def _number_field(field: Any) -> bool:
    """Whether a field's numpy type is a number or bool type (``np.int32``, ``np.dtype('>f4')``...)."""
    from petastorm.codecs import dtype_type

    return _is_number_numpy_type(dtype_type(field.numpy_dtype))


def _is_number_numpy_type(t: Any) -> bool:
    return isinstance(t, type) and issubclass(t, np.generic) and np.dtype(t).kind in _NUMBER_KINDS


def _scalar_converter(field: Any):
    from petastorm.codecs import dtype_type

    t = dtype_type(field.numpy_dtype)
    if t in (np.str_, np.bytes_, np.object_, np.datetime64, np.timedelta64):
        return lambda v: v
    return t


def _list_column_to_numpy(column: Any, regular: bool) -> np.ndarray:
    """A list column -> numpy, one pass over the flattened values (no per-row Arrow scalars).

    With ``regular``, a column whose lists all have one length (no null lists, no null values) becomes a
    ``(rows, length, ...)`` array; otherwise an object array of per-row arrays.
    """
    import pyarrow.compute as pc

    n = len(column)
    lengths = pc.list_value_length(column).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    child = column.flatten()  # this column's values only: honours slicing, skips null lists
    if regular and n and column.null_count == 0 and (lengths == lengths[0]).all():
        values = (_list_column_to_numpy(child, regular=True) if _is_list_type(child.type)
                  else arrow_column_to_numpy(child, None))
        if values.dtype != object:
            return values.reshape((n, int(lengths[0])) + values.shape[1:])
    values = (_list_column_to_numpy(child, regular=False) if _is_list_type(child.type)
              else arrow_column_to_numpy(child, None))
    out = np.empty(n, dtype=object)
    ends = np.cumsum(lengths)
    starts = ends - lengths
    valid = (column.is_valid().to_numpy(zero_copy_only=False) if column.null_count
             else np.ones(n, dtype=bool))
    for i in range(n):
        out[i] = values[starts[i]:ends[i]] if valid[i] else None
    return out
