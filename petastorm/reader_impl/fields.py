"""Fields stage: which fields of the dataset's schema a reader reads (``schema_fields``, an ``NGram``), and
the check that a predicate reads fields of the schema. Pure functions of the schema: no I/O.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from petastorm.errors import (
    NoMatchingFieldsError,
    PetastormArgumentError,
    PetastormArgumentTypeError,
    PetastormSchemaError,
)

__all__ = ["resolve_fields", "ngram_fields", "check_predicate_fields"]


def resolve_fields(schema: Any, schema_fields: Any, url: Any = None, arrow_schema: Any = None, *,
                   empty_selects_all: bool = True) -> list:
    """Names of the fields that ``schema_fields`` selects: the given UnischemaFields in their order, then
    the fields that the regular expressions match (whole names), in schema order; duplicates once.

    One function for every entry point that takes ``schema_fields`` (``make_reader``, ``make_batch_reader``,
    ``dataset_as_rdd``), with the original 0.12.1's behaviours, recorded as a black box:

    - ``None`` selects every field;
    - an empty list or tuple selects every field for the readers, and no field for ``dataset_as_rdd``
      (``empty_selects_all=False``: its rows are then empty tuples);
    - an element that is neither a UnischemaField nor a string, or a ``schema_fields`` that is not a
      iterable, is a :class:`~petastorm.errors.PetastormArgumentTypeError` (the original raised a
      ``ValueError`` from the readers, and a ``TypeError`` from ``dataset_as_rdd`` for a non-collection);
    - a UnischemaField that is not in the schema is a ``PetastormSchemaError`` (a ``ValueError``,
      the original's wording).

    Any iterable of them is taken, as the original took any collection (``schema.fields.values()``, a dict's
    keys, a numpy array of names). Our additions: a single UnischemaField or string stands for a list of one
    (the original iterated it: a ``ValueError``, or the characters of the string as regular expressions), an
    iterator (a generator) is taken too (the original's ``TypeError``: no ``len()``), and ``dataset_as_rdd``
    takes regular expressions too (the original's raised ``AttributeError``).

    Parameters
    ----------
    schema : Unischema
    schema_fields : None, UnischemaField, str, or an iterable of them (list, tuple, set, dict values...)
    url : str, optional
        Named in the error when nothing matches.
    arrow_schema : pyarrow.Schema, optional
        The Parquet schema a schema was inferred from: a regex that names a column the inference left out
        (an unsupported type) is then refused naming the column and its type.
    empty_selects_all : bool
        What an empty ``schema_fields`` selects: every field (readers) or none (``dataset_as_rdd``).

    Returns
    -------
    list of str

    Raises
    ------
    NoMatchingFieldsError
        (A ``RuntimeError``, as the original's.) A non-empty ``schema_fields`` that selects no field.
    """
    from petastorm.unischema import UnischemaField, match_unischema_fields

    if schema_fields is None:
        return list(schema.fields)
    if isinstance(schema_fields, (str, UnischemaField)):
        schema_fields = [schema_fields]
    elif isinstance(schema_fields, Iterable) and not isinstance(schema_fields, (bytes, bytearray)):
        # any collection, as the original: schema.fields.values(), a numpy array of names...
        schema_fields = list(schema_fields)
    else:
        raise PetastormArgumentTypeError(
            f"Fields must be either None, an iterable collection of Unischema fields or an NGram object. "
            f"schema_fields is {type(schema_fields).__name__}: {schema_fields!r}")
    if not schema_fields:
        return list(schema.fields) if empty_selects_all else []
    names = []
    regexes = []
    for f in schema_fields:
        if isinstance(f, UnischemaField):
            if f.name not in schema.fields:
                raise PetastormSchemaError(
                    f"field {{{f.name!r}}} does not belong to the schema {schema}; schema_fields: field {f.name!r} "
                    f"is not in the dataset's schema (fields: {list(schema.fields)})")
            names.append(f.name)
        elif isinstance(f, str):
            regexes.append(f)
        else:
            raise PetastormArgumentTypeError(
                f"schema_fields must hold UnischemaFields or regular expressions (str), got {type(f).__name__}: "
                f"{f!r}. Elements of \"fields\" must be either a string (regular expressions) or an instance of "
                f"UnischemaField class.")
    matched = [f.name for f in match_unischema_fields(schema, regexes)]
    if arrow_schema is not None:
        # a regex that names a column the inferred schema left out (unsupported type): say why
        from petastorm.arrow_types import arrow_field_to_unischema_field

        for pattern in regexes:
            if any(re.fullmatch(pattern, n) for n in schema.fields):
                continue
            for arrow_field in arrow_schema:
                if arrow_field.name not in schema.fields and re.fullmatch(pattern, arrow_field.name):
                    arrow_field_to_unischema_field(arrow_field)  # raises naming the column and its type
    # as the original: the UnischemaFields in the order given, then the regex matches (in schema order here;
    # the original's came in a hash-seeded order)
    resolved = list(dict.fromkeys(names + matched))
    if not resolved:
        raise NoMatchingFieldsError(
            f"No fields matching the criteria '{list(schema_fields)}' were found in the dataset {url}. "
            f"Fields of the dataset: {list(schema.fields)} (regexes match whole field names)")
    return resolved


def ngram_fields(ngram: Any, schema: Any, is_batched: bool) -> list:
    """Names (schema order) of the fields an ``NGram`` reads at any timestep, and its timestamp field."""
    if is_batched:
        raise NotImplementedError("ngrams are not supported by ArrowReaderWorker: make_batch_reader does not "
                                  "read NGram schema_fields; use make_reader")
    ngram.resolve_regex_field_names(schema)
    ts = ngram.timestamp_field
    wanted = {getattr(f, "name", f) for f in ngram.get_field_names_at_all_timesteps()}
    wanted.add(getattr(ts, "name", ts))
    unknown = sorted(wanted - set(schema.fields))
    if unknown:
        raise PetastormSchemaError(f"NGram fields {unknown} are not in the dataset's schema")
    return [n for n in schema.fields if n in wanted]


def check_predicate_fields(predicate: Any, schema: Any) -> None:
    """Raise ``PetastormSchemaError`` (a ValueError, as the original's) naming the fields that ``predicate``
    reads and ``schema`` lacks; ``PetastormArgumentError`` (a ValueError) when ``predicate`` has no
    ``get_fields``/``do_include`` (a ``PredicateBase``, or an object with both methods, is expected)."""
    if predicate is None:
        return
    if not (callable(getattr(predicate, "get_fields", None)) and callable(getattr(predicate, "do_include", None))):
        # the original's ValueError and message (recorded from 0.12.1); a plain function or a field name
        # reached ``predicate.get_fields()`` as a bare AttributeError
        raise PetastormArgumentError(f"predicate parameter is expected to be derived from PredicateBase, got "
                                     f"{type(predicate).__name__}: {predicate!r}")
    if not predicate.get_fields():  # the original's ValueError and message (recorded from 0.12.1)
        raise PetastormArgumentError(f"At least one field name must be returned by predicate's get_field() method "
                                     f"(predicate {type(predicate).__name__} reads no field)")
    unknown = [f for f in predicate.get_fields() if f not in schema.fields]
    if unknown:
        raise PetastormSchemaError(
            f"At least some column names requested by the predicate ({', '.join(sorted(unknown))}) are not "
            f"valid schema names: ({', '.join(schema.fields)})")
