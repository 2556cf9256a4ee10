"""The schema model: a :class:`Unischema` is a named list of :class:`UnischemaField`.

A field says how a value looks in numpy (dtype and shape) and which codec turns it into a Parquet cell.
The same schema object describes a dataset to Spark (:meth:`Unischema.as_spark_schema`), to the readers
(namedtuples of rows) and to TensorFlow (:meth:`Unischema.make_namedtuple_tf`).

Pickle layout is the original library's: ``UnischemaField`` is a NamedTuple of five items and a
``Unischema`` pickles as an object whose state holds ``_name``, ``_fields`` (an ``OrderedDict``) and one
attribute per field, so datasets we write load in the original and the other way around.
"""
from __future__ import annotations

import re
import warnings
from collections import OrderedDict, namedtuple
from decimal import Decimal
from typing import Any, Iterable, NamedTuple, Optional

import numpy as np

from petastorm.errors import PetastormSchemaError

__all__ = [
    "UnischemaField",
    "Unischema",
    "dict_to_spark_row",
    "insert_explicit_nulls",
    "match_unischema_fields",
    "encode_row",
]


def _fields_as_tuple(field: "UnischemaField") -> tuple:
    """What equality and hashing of a field look at. As in the original, the codec is left out: two
    fields that differ only in their codec compare equal."""
    return (field.name, field.numpy_dtype, field.shape, field.nullable)


class UnischemaField(NamedTuple):
    """One field of a :class:`Unischema`.

    Parameters
    ----------
    name : str
        Column name.
    numpy_dtype : numpy scalar type or ``Decimal`` or ``str``/``bytes`` type
        Type of the value (of the array elements when ``shape`` is not ``()``).
    shape : tuple of (int or None)
        ``()`` for a scalar; ``None`` marks a dimension of variable length.
    codec : codec instance or None
        Turns the value into a Parquet cell and back; ``None`` means a native Parquet column.
    nullable : bool
        Whether the value may be ``None``.
    """

    name: str
    numpy_dtype: Any
    shape: tuple
    codec: Optional[Any] = None
    nullable: Optional[bool] = False

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, UnischemaField):
            return NotImplemented
        return _fields_as_tuple(self) == _fields_as_tuple(other)

    def __ne__(self, other: object) -> bool:
        result = self.__eq__(other)
        return result if result is NotImplemented else not result

    def __hash__(self) -> int:
        return hash(_fields_as_tuple(self))


def _namedtuple_name(name: str) -> str:
    cleaned = re.sub(r"\W", "_", name or "Row")
    if not cleaned or cleaned[0].isdigit():
        cleaned = "_" + cleaned
    return cleaned


class _SchemaName:
    """``schema.name``: the schema's name, unless a field called ``name`` takes the attribute (a
    non-data descriptor, so the field set on the instance wins, as in the original)."""

    def __get__(self, obj: Any, objtype: Any = None) -> Any:
        return self if obj is None else obj._name


class Unischema:
    """A named, ordered collection of :class:`UnischemaField`.

    Fields are reachable as attributes (``schema.id``) and through :attr:`fields`, an ``OrderedDict``
    from name to field in declaration order.

    Parameters
    ----------
    name : str
        Name of the schema (it also names the namedtuples of rows).
    fields : iterable of UnischemaField
    """

    def __init__(self, name: str, fields: Iterable[UnischemaField]) -> None:
        fields = list(fields)
        for f in fields:
            if not isinstance(f, UnischemaField):
                raise PetastormSchemaError(
                    f"Unischema {name!r}: every field must be a UnischemaField, got {type(f).__name__}: {f!r}")
        self._name = name
        self._fields = OrderedDict((f.name, f) for f in fields)
        if len(self._fields) != len(fields):
            seen: set = set()
            dups = sorted({f.name for f in fields if f.name in seen or seen.add(f.name)})
            raise PetastormSchemaError(f"Unischema {name!r}: duplicate field names {dups}")
        self._set_field_attributes()

    # --- attribute access and pickling (original layout) -------------------------------------------------

    def _set_field_attributes(self) -> None:
        for f in self._fields.values():
            if f.name != "name" and (f.name in self.__dict__ or hasattr(type(self), f.name)):
                if f.name not in ("_name", "_fields"):
                    warnings.warn(f"Can not create dynamic property {f.name} because it conflicts with "
                                  f"an existing property of Unischema")
                continue
            setattr(self, f.name, f)

    def __getstate__(self) -> dict:
        state = {"_name": self._name, "_fields": self._fields}
        for name, field in self._fields.items():
            if name not in state and (name == "name" or not hasattr(type(self), name)):
                state[name] = field
        return state

    def __setstate__(self, state: dict) -> None:
        fields = state.get("_fields")
        if fields is None:
            fields = OrderedDict((k, v) for k, v in state.items() if isinstance(v, UnischemaField))
        self._name = state.get("_name", "")
        self._fields = OrderedDict((f.name, f) for f in fields.values())
        self._set_field_attributes()

    # --- public API ----------------------------------------------------------------------------------------

    @property
    def fields(self) -> "OrderedDict[str, UnischemaField]":
        """Fields by name, in declaration order."""
        return self._fields

    name = _SchemaName()

    def create_schema_view(self, fields: Iterable[UnischemaField | str]) -> "Unischema":
        """A schema with a subset of this schema's fields.

        Parameters
        ----------
        fields : iterable of UnischemaField or str
            Fields of this schema, or regular expressions matched in full against field names.

        Raises
        ------
        ValueError
            If a given ``UnischemaField`` is not part of this schema.
        """
        fields = list(fields)
        regexes = [f for f in fields if isinstance(f, str)]
        explicit = [f for f in fields if not isinstance(f, str)]
        for field in explicit:
            if not isinstance(field, UnischemaField):
                raise PetastormSchemaError(
                    f"create_schema_view takes UnischemaFields or regex strings, got {type(field).__name__}")
            if field.name not in self._fields or self._fields[field.name] != field:
                raise PetastormSchemaError(f"field {field.name} does not belong to the schema {self._name}")
        wanted = {f.name for f in explicit} | {f.name for f in match_unischema_fields(self, regexes)}
        view_fields = [f for name, f in self._fields.items() if name in wanted]
        return Unischema(f"{self._name}_view", view_fields)

    def _get_namedtuple(self) -> type:
        cached = self.__dict__.get("_namedtuple_cache")
        if cached is None or cached._fields != tuple(self._fields):
            cached = namedtuple(_namedtuple_name(self._name), list(self._fields), rename=False)
            # Keep the class out of the pickled state (see __getstate__).
            object.__setattr__(self, "_namedtuple_cache", cached)
        return cached

    def make_namedtuple(self, **kargs: Any) -> tuple:
        """A namedtuple of this schema's fields; fields not given are ``None``."""
        typed = {name: kargs.get(name) for name in self._fields}
        unknown = set(kargs) - set(self._fields)
        if unknown:
            raise PetastormSchemaError(f"fields {sorted(unknown)} are not in the schema {self._name}")
        return self._get_namedtuple()(**typed)

    def make_namedtuple_tf(self, *args: Any, **kargs: Any) -> tuple:
        """The namedtuple of this schema built from positional or keyword values (for tf.data)."""
        return self._get_namedtuple()(*args, **kargs)

    def as_spark_schema(self) -> Any:
        """A ``pyspark.sql.types.StructType`` of this schema (imports pyspark)."""
        from pyspark.sql.types import StructField, StructType

        struct_fields = []
        for f in self._fields.values():
            if f.codec is None:
                from petastorm.codecs import ScalarCodec, spark_type_for_numpy

                codec_type = spark_type_for_numpy(f.numpy_dtype, f.shape, f.name)
                spark_dtype = ScalarCodec(codec_type).spark_dtype() if f.shape == () else codec_type
            else:
                spark_dtype = f.codec.spark_dtype()
            struct_fields.append(StructField(f.name, spark_dtype, bool(f.nullable)))
        return StructType(struct_fields)

    @classmethod
    def from_arrow_schema(cls, parquet_dataset: Any, omit_unsupported_fields: bool = True) -> "Unischema":
        """Infer a Unischema from an Arrow schema, a ``pyarrow.dataset.Dataset`` or a ``ParquetDataset``.

        Scalars map to numpy scalar types, lists to shape ``(None,)``; partition columns of a
        ``ParquetDataset`` become string fields. Codecs are ``None`` (native Parquet columns).

        Parameters
        ----------
        parquet_dataset : pyarrow.Schema, pyarrow.dataset.Dataset or pyarrow.parquet.ParquetDataset
        omit_unsupported_fields : bool
            Skip (with a warning) columns of a type that has no numpy equivalent; otherwise raise.
        """
        import pyarrow as pa

        from petastorm.arrow_types import arrow_field_to_unischema_field, partition_field_names

        arrow_schema = parquet_dataset if isinstance(parquet_dataset, pa.Schema) else parquet_dataset.schema
        unischema_fields = []
        partition_names = partition_field_names(parquet_dataset)
        for name in partition_names:
            if name not in arrow_schema.names:
                unischema_fields.append(UnischemaField(name, np.str_, (), None, False))
        for arrow_field in arrow_schema:
            if re.fullmatch(r"__index_level_\d+__", arrow_field.name):
                continue  # an unnamed pandas index stored by to_parquet: pandas reads it back as the index
            try:
                field = arrow_field_to_unischema_field(arrow_field)
            except PetastormSchemaError:
                if not omit_unsupported_fields:
                    raise
                warnings.warn(f"Column {arrow_field.name!r} has an unsupported field type {arrow_field.type}; "
                              f"it is ignored")
                continue
            unischema_fields.append(field)
        return cls("inferred_schema", unischema_fields)

    def __str__(self) -> str:
        fields_str = "".join(f"  {f!r},\n" for f in self._fields.values())
        return f"Unischema({self._name}, [\n{fields_str}])"

    def __repr__(self) -> str:
        return str(self)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Unischema):
            return NotImplemented
        return self._name == other._name and list(self._fields.values()) == list(other._fields.values())

    def __hash__(self) -> int:
        return hash((self._name, tuple(self._fields.values())))

    def __len__(self) -> int:
        return len(self._fields)

    def __iter__(self):
        return iter(self._fields.values())


def match_unischema_fields(schema: Unischema, field_regex: Iterable[str] | None) -> list[UnischemaField]:
    """Fields of ``schema`` whose names match, in full, any of the regular expressions.

    Parameters
    ----------
    schema : Unischema
    field_regex : iterable of str
        Patterns matched with :func:`re.fullmatch` against each field name.

    Returns
    -------
    list of UnischemaField, in schema order.
    """
    if not field_regex:
        return []
    patterns = []
    for pattern in field_regex:
        if not isinstance(pattern, str):
            raise PetastormSchemaError(f"field regex must be a string, got {type(pattern).__name__}: {pattern!r}")
        try:
            patterns.append(re.compile(pattern))
        except re.error as e:
            raise PetastormSchemaError(f"invalid field regex {pattern!r}: {e}") from e
    return [f for f in schema.fields.values() if any(p.fullmatch(f.name) for p in patterns)]


def insert_explicit_nulls(unischema: Unischema, row_dict: dict) -> None:
    """Add ``None`` for every nullable field that ``row_dict`` lacks (in place).

    Raises
    ------
    ValueError
        If a field that is not nullable is missing.
    """
    for field_name, value in unischema.fields.items():
        if field_name not in row_dict:
            if value.nullable:
                row_dict[field_name] = None
            else:
                raise PetastormSchemaError(f"Field {field_name} is not found in the row_dict, but is not nullable.")


def encode_row(unischema: Unischema, row_dict: dict, row_index: int | None = None) -> dict:
    """Encode one row (a dict of field name to value) into Parquet cell values with the fields' codecs.

    Raises
    ------
    PetastormSchemaError
        Naming the row (when ``row_index`` is given) and the field: unknown or missing fields, ``None``
        in a field that is not nullable, or a value whose dtype or shape does not fit.
    """
    where = f"row {row_index:,} of the input: " if row_index is not None else ""
    if not isinstance(row_dict, dict):
        raise PetastormSchemaError(f"{where}expected a dict of field name to value, got {type(row_dict).__name__}")
    unknown = [k for k in row_dict if k not in unischema.fields]
    if unknown:
        raise PetastormSchemaError(
            f"{where}fields {unknown} are not in the schema {unischema._name!r} "
            f"(schema fields: {list(unischema.fields)})")
    encoded = {}
    for name, field in unischema.fields.items():
        if name not in row_dict:
            if field.nullable:
                encoded[name] = None
                continue
            raise PetastormSchemaError(f"{where}field {name!r} is missing and is not nullable")
        value = row_dict[name]
        if value is None:
            if not field.nullable:
                raise PetastormSchemaError(f"{where}field {name!r} is not nullable, but got a None value")
            encoded[name] = None
            continue
        try:
            if field.codec is not None:
                encoded[name] = field.codec.encode(field, value)
            else:
                from petastorm.codecs import encode_native

                encoded[name] = encode_native(field, value)
        except PetastormSchemaError as e:
            raise PetastormSchemaError(f"{where}{e}") from None
        except Exception as e:  # codec failure on a malformed value: name the field
            raise PetastormSchemaError(f"{where}field {name!r}: cannot encode {type(value).__name__} value: {e}") from e
    return encoded


def dict_to_spark_row(unischema: Unischema, row_dict: dict) -> Any:
    """Encode a dict of values into a ``pyspark.sql.Row`` following the schema's codecs.

    Raises
    ------
    ValueError
        If the dict's keys do not match the schema's fields, or a value does not fit its field.
    """
    from pyspark.sql import Row

    if not isinstance(row_dict, dict):
        raise PetastormSchemaError(f"row_dict must be a dict, got {type(row_dict).__name__}")
    if set(row_dict.keys()) != set(unischema.fields.keys()):
        raise PetastormSchemaError(
            f"Dictionary fields \n{sorted(row_dict.keys())}\n do not match schema fields \n"
            f"{sorted(unischema.fields.keys())}")
    encoded = encode_row(unischema, row_dict)
    for name, value in encoded.items():
        if isinstance(value, np.generic):
            encoded[name] = value.item()
        elif isinstance(value, Decimal):
            encoded[name] = value
    return Row(**encoded)
