"""What a Petastorm metadata pickle may name: the exact allow-list of globals, and a static check.

:data:`ALLOWED_GLOBALS` lists every ``(module, name)`` a pickle may name, after Python 2 names are mapped
as ``pickle`` maps them and numpy 1 names as numpy 2 has them (:func:`canonical_global`).
:func:`static_check` walks the opcodes without running anything and refuses a malformed pickle or a
global not on the list before the first object is built; :mod:`petastorm.etl.safe_unpickle` runs what
passes with checked versions of every opcode that calls something.
"""
from __future__ import annotations

import pickletools

from petastorm.errors import PetastormMetadataError

__all__ = ["ALLOWED_GLOBALS", "CODEC_NAMES", "INDEXER_NAMES", "SPARK_TYPE_NAMES", "canonical_global",
           "global_text", "refusal", "static_check"]


_MODULE_RENAMES = {"__builtin__": "builtins", "copy_reg": "copyreg", "numpy.core.multiarray": "numpy._core.multiarray"}
_NAME_RENAMES = {
    ("numpy", "unicode_"): ("numpy", "str_"),
    ("numpy", "string_"): ("numpy", "bytes_"),
    ("numpy", "bool8"): ("numpy", "bool_"),
    ("numpy", "float_"): ("numpy", "float64"),
    ("numpy", "complex_"): ("numpy", "complex128"),
    ("numpy", "object0"): ("numpy", "object_"),
}

_NUMPY_SCALAR_NAMES = (
    "bool_", "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16",
    "float32", "float64", "longdouble", "complex64", "complex128", "clongdouble", "str_", "bytes_", "void",
    "datetime64", "timedelta64", "object_", "intc", "uintc", "int_", "uint", "longlong", "ulonglong", "short",
    "ushort", "byte", "ubyte", "single", "double", "half", "intp", "uintp",
)
CODEC_NAMES = ("ScalarCodec", "NdarrayCodec", "CompressedNdarrayCodec", "CompressedImageCodec")
INDEXER_NAMES = ("SingleFieldIndexer", "FieldNotNullIndexer")
SPARK_TYPE_NAMES = ("NullType", "StringType", "BinaryType", "BooleanType", "DateType", "TimestampType",
                    "TimestampNTZType", "DoubleType", "FloatType", "ByteType", "IntegerType", "LongType",
                    "ShortType", "DecimalType", "ArrayType")

#: Every (module, name) that a metadata pickle may name, after the legacy renames above.
ALLOWED_GLOBALS: frozenset = frozenset(
    [("petastorm.unischema", "Unischema"), ("petastorm.unischema", "UnischemaField")]
    + [("petastorm.codecs", n) for n in CODEC_NAMES]
    + [("petastorm.etl.rowgroup_indexers", n) for n in INDEXER_NAMES]
    + [("pyspark.sql.types", n) for n in SPARK_TYPE_NAMES]
    + [("numpy", n) for n in _NUMPY_SCALAR_NAMES]
    + [("numpy", "dtype"), ("numpy._core.multiarray", "scalar")]
    + [("pyspark.serializers", "_restore"), ("copyreg", "_reconstructor")]
    + [("decimal", "Decimal"), ("collections", "OrderedDict"), ("collections", "defaultdict")]
    + [("builtins", n) for n in ("object", "tuple", "list", "dict", "set", "frozenset", "str", "bytes", "int",
                                 "float", "bool", "complex")]
    + [("_codecs", "encode")]
)


def canonical_global(module: str, name: str, proto: int) -> tuple[str, str]:
    """The (module, name) a global means: Python 2 names mapped as pickle maps them, then legacy renames."""
    if proto < 3:
        import _compat_pickle

        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
    module = _MODULE_RENAMES.get(module, module)
    return _NAME_RENAMES.get((module, name), (module, name))


def global_text(module: str, name: str, canonical: tuple[str, str]) -> str:
    """How a refusal names a pickled global: its canonical dotted name, and the name as written if it differs."""
    written = f"{module}.{name}"
    meant = ".".join(canonical)
    return f"the global {meant}" if written == meant else f"the global {meant} (written as {written})"


def refusal(source: str, what: str, why: str) -> PetastormMetadataError:
    """The error for a refused global, opcode or value: names the source and what was refused."""
    return PetastormMetadataError(
        f"{source}: refused to unpickle {what}: {why}. Petastorm reads metadata pickles with an allow-list "
        f"of schema, codec, Spark type, numpy and collection classes only; nothing from this pickle was run")


def static_check(data: bytes, source: str) -> None:
    """Walk the opcodes without running anything: refuse malformed pickles and disallowed GLOBAL/INST names
    (protocols 0-3 name their globals inline) before the first object is built."""
    try:
        ops = list(pickletools.genops(data))
    except Exception as e:  # noqa: BLE001 - any parse failure means a corrupt pickle
        raise PetastormMetadataError(f"{source}: the pickled metadata is corrupt or truncated ({e})") from None
    proto = ops[0][1] if ops and ops[0][0].name == "PROTO" else 0
    for opcode, arg, _pos in ops:
        if opcode.name in ("GLOBAL", "INST"):
            module, _, name = str(arg).partition(" ")
            canonical = canonical_global(module, name, proto)
            if opcode.name == "INST" or canonical not in ALLOWED_GLOBALS:
                raise refusal(source, global_text(module, name, canonical),
                              "it is not on the allow-list" if opcode.name == "GLOBAL" else "INST is not allowed")
