"""A Unischema as JSON: petastorm's own metadata key, read before the pickle.

JSON cannot run code, so a reader that finds this key never touches the pickle. The document::

    {"format": "petastorm.unischema.json.v1",
     "name": "HelloWorldSchema",
     "fields": [
        {"name": "id", "dtype": "numpy.int64", "shape": [], "nullable": false,
         "codec": {"type": "ScalarCodec", "spark_type": {"type": "LongType"}}},
        {"name": "image", "dtype": "numpy.uint8", "shape": [128, 256, 3], "nullable": false,
         "codec": {"type": "CompressedImageCodec", "image_codec": "png", "quality": 80}},
        {"name": "matrix", "dtype": "numpy.float32", "shape": [null, 3], "nullable": true,
         "codec": {"type": "NdarrayCodec"}},
        {"name": "price", "dtype": "decimal.Decimal", "shape": [], "nullable": false,
         "codec": {"type": "ScalarCodec", "spark_type": {"type": "DecimalType", "precision": 10, "scale": 9}}},
        {"name": "ts", "dtype": "dtype:<M8[ns]", "shape": [], "nullable": false, "codec": null}]}

``dtype`` is ``numpy.<scalar type>`` (a numpy scalar class such as ``numpy.str_``), ``decimal.Decimal``,
``builtins.<str|bytes|int|float|bool>`` (a Python type), or ``dtype:<numpy dtype string>`` (a
``numpy.dtype`` instance such as ``datetime64[ns]``): each loads back to the very object it was written from.
"""
from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import numpy as np

from petastorm.errors import PetastormMetadataError, PetastormSchemaError
from petastorm.etl.untrusted_values import (
    UntrustedValueError,
    describe_untrusted,
    is_plain_dtype,
    plain_dtype,
)

__all__ = ["UNISCHEMA_JSON_FORMAT", "unischema_to_json", "unischema_from_json", "rebuild_unischema"]

UNISCHEMA_JSON_FORMAT = "petastorm.unischema.json.v1"

_MAX_INT = (1 << 63) - 1          # dimensions, precisions: what numpy and Arrow can hold
_MAX_ARRAY_NESTING = 32           # ArrayType(ArrayType(...)) levels

_PY_TYPES = {"str": str, "bytes": bytes, "int": int, "float": float, "bool": bool}
_CODECS = ("ScalarCodec", "NdarrayCodec", "CompressedNdarrayCodec", "CompressedImageCodec")


# --- writing --------------------------------------------------------------------------------------------------

def _dtype_to_json(dtype: Any, field_name: str) -> str:
    if dtype is Decimal:
        return "decimal.Decimal"
    for name, py_type in _PY_TYPES.items():
        if dtype is py_type:
            return f"builtins.{name}"
    if isinstance(dtype, type) and issubclass(dtype, np.generic):
        name = dtype.__name__
        if getattr(np, name, None) is not dtype:
            name = np.dtype(dtype).name
        if getattr(np, name, None) is dtype:
            return f"numpy.{name}"
    if is_plain_dtype(dtype):
        return f"dtype:{dtype.str}"
    raise PetastormSchemaError(
        f"field {field_name!r}: numpy_dtype {describe_untrusted(dtype)} cannot be stored in the JSON schema")


def _spark_type_to_json(spark_type: Any, field_name: str, depth: int = 0) -> dict:
    from petastorm.spark_types import STANDIN_TYPES, spark_type_name

    name = spark_type_name(spark_type)
    if name not in STANDIN_TYPES or depth > _MAX_ARRAY_NESTING:
        raise PetastormSchemaError(
            f"field {field_name!r}: Spark type {describe_untrusted(spark_type)} cannot be stored in the JSON schema")
    doc: dict = {"type": name}
    if name == "DecimalType":
        doc.update(precision=_count(spark_type.precision), scale=_count(spark_type.scale))
    elif name == "ArrayType":
        doc.update(element=_spark_type_to_json(spark_type.elementType, field_name, depth + 1),
                   contains_null=bool(spark_type.containsNull))
    return doc


def _count(value: Any) -> int:
    """``value`` as an int in ``[0, 2**63)``, for attributes of objects that may come from a pickle."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)) and 0 <= value <= _MAX_INT:
        return int(value)
    raise PetastormSchemaError(f"expected an int from 0 to 2**63-1, got {describe_untrusted(value)}")


def _codec_to_json(codec: Any, field_name: str) -> Any:
    from petastorm import codecs

    if codec is None:
        return None
    kind = type(codec).__name__
    if kind not in _CODECS or type(codec) is not getattr(codecs, kind):
        raise PetastormSchemaError(
            f"field {field_name!r}: codec {type(codec).__module__}.{type(codec).__qualname__} is not one of "
            f"petastorm's codecs {list(_CODECS)} and cannot be stored in the dataset metadata")
    doc: dict = {"type": kind}
    if kind == "ScalarCodec":
        # the stored type as is (a loaded schema holds stand-ins): no pyspark import to write a schema
        doc["spark_type"] = _spark_type_to_json(getattr(codec, "_spark_type", None) or codec.spark_dtype(), field_name)
    elif kind == "CompressedImageCodec":
        doc.update(image_codec=codec.image_codec, quality=_count(codec._quality))
    return doc


def unischema_to_json(schema: Any) -> str:
    """The JSON document of ``schema`` (see the module docstring).

    Raises
    ------
    PetastormSchemaError
        Naming the field whose dtype or codec has no JSON form (a custom codec class, a structured dtype).
    """
    fields = []
    for field in schema.fields.values():
        shape = field.shape if field.shape is not None else ()
        fields.append({
            "name": field.name,
            "dtype": _dtype_to_json(field.numpy_dtype, field.name),
            "shape": [None if d is None else _count(d) for d in shape],
            "nullable": bool(field.nullable),
            "codec": _codec_to_json(field.codec, field.name),
        })
    return json.dumps({"format": UNISCHEMA_JSON_FORMAT, "name": schema._name, "fields": fields})


# --- reading --------------------------------------------------------------------------------------------------

class _Bad(Exception):
    pass


def _expect(cond: bool, message: str) -> None:
    if not cond:
        raise _Bad(message)


def _dtype_from_json(text: Any) -> Any:
    _expect(isinstance(text, str), f"dtype must be a string, got {describe_untrusted(text)}")
    if text == "decimal.Decimal":
        return Decimal
    module, _, name = text.partition(".")
    if module == "builtins" and name in _PY_TYPES:
        return _PY_TYPES[name]
    if module == "numpy":
        value = getattr(np, name, None)
        _expect(isinstance(value, type) and issubclass(value, np.generic), f"unknown numpy type {describe_untrusted(text)}")
        return value
    if text.startswith("dtype:"):
        try:
            return plain_dtype(text[len("dtype:"):])
        except UntrustedValueError as e:
            raise _Bad(f"bad numpy dtype {describe_untrusted(text)}: {e}") from None
    raise _Bad(f"unknown dtype {describe_untrusted(text)}")


def _is_count(value: Any) -> bool:
    return type(value) is int and 0 <= value <= _MAX_INT


def _spark_type_from_json(doc: Any, depth: int = 0) -> Any:
    from petastorm.spark_types import STANDIN_TYPES
    from petastorm.spark_types import standin_type as spark_type  # loading never imports pyspark

    _expect(isinstance(doc, dict) and type(doc.get("type")) is str and doc["type"] in STANDIN_TYPES,
            f"unknown Spark type {describe_untrusted(doc.get('type') if isinstance(doc, dict) else doc)}")
    name = doc["type"]
    if name == "DecimalType":
        precision, scale = doc.get("precision"), doc.get("scale")
        _expect(_is_count(precision) and _is_count(scale), "DecimalType needs precision and scale, ints from 0")
        return spark_type(name, precision, scale)
    if name == "ArrayType":
        contains_null = doc.get("contains_null", True)
        _expect(isinstance(contains_null, bool), f"bad ArrayType contains_null {describe_untrusted(contains_null)}")
        _expect(depth < _MAX_ARRAY_NESTING, f"ArrayType nested more than {_MAX_ARRAY_NESTING} levels deep")
        return spark_type(name, _spark_type_from_json(doc.get("element"), depth + 1), contains_null)
    return spark_type(name)


def _codec_from_json(doc: Any) -> Any:
    from petastorm import codecs

    if doc is None:
        return None
    _expect(isinstance(doc, dict) and type(doc.get("type")) is str and doc["type"] in _CODECS,
            f"unknown codec {describe_untrusted(doc.get('type') if isinstance(doc, dict) else doc)}")
    kind = doc["type"]
    if kind == "ScalarCodec":
        return codecs.ScalarCodec(_spark_type_from_json(doc.get("spark_type")))
    if kind == "CompressedImageCodec":
        image_codec, quality = doc.get("image_codec", "png"), doc.get("quality", 80)
        _expect(type(image_codec) is str and image_codec in ("png", "jpeg") and _is_count(quality),
                f"bad CompressedImageCodec ({describe_untrusted(image_codec)}, quality {describe_untrusted(quality)})")
        return codecs.CompressedImageCodec(image_codec, quality)
    return getattr(codecs, kind)()


def _field_from_json(doc: Any) -> Any:
    from petastorm.unischema import UnischemaField

    _expect(isinstance(doc, dict), f"a field must be an object, got {describe_untrusted(doc)}")
    name = doc.get("name")
    _expect(isinstance(name, str) and name != "",
            f"a field name must be a non-empty string, got {describe_untrusted(name)}")
    shape = doc.get("shape")
    try:
        _expect(isinstance(shape, list) and all(d is None or _is_count(d) for d in shape),
                f"shape must be a list of non-negative ints and nulls, got {describe_untrusted(shape)}")
        nullable = doc.get("nullable", False)
        _expect(isinstance(nullable, bool), f"nullable must be true or false, got {describe_untrusted(nullable)}")
        return UnischemaField(name, _dtype_from_json(doc.get("dtype")), tuple(shape),
                              _codec_from_json(doc.get("codec")), nullable)
    except _Bad as e:
        raise _Bad(f"field {describe_untrusted(name)}: {e}") from None


def unischema_from_json(text: str | bytes, source: str) -> Any:
    """Load a Unischema from its JSON document; ``source`` (the metadata file) names it in errors.

    Raises
    ------
    PetastormMetadataError
        For bytes that are not UTF-8, truncated or invalid JSON, an unknown format, dtype or codec.
    """
    from petastorm.unischema import Unischema

    if isinstance(text, (bytes, bytearray, memoryview)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as e:
            raise PetastormMetadataError(f"{source}: the JSON schema is not valid UTF-8 ({e})") from None
    try:
        doc = json.loads(text)
    except (ValueError, TypeError) as e:  # JSONDecodeError, and numbers over Python's digit limit
        raise PetastormMetadataError(f"{source}: the JSON schema is truncated or not valid JSON ({e})") from None
    except RecursionError:
        raise PetastormMetadataError(f"{source}: the JSON schema nests too deeply to be a schema") from None
    try:
        _expect(isinstance(doc, dict), "the document must be a JSON object")
        _expect(doc.get("format") == UNISCHEMA_JSON_FORMAT,
                f"unknown format {describe_untrusted(doc.get('format'))}; this petastorm reads "
                f"{UNISCHEMA_JSON_FORMAT!r}")
        _expect(isinstance(doc.get("name"), str), "name must be a string")
        _expect(isinstance(doc.get("fields"), list), "fields must be a list")
        fields = [_field_from_json(f) for f in doc["fields"]]
        return Unischema(doc["name"], fields)
    except _Bad as e:
        raise PetastormMetadataError(f"{source}: the JSON schema is invalid: {e}") from None
    except PetastormSchemaError as e:
        raise PetastormMetadataError(f"{source}: the JSON schema is invalid: {e}") from None
    except RecursionError:
        raise PetastormMetadataError(f"{source}: the JSON schema nests too deeply to be a schema") from None


def rebuild_unischema(schema: Any, source: str) -> Any:
    """A new Unischema built from the plain JSON description of ``schema`` (an unpickled one).

    What a pickle produced is only inspected (names, dtypes, shapes, codec types and arguments), never
    handed on: the schema returned is built as from a JSON key, so it holds only plain dtypes, petastorm's
    codecs and Spark type stand-ins, with checked arguments.

    Raises
    ------
    PetastormMetadataError
        Naming ``source``, when ``schema`` has no such description (a malformed field, dtype or codec).
    """
    from petastorm.unischema import UnischemaField

    try:
        fields = schema.fields.values() if isinstance(schema.fields, dict) else None
        if fields is None or not all(isinstance(f, UnischemaField) for f in fields):
            raise PetastormSchemaError("its fields are not UnischemaField objects")
        text = unischema_to_json(schema)
    except RecursionError:
        raise PetastormMetadataError(f"{source}: the stored schema nests too deeply") from None
    except Exception as e:  # noqa: BLE001 - any failure to describe an unpickled object: it is malformed
        detail = str(e) if isinstance(e, PetastormSchemaError) else type(e).__name__
        raise PetastormMetadataError(f"{source}: the stored schema is malformed: {detail}") from None
    return unischema_from_json(text, source)
