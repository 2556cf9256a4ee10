"""Mapping between Arrow types, numpy types, Spark SQL types and Unischema fields."""
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
    if pat.is_boolean(arrow_type):
        return np.bool_
    if pat.is_integer(arrow_type) or pat.is_floating(arrow_type):
        return arrow_type.to_pandas_dtype()
    if pat.is_string(arrow_type) or pat.is_large_string(arrow_type) or getattr(pat, "is_string_view", lambda t: False)(arrow_type):
        return np.str_
    if pat.is_binary(arrow_type) or pat.is_large_binary(arrow_type) or pat.is_fixed_size_binary(arrow_type):
        return np.bytes_
    if pat.is_decimal(arrow_type):
        return Decimal
    if pat.is_timestamp(arrow_type) or pat.is_date(arrow_type):
        return np.datetime64
    if pat.is_null(arrow_type):
        return np.object_
    del pa
    raise PetastormSchemaError(f"column {column_name!r} has Arrow type {arrow_type}, which is not supported")


def arrow_field_to_unischema_field(arrow_field: Any) -> Any:
    """A codec-less UnischemaField for an Arrow field: scalars have shape ``()``, lists ``(None,)``,
    lists of lists ``(None, None)``."""
    import pyarrow.types as pat

    from petastorm.unischema import UnischemaField

    t = arrow_field.type
    shape: tuple = ()
    while pat.is_list(t) or pat.is_large_list(t) or pat.is_fixed_size_list(t):
        shape = shape + (None,)
        t = t.value_type
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
    from petastorm.codecs import _dtype_type

    t = _dtype_type(field.numpy_dtype)
    if t is Decimal:
        base = pa.decimal128(38, 18)
    elif t is np.str_:
        base = pa.string()
    elif t is np.bytes_:
        base = pa.binary()
    elif t is np.datetime64:
        base = pa.timestamp("ns")
    else:
        try:
            base = pa.from_numpy_dtype(np.dtype(t))
        except (TypeError, pa.ArrowNotImplementedError) as e:
            raise PetastormSchemaError(f"field {field.name!r}: numpy type {field.numpy_dtype} has no Arrow type") from e
    shape = tuple(field.shape or ())
    for _ in shape:
        base = pa.list_(base)
    return base


def arrow_column_to_numpy(column: Any, field: Any = None) -> np.ndarray:
    """Convert an Arrow column of a native type to numpy.

    Scalars of fixed-width types without nulls come through without a copy where Arrow allows;
    strings, decimals and columns with nulls become object arrays (``None`` for nulls); lists become
    object arrays of 1-D numpy arrays, or a 2-D array when every list has the same length and no nulls.

    Parameters
    ----------
    column : pyarrow.Array or pyarrow.ChunkedArray, length ``rows``
    field : UnischemaField, optional
        When given, numeric values are cast to ``field.numpy_dtype``.

    Returns
    -------
    numpy.ndarray of shape ``(rows,)`` or ``(rows, length)``
    """
    import pyarrow as pa
    import pyarrow.types as pat

    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    t = column.type
    if pat.is_dictionary(t):
        column = column.dictionary_decode()
        t = column.type
    if pat.is_list(t) or pat.is_large_list(t) or pat.is_fixed_size_list(t):
        return _list_column_to_numpy(column, field)
    if column.null_count:
        values = column.to_pylist()
        out = np.empty(len(values), dtype=object)
        if field is not None and field.numpy_dtype not in (Decimal,) and not pat.is_timestamp(t):
            conv = _scalar_converter(field)
            values = [None if v is None else conv(v) for v in values]
        out[:] = values
        return out
    if pat.is_decimal(t) or pat.is_string(t) or pat.is_large_string(t) or pat.is_binary(t) or pat.is_large_binary(t):
        return column.to_numpy(zero_copy_only=False)
    arr = column.to_numpy(zero_copy_only=False)
    if field is not None and arr.dtype.kind in "biuf":
        from petastorm.codecs import _dtype_type

        target = _dtype_type(field.numpy_dtype)
        if target not in (Decimal, np.str_, np.bytes_, np.datetime64, np.object_) and arr.dtype.type is not target:
            arr = arr.astype(target)
    return arr


def _scalar_converter(field: Any):
    from petastorm.codecs import _dtype_type

    t = _dtype_type(field.numpy_dtype)
    if t in (np.str_, np.bytes_, np.object_, np.datetime64):
        return lambda v: v
    return t


def _list_column_to_numpy(column: Any, field: Any) -> np.ndarray:
    import pyarrow as pa

    n = len(column)
    if column.null_count == 0 and n > 0:
        flat = column.flatten()
        if not pa.types.is_list(flat.type) and not pa.types.is_large_list(flat.type) and flat.null_count == 0:
            lengths = np.diff(column.offsets.to_numpy()) if hasattr(column, "offsets") else None
            values = arrow_column_to_numpy(flat, None)
            if lengths is not None and len(lengths) and (lengths == lengths[0]).all() and values.dtype != object:
                return values.reshape(n, int(lengths[0]))
    out = np.empty(n, dtype=object)
    valid = column.is_valid().to_numpy(zero_copy_only=False)
    for i in range(n):
        if not valid[i]:
            out[i] = None
            continue
        item = column[i].values
        out[i] = arrow_column_to_numpy(item, None) if not (pa.types.is_list(item.type) or pa.types.is_large_list(item.type)) \
            else np.array([arrow_column_to_numpy(x.values, None) if x.is_valid else None for x in item], dtype=object)
    return out
