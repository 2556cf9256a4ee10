"""Column checks and conversions applied to a DataFrame before it is cached as Parquet.

- ``float``/``double`` columns (and arrays of them, at any depth) are cast to ``dtype`` (``'float32'`` by
  default, ``'float64'``; ``None`` keeps them as they are);
- Spark ML ``Vector`` columns become arrays (``pyspark.ml.functions.vector_to_array``) of ``dtype``
  (``float64`` when ``dtype`` is None: the original failed there);
- map and struct columns (and arrays of them) are refused: the readers cannot load them.

Only public DataFrame / Column APIs (``select``, ``cast``, ``vector_to_array``): Spark Connect serves them.
"""
from __future__ import annotations

import logging
from typing import Any, List, Optional, Tuple

from petastorm.errors import CompressionCodecError, PetastormArgumentError, PetastormTypeError

__all__ = [
    "CompressionCodecError",
    "check_compression_codec",
    "check_dtype",
    "check_row_group_size",
    "check_supported_columns",
    "columns_to_convert",
    "convert_columns",
]

logger = logging.getLogger("petastorm.spark.spark_dataset_converter")

_DTYPES = (None, "float32", "float64")
# Parquet codecs Spark writes (spark.sql.parquet.compression.codec); 'none' is 'uncompressed'
_CODECS = ("uncompressed", "none", "snappy", "gzip", "lzo", "brotli", "lz4", "lz4_raw", "zstd")


def check_dtype(dtype: Any) -> Optional[str]:
    """``dtype`` checked: ``'float32'``, ``'float64'`` or None (numpy dtypes of those are accepted)."""
    if dtype is not None and not isinstance(dtype, str):
        try:
            import numpy as np

            dtype = np.dtype(dtype).name
        except TypeError:
            pass
    if dtype not in _DTYPES:
        raise PetastormArgumentError(f"dtype must be 'float32', 'float64' or None, got {dtype!r}")
    return dtype


def check_compression_codec(codec: Any) -> str:
    """The codec Spark is asked for: None -> ``'uncompressed'`` (as the original wrote), else lower-cased.

    Raises
    ------
    CompressionCodecError
        Naming the accepted values.
    """
    if codec is None:
        return "uncompressed"
    if not isinstance(codec, str) or codec.lower() not in _CODECS:
        allowed = ", ".join(repr(c) for c in _CODECS)
        raise CompressionCodecError(
            f"compression_codec should be None or one of the following values: {allowed}; got {codec!r}")
    return codec.lower()


def check_row_group_size(size: Any) -> int:
    """``parquet_row_group_size_bytes`` as a positive int (bytes)."""
    if isinstance(size, bool) or not hasattr(size, "__index__"):
        raise PetastormArgumentError(f"parquet_row_group_size_bytes must be a positive integer (bytes), got {size!r}")
    size = int(size.__index__())
    if size <= 0:
        raise PetastormArgumentError(f"parquet_row_group_size_bytes must be a positive integer (bytes), got {size}")
    return size


def _is_vector(data_type: Any) -> bool:
    """A Spark ML / MLlib ``VectorUDT`` (by class name: both packages define one)."""
    from pyspark.sql.types import UserDefinedType

    return isinstance(data_type, UserDefinedType) and type(data_type).__name__ == "VectorUDT"


def _unsupported_part(data_type: Any) -> Optional[Any]:
    """The part of ``data_type`` the readers cannot load (a map, a struct), or None."""
    from pyspark.sql.types import ArrayType, MapType, StructType

    if _is_vector(data_type):
        return None
    if isinstance(data_type, (MapType, StructType)):
        return data_type
    if isinstance(data_type, ArrayType):
        inner = data_type.elementType
        if _is_vector(inner):
            return data_type  # an array of vectors: vector_to_array does not reach inside arrays
        return _unsupported_part(inner)
    return None


def check_supported_columns(schema: Any) -> None:
    """Refuse columns the readers cannot load.

    Raises
    ------
    PetastormTypeError
        (A ``TypeError``.) Naming the column and its Spark type, e.g. ``column 'm' has the unsupported
        type map<string,int>``.
    """
    for field in schema.fields:
        bad = _unsupported_part(field.dataType)
        if bad is not None:
            raise PetastormTypeError(
                f"make_spark_converter: column {field.name!r} has the unsupported type "
                f"{field.dataType.simpleString()}: map, struct and array-of-vector columns cannot be read by "
                f"the torch / tf loaders; drop the column or convert it (e.g. to an array or to several "
                f"columns) first")


def _float_target(data_type: Any, dtype: str) -> Optional[Any]:
    """``data_type`` with its float/double leaves (inside arrays) turned into ``dtype``; None when nothing
    changes."""
    from pyspark.sql.types import ArrayType, DoubleType, FloatType

    target = FloatType() if dtype == "float32" else DoubleType()
    if isinstance(data_type, (FloatType, DoubleType)):
        return None if type(data_type) is type(target) else target
    if isinstance(data_type, ArrayType):
        inner = _float_target(data_type.elementType, dtype)
        return None if inner is None else ArrayType(inner, data_type.containsNull)
    return None


def columns_to_convert(schema: Any, dtype: Optional[str]) -> List[str]:
    """Names of the columns :func:`convert_columns` changes (vectors; floats not already ``dtype``).

    Raises
    ------
    PetastormTypeError
        As :func:`check_supported_columns`.
    """
    check_supported_columns(schema)
    return [f.name for f in schema.fields
            if _is_vector(f.dataType) or (dtype is not None and _float_target(f.dataType, dtype) is not None)]


def convert_columns(df: Any, dtype: Optional[str]) -> Tuple[Any, List[str]]:
    """The DataFrame to cache: floats cast to ``dtype``, vectors as arrays.

    Parameters
    ----------
    df : pyspark.sql.DataFrame
    dtype : 'float32', 'float64' or None

    Returns
    -------
    (DataFrame, list of str)
        The converted DataFrame (``df`` itself when nothing changes) and the names of the converted columns.
    """
    from pyspark.sql.functions import col

    changed = columns_to_convert(df.schema, dtype)
    if not changed:
        return df, []
    columns = []
    for field in df.schema.fields:
        column = col(_quoted(field.name))
        if field.name not in changed:
            columns.append(column)
        elif _is_vector(field.dataType):
            from pyspark.ml.functions import vector_to_array

            columns.append(vector_to_array(column, dtype or "float64").alias(field.name))
        else:
            columns.append(column.cast(_float_target(field.dataType, dtype)).alias(field.name))
    if dtype is not None:
        logger.warning("Converting floating-point columns to %s", dtype)
    return df.select(*columns), changed


def _quoted(name: str) -> str:
    """A column name quoted for ``col()`` (names with dots or backticks)."""
    return "`" + name.replace("`", "``") + "`"
