"""A reader of Thrift's compact protocol, enough for Parquet page headers.

A Parquet page header is a Thrift struct in the compact protocol. :func:`read_struct` decodes one into a
dict of field id -> value (nested structs as dicts, lists as lists, binaries as ``bytes``). Given a
``schema`` it keeps only the fields named there with the type given there, skipping the others as Thrift's
generated readers (pyarrow's among them) do, so that a field of the wrong type reads as missing. Malformed
input raises :class:`ThriftError`, never reads past the buffer and never recurses without bound.
"""
from __future__ import annotations

from typing import Any

__all__ = ["ThriftError", "read_struct", "read_varint", "BOOL", "I32", "I64", "BINARY", "STRUCT"]

_MAX_DEPTH = 16
_MAX_ITEMS = 1 << 20

# compact protocol type ids
_TRUE, _FALSE, _BYTE, _I16, _I32, _I64, _DOUBLE, _BINARY, _LIST, _SET, _MAP, _STRUCT = range(1, 13)
#: Field types of a ``schema`` (a struct field's schema entry is ``(STRUCT, {field id: type, ...})``).
BOOL, I32, I64, BINARY, STRUCT = _TRUE, _I32, _I64, _BINARY, _STRUCT


class ThriftError(ValueError):
    """The bytes are not a well-formed compact-protocol struct."""


def read_struct(buf: Any, pos: int = 0, schema: "dict | None" = None) -> "tuple[dict, int]":
    """Decode the struct starting at byte ``pos`` of ``buf`` (bytes-like).

    ``schema`` (field id -> type, or ``(STRUCT, schema)`` for a nested struct) keeps only those fields,
    with those types; None keeps every field.

    Returns
    -------
    (dict, int)
        Field id -> value, and the position just past the struct's stop byte.
    """
    try:
        return _struct(memoryview(buf).cast("B"), pos, 0, schema)
    except IndexError:
        raise ThriftError("truncated Thrift struct") from None


def read_varint(b: Any, i: int) -> "tuple[int, int]":
    """The unsigned LEB128 varint at byte ``i`` of ``b`` (indexable bytes), and the position after it.
    Raises IndexError past the end, :class:`ThriftError` past 10 bytes."""
    result = shift = 0
    while True:
        x = b[i]
        i += 1
        result |= (x & 0x7F) << shift
        if not x & 0x80:
            return result, i
        shift += 7
        if shift > 63:
            raise ThriftError("varint longer than 10 bytes")


def _zigzag(n: int) -> int:
    return (n >> 1) ^ -(n & 1)


def _struct(b: memoryview, i: int, depth: int, schema: "dict | None" = None) -> "tuple[dict, int]":
    if depth > _MAX_DEPTH:
        raise ThriftError("Thrift structs nested too deep")
    out: dict = {}
    field_id = 0
    while True:
        head = b[i]
        i += 1
        if head == 0:
            return out, i
        typ = head & 0x0F
        delta = head >> 4
        if delta:
            field_id += delta
        else:
            raw, i = read_varint(b, i)
            field_id = _zigzag(raw)
        want = schema.get(field_id) if schema is not None else typ
        sub = None
        if isinstance(want, tuple):
            want, sub = want
        if typ in (_TRUE, _FALSE):  # a bool field's value is its type
            if want in (_TRUE, _FALSE):
                out[field_id] = typ == _TRUE
            continue
        if typ == _STRUCT:
            value, i = _struct(b, i, depth + 1, sub)
        else:
            value, i = _value(b, i, typ, depth)
        if want == typ:
            out[field_id] = value


def _value(b: memoryview, i: int, typ: int, depth: int) -> "tuple[Any, int]":
    if typ in (_TRUE, _FALSE):  # inside a list: one byte
        return b[i] == _TRUE, i + 1
    if typ == _BYTE:
        return b[i], i + 1
    if typ in (_I16, _I32, _I64):
        raw, i = read_varint(b, i)
        return _zigzag(raw), i
    if typ == _DOUBLE:
        if i + 8 > len(b):
            raise IndexError
        return bytes(b[i:i + 8]), i + 8
    if typ == _BINARY:
        n, i = read_varint(b, i)
        if i + n > len(b):
            raise IndexError
        return bytes(b[i:i + n]), i + n
    if typ in (_LIST, _SET):
        head = b[i]
        i += 1
        n, elem = head >> 4, head & 0x0F
        if n == 15:
            n, i = read_varint(b, i)
        if n > _MAX_ITEMS:
            raise ThriftError(f"Thrift list of {n} items")
        items = []
        for _ in range(n):
            v, i = _value(b, i, elem, depth + 1)
            items.append(v)
        return items, i
    if typ == _MAP:
        n, i = read_varint(b, i)
        if n == 0:
            return {}, i
        if n > _MAX_ITEMS:
            raise ThriftError(f"Thrift map of {n} items")
        kinds = b[i]
        i += 1
        out = {}
        for _ in range(n):
            k, i = _value(b, i, kinds >> 4, depth + 1)
            v, i = _value(b, i, kinds & 0x0F, depth + 1)
            out[k if not isinstance(k, (list, dict)) else repr(k)] = v
        return out, i
    if typ == _STRUCT:
        return _struct(b, i, depth + 1)
    raise ThriftError(f"unknown Thrift compact type {typ}")
