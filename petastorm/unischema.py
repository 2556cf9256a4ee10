"""The schema model: a :class:`Unischema` is a named list of :class:`UnischemaField`.

A field says how a value looks in numpy (dtype and shape) and which codec turns it into a Parquet cell.
The same schema object describes a dataset to Spark (:meth:`Unischema.as_spark_schema`), to the readers
(namedtuples of rows) and to TensorFlow (:meth:`Unischema.make_namedtuple_tf`).

Pickle layout is the original library's: ``UnischemaField`` is a NamedTuple of five items and a
``Unischema`` pickles as an object whose state holds ``_name``, ``_fields`` (an ``OrderedDict``) and one
attribute per field, so datasets we write load in the original and the other way around.
"""
from __future__ import annotations

import keyword
import re
import warnings
from collections import OrderedDict, namedtuple
from decimal import Decimal
from typing import Any, Iterable, NamedTuple, Optional

import numpy as np

from petastorm.errors import PetastormError, PetastormSchemaError, PetastormValueTypeError

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


def namedtuple_field_problem(name: str) -> Optional[str]:
    """Why ``name`` cannot be a field of the rows' namedtuples (None if it can)."""
    if not isinstance(name, str) or not name.isidentifier():
        return "is not a Python identifier"
    if keyword.iskeyword(name):
        return "is a Python keyword"
    if name.startswith("_"):
        return "starts with an underscore"
    return None


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
            Fields of this schema (matched by name, as the original: the view holds this schema's field of
            that name), or regular expressions matched in full against field names.

        Returns
        -------
        Unischema
            Named ``<name>_view``: the given fields in the order given, then the fields matched by the
            regular expressions (in schema order), each once. A pattern that matches nothing adds nothing.

        Raises
        ------
        ValueError
            (:class:`~petastorm.errors.PetastormSchemaError`) If an element is neither a ``UnischemaField``
            nor a string, a ``UnischemaField`` has a name this schema lacks, or a pattern is not a valid
            regular expression.
        """
        fields = list(fields)
        for field in fields:
            if not isinstance(field, (str, UnischemaField)):
                raise PetastormSchemaError(
                    f'Elements of "fields" must be either a string (regular expressions) or an instance of '
                    f'UnischemaField class. Got {type(field).__name__}: {field!r}')
        explicit = [f.name for f in fields if isinstance(f, UnischemaField)]
        unknown = [name for name in explicit if name not in self._fields]
        if unknown:
            raise PetastormSchemaError(
                f"field {set(unknown)} does not belong to the schema {self._name}: its fields are "
                f"{list(self._fields)}")
        matched = [f.name for f in match_unischema_fields(self, [f for f in fields if isinstance(f, str)])]
        names = dict.fromkeys(explicit + matched)
        return Unischema(f"{self._name}_view", [self._fields[name] for name in names])

    def _get_namedtuple(self) -> type:
        cached = self.__dict__.get("_namedtuple_cache")
        if cached is None or cached._fields != tuple(self._fields):
            # named '<schema>_view', as the original's rows (recorded from 0.12.1)
            for field_name in self._fields:
                problem = namedtuple_field_problem(field_name)
                if problem:
                    raise PetastormSchemaError(
                        f"Type names and field names must be valid identifiers: field {field_name!r} of the "
                        f"schema {self._name!r} {problem}, and rows are namedtuples; leave it out with "
                        f"schema_fields=[...] (or rename it when writing)")
            cached = namedtuple(_namedtuple_name(f"{self._name}_view"), list(self._fields), rename=False)
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
        """A ``pyspark.sql.types.StructType`` of this schema (imports pyspark).

        A field with a codec has its codec's Spark type; a scalar field without one the type of its numpy
        type (:func:`petastorm.spark_types.scalar_spark_type`: ``np.str_`` and ``np.bytes_`` are
        ``StringType``, as in the original).

        Raises
        ------
        ValueError
            (:class:`~petastorm.errors.PetastormSchemaError`) For a field without a codec that is not a
            scalar, or whose numpy type has no Spark SQL type.
        """
        from pyspark.sql.types import StructField, StructType

        from petastorm.spark_types import scalar_spark_type

        struct_fields = []
        for f in self._fields.values():
            if f.codec is not None:
                spark_dtype = f.codec.spark_dtype()
            elif f.shape not in ((), None):
                raise PetastormSchemaError(
                    f"An instance of non-scalar UnischemaField {f.name!r} has codec set to None. Don't know how to "
                    f"guess a Spark type for it: field {f.name!r} of schema {self._name!r} has shape {f.shape}; "
                    f"give it a codec (NdarrayCodec) to store it in Spark")
            else:
                spark_dtype = scalar_spark_type(f.numpy_dtype)
                if spark_dtype is None:
                    raise PetastormSchemaError(
                        f"Was not able to map type {f.numpy_dtype} to a spark type. Field {f.name!r} of schema "
                        f"{self._name!r} has no codec, and {f.numpy_dtype} has no Spark SQL type: give it a "
                        f"ScalarCodec of the Spark type to store it as")
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
        in a field that is not nullable, or a value whose dtype or shape does not fit. A value of a type
        its codec cannot take is a :class:`~petastorm.errors.PetastormValueTypeError` (also a ``TypeError``).
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
        except PetastormSchemaError as e:  # keeps its class (a TypeError stays one)
            if where:
                e.args = (f"{where}{e}",) + e.args[1:]
            raise
        except ImportError:  # a missing optional dependency (e.g. no image library): not the value's fault
            raise
        except Exception as e:  # the codec's message, then the field (a codec's own error names it already)
            message = f"{where}{e}" if isinstance(e, PetastormError) else \
                f"{where}{e}: field {name!r} cannot take a {type(value).__name__} value"
            raise (PetastormValueTypeError if isinstance(e, TypeError) else PetastormSchemaError)(message) from e
    return encoded


def dict_to_spark_row(unischema: Unischema, row_dict: dict) -> Any:
    """Encode a dict of values into a ``pyspark.sql.Row`` following the schema's codecs.

    Nullable fields missing from ``row_dict`` are set to ``None`` (``row_dict`` itself is not changed).

    Raises
    ------
    ValueError
        (:class:`~petastorm.errors.PetastormSchemaError`) If a field that is not nullable is missing or
        ``None``, the dict has keys that are not fields of the schema, or a value does not fit its field
        (dtype, shape, range).
    TypeError
        (:class:`~petastorm.errors.PetastormValueTypeError`, also a ``ValueError``) If a value has a Python
        type its field's codec cannot take.
    """
    from pyspark.sql import Row

    if not isinstance(row_dict, dict):
        raise PetastormSchemaError(f"row_dict must be a dict of field name to value, got {type(row_dict).__name__}")
    row = dict(row_dict)
    missing = [name for name, field in unischema.fields.items() if name not in row and not field.nullable]
    if missing:
        # the original's words for the first missing field, then every one of them and the way out
        raise PetastormSchemaError(
            f"Field {missing[0]} is not found in the row_dict, but is not nullable. (fields of the schema "
            f"{unischema._name!r} that are not nullable and have no value in the row dict: {missing}; its keys: "
            f"{sorted(row, key=str)}. Give them values, or declare them UnischemaField(..., nullable=True))")
    insert_explicit_nulls(unischema, row)
    if row.keys() != unischema.fields.keys():
        listed = "".join(f"{k}\n" for k in sorted(row, key=str))
        unknown = [k for k in row if k not in unischema.fields]
        raise PetastormSchemaError(
            f"Dictionary fields \n{listed} do not match schema fields \n" + "\n".join(unischema.fields)
            + f"\n(not in the schema {unischema._name!r}: {unknown})")
    for name, field in unischema.fields.items():
        if row[name] is None and not field.nullable:
            raise PetastormSchemaError(f'Field {name} is not "nullable", but got passes a None value '
                                       f"(field {name!r} of the schema {unischema._name!r} is not nullable)")
    encoded = encode_row(unischema, row)
    for name, value in encoded.items():
        if isinstance(value, np.generic):
            encoded[name] = value.item()
        elif isinstance(value, Decimal):
            encoded[name] = value
    return Row(**encoded)
