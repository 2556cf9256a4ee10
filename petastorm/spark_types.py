"""Spark SQL types without a JVM: stand-ins for ``pyspark.sql.types``, and the real types on request.

Codecs carry a Spark type (``ScalarCodec(LongType())``) and the metadata that old datasets carry pickles
them as ``pyspark.sql.types.*``. A reader must not need pyspark: schemas *loaded* from a dataset's metadata
hold the stand-in classes below (same class names, same constructor arguments, same
``typeName()``/``simpleString()``, and the same ``__dict__`` layout as pyspark's, so that a pickle round
trip keeps working both ways), whether pyspark is installed or not. Reading a dataset therefore never
imports pyspark (0.1 s in the reader and in every process-pool worker); ``ScalarCodec.spark_dtype()`` and
``Unischema.as_spark_schema()`` hand out the real pyspark types (:func:`to_pyspark`) when pyspark is there.
A stand-in equals the pyspark type of the same name and parameters (``standin == LongType()``), but
pyspark's own ``__eq__`` checks the class (``LongType() == standin`` is False): compare through
``spark_dtype()``, or with the stand-in on the left.
"""
from __future__ import annotations

import functools
import importlib.util
from typing import Any

__all__ = ["spark_type", "spark_type_class", "spark_type_name", "pyspark_available", "STANDIN_TYPES", "standin_type",
           "to_pyspark", "scalar_spark_type"]


@functools.lru_cache(maxsize=1)
def pyspark_available() -> bool:
    """True when ``pyspark.sql.types`` can be imported (the import itself happens lazily, once)."""
    if importlib.util.find_spec("pyspark") is None:
        return False
    try:
        import pyspark.sql.types  # noqa: F401
    except Exception:  # pragma: no cover - broken pyspark install
        return False
    return True


class _StandInType:
    """Base of the stand-in Spark types (used only when pyspark is absent)."""

    __module__ = "petastorm.spark_types"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if args or kwargs:
            raise TypeError(f"{type(self).__name__}() takes no arguments")

    @classmethod
    def typeName(cls) -> str:  # noqa: N802 - pyspark's name
        return cls.__name__[:-4].lower()

    def simpleString(self) -> str:  # noqa: N802 - pyspark's name
        return self.typeName()

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def __eq__(self, other: object) -> bool:
        return type(other).__name__ == type(self).__name__ and vars(other) == vars(self)

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(sorted(vars(self).items(), key=lambda kv: kv[0]))))

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state or {})


def _simple(name: str, type_name: str, simple: str | None = None) -> type:
    attrs = {
        "typeName": classmethod(lambda cls: type_name),
        "simpleString": (lambda self: simple or type_name),
    }
    return type(name, (_StandInType,), attrs)


NullType = _simple("NullType", "void")
StringType = _simple("StringType", "string")
BinaryType = _simple("BinaryType", "binary")
BooleanType = _simple("BooleanType", "boolean")
DateType = _simple("DateType", "date")
TimestampType = _simple("TimestampType", "timestamp")
TimestampNTZType = _simple("TimestampNTZType", "timestamp_ntz")
DoubleType = _simple("DoubleType", "double")
FloatType = _simple("FloatType", "float")
ByteType = _simple("ByteType", "byte", "tinyint")
IntegerType = _simple("IntegerType", "integer", "int")
LongType = _simple("LongType", "long", "bigint")
ShortType = _simple("ShortType", "short", "smallint")


class DecimalType(_StandInType):
    """Stand-in for ``pyspark.sql.types.DecimalType(precision, scale)``."""

    def __init__(self, precision: int = 10, scale: int = 0) -> None:
        self.precision = precision
        self.scale = scale
        self.hasPrecisionInfo = True  # noqa: N815 - pyspark's attribute name

    @classmethod
    def typeName(cls) -> str:  # noqa: N802
        return "decimal"

    def simpleString(self) -> str:  # noqa: N802
        return f"decimal({self.precision},{self.scale})"

    def __repr__(self) -> str:
        return f"DecimalType({self.precision},{self.scale})"


class ArrayType(_StandInType):
    """Stand-in for ``pyspark.sql.types.ArrayType(elementType, containsNull)``."""

    def __init__(self, elementType: Any = None, containsNull: bool = True) -> None:  # noqa: N803
        self.elementType = elementType  # noqa: N815
        self.containsNull = containsNull  # noqa: N815

    @classmethod
    def typeName(cls) -> str:  # noqa: N802
        return "array"

    def simpleString(self) -> str:  # noqa: N802
        return f"array<{self.elementType.simpleString()}>"

    def __repr__(self) -> str:
        return f"ArrayType({self.elementType!r}, {self.containsNull})"


STANDIN_TYPES: dict[str, type] = {
    cls.__name__: cls
    for cls in (NullType, StringType, BinaryType, BooleanType, DateType, TimestampType, TimestampNTZType,
                DoubleType, FloatType, ByteType, IntegerType, LongType, ShortType, DecimalType, ArrayType)
}


def spark_type_class(name: str) -> type:
    """The class named ``name`` from ``pyspark.sql.types`` when pyspark is installed, else its stand-in.

    Raises
    ------
    KeyError
        If ``name`` is not a Spark SQL type this module knows.
    """
    if name not in STANDIN_TYPES:
        raise KeyError(name)
    if pyspark_available():
        import pyspark.sql.types as pst

        return getattr(pst, name)
    return STANDIN_TYPES[name]


def spark_type(name: str, *args: Any) -> Any:
    """An instance of the Spark SQL type ``name`` (``'LongType'``, ``'DecimalType'``...)."""
    return spark_type_class(name)(*args)


def spark_type_name(spark_type_obj: Any) -> str:
    """Class name of a Spark type instance, pyspark's or a stand-in (``'LongType'``)."""
    return type(spark_type_obj).__name__


def standin_type(name: str, *args: Any) -> Any:
    """An instance of petastorm's stand-in for the Spark SQL type ``name`` (never imports pyspark).

    Raises
    ------
    KeyError
        If ``name`` is not a Spark SQL type this module knows.
    """
    return STANDIN_TYPES[name](*args)


def to_pyspark(obj: Any) -> Any:
    """``obj`` as a real ``pyspark.sql.types`` instance when it is a stand-in and pyspark is installed
    (element types of an ``ArrayType`` too); anything else is returned unchanged."""
    if not isinstance(obj, _StandInType) or not pyspark_available():
        return obj
    import pyspark.sql.types as pst

    cls = getattr(pst, type(obj).__name__)
    if isinstance(obj, ArrayType):
        return cls(to_pyspark(obj.elementType), obj.containsNull)
    if isinstance(obj, DecimalType):
        return cls(obj.precision, obj.scale)
    return cls()


#: Spark SQL type of a scalar field without a codec, by the name of its numpy scalar type: the original's
#: table (``bytes_`` included: StringType, as there), plus the types it could not map (``uint32``,
#: ``datetime64``, ``Decimal``), which it refused.
_SCALAR_SPARK_TYPES = {
    "int8": ("ByteType",), "uint8": ("ShortType",), "int16": ("ShortType",), "uint16": ("IntegerType",),
    "int32": ("IntegerType",), "int64": ("LongType",), "float32": ("FloatType",), "float64": ("DoubleType",),
    "bool": ("BooleanType",), "str_": ("StringType",), "bytes_": ("StringType",),
    "uint32": ("LongType",), "datetime64": ("TimestampType",), "Decimal": ("DecimalType", 38, 18),
}


def scalar_spark_type(numpy_dtype: Any) -> Any:
    """The Spark SQL type (pyspark's when installed) of a scalar field of ``numpy_dtype`` without a codec,
    or None when there is none (``uint64``, ``float16``, ``complex``, ``object``, ``timedelta64``...).

    ``numpy_dtype`` is a numpy scalar type, a ``numpy.dtype``, ``str``/``bytes``/``int``/``float``/``bool``
    (as numpy reads them) or ``decimal.Decimal``.
    """
    from decimal import Decimal

    import numpy as np

    if numpy_dtype is Decimal:
        key = "Decimal"
    else:
        try:
            key = np.dtype(numpy_dtype).type.__name__
        except TypeError:
            return None
    args = _SCALAR_SPARK_TYPES.get(key)
    return None if args is None else to_pyspark(spark_type(*args))
