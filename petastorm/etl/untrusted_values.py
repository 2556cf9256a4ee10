"""Plain numpy values rebuilt from untrusted metadata, and descriptions of untrusted objects.

A pickle may ask numpy for a dtype (``numpy.dtype(description, align, copy)`` then a BUILD state) and for a
scalar of it (``numpy.core.multiarray.scalar(dtype, raw bytes)``). numpy trusts both: a BUILD state can
declare an object field with flags that say the dtype holds no objects, and ``scalar`` then copies the
attacker's bytes into that field as a pointer; the first ``repr`` or read of the value crashes the
interpreter. So nothing from the pickle is handed to numpy as is:

- a dtype is made by :func:`plain_dtype` from its text description only, and must be *plain*
  (:func:`is_plain_dtype`: booleans, integers, floats, complex numbers, datetimes/timedeltas, fixed-size
  bytes and str; no fields, no sub-array, no objects, no metadata);
- a BUILD state never reaches ``dtype.__setstate__``: :func:`dtype_from_state` checks it and reads only
  the byte order, the item size of a sized str/bytes type and the unit of a datetime, and rebuilds the
  dtype from a description again;
- a scalar is made by :func:`plain_scalar` only for a plain dtype from exactly ``itemsize`` bytes.

:func:`describe_untrusted` says what an object is for error messages without calling its ``repr``.
"""
from __future__ import annotations

import re
from typing import Any

import numpy as np

__all__ = ["PLAIN_DTYPE_KINDS", "is_plain_dtype", "plain_dtype", "dtype_from_state", "plain_scalar",
           "describe_untrusted", "UntrustedValueError"]

#: numpy dtype kinds a metadata pickle may hold: bool, signed/unsigned int, float, complex, timedelta,
#: datetime, bytes, str.
PLAIN_DTYPE_KINDS = frozenset("biufcmMSU")

_MAX_DESCRIPTION = 64
_DATETIME_UNITS = frozenset(["Y", "M", "W", "D", "h", "m", "s", "ms", "us", "ns", "ps", "fs", "as", "generic"])
_BYTE_ORDERS = frozenset("<>|=")
_MAX_FLEXIBLE_ITEMSIZE = 1 << 30


class UntrustedValueError(ValueError):
    """An untrusted dtype description, state or scalar is not allowed; the message says why."""


def is_plain_dtype(dtype: Any) -> bool:
    """Whether ``dtype`` is a ``numpy.dtype`` of a plain kind (see the module docstring)."""
    return (isinstance(dtype, np.dtype) and dtype.kind in PLAIN_DTYPE_KINDS and dtype.fields is None
            and dtype.subdtype is None and not dtype.hasobject and dtype.metadata is None)


def _checked(dtype: np.dtype, what: str) -> np.dtype:
    if not is_plain_dtype(dtype):
        raise UntrustedValueError(f"{what} is not a plain dtype (bool, int, float, complex, datetime, "
                                  f"timedelta, bytes or str of fixed size)")
    return np.dtype(dtype, copy=True)  # a fresh object: never a numpy singleton


def plain_dtype(description: Any, align: Any = False, copy: Any = True) -> np.dtype:
    """``numpy.dtype(description)`` for a short text description of a plain dtype (always a new object).

    Raises
    ------
    UntrustedValueError
        For anything but a str of at most 64 characters that numpy reads as a plain dtype, or an
        ``align``/``copy`` flag that is not a bool or 0/1.
    """
    if type(description) is not str or len(description) > _MAX_DESCRIPTION:
        raise UntrustedValueError(f"a dtype description must be a short str, got {describe_untrusted(description)}")
    for flag in (align, copy):
        if type(flag) not in (bool, int) or flag not in (0, 1):
            raise UntrustedValueError(f"the dtype flags must be booleans, got {describe_untrusted(flag)}")
    try:
        dtype = np.dtype(description)
    except (TypeError, ValueError, SyntaxError) as e:
        raise UntrustedValueError(f"numpy cannot read the dtype description {description!r} ({type(e).__name__})") \
            from None
    return _checked(dtype, f"the dtype {description!r}")


def _int(value: Any, what: str) -> int:
    if type(value) is not int:
        raise UntrustedValueError(f"{what} must be an int, got {describe_untrusted(value)}")
    return value


def _datetime_unit(metadata: Any) -> str:
    """``'[5ms]'`` from the datetime part of a version-4 dtype state: ``(None, (unit, num, 1, 1))``."""
    if metadata is None:
        return ""
    if type(metadata) is not tuple or len(metadata) != 2 or metadata[0] is not None:
        raise UntrustedValueError(f"a datetime dtype state has unexpected metadata {describe_untrusted(metadata)}")
    unit = metadata[1]
    if type(unit) is not tuple or len(unit) != 4:
        raise UntrustedValueError(f"a datetime unit must be (unit, count, 1, 1), got {describe_untrusted(unit)}")
    name, count = unit[0], _int(unit[1], "a datetime unit count")
    if isinstance(name, bytes):
        name = name.decode("ascii", "replace")
    if name not in _DATETIME_UNITS or not 0 < count < 1 << 31 or unit[2:] != (1, 1):
        raise UntrustedValueError(f"unknown datetime unit {describe_untrusted(unit)}")
    return "" if name == "generic" else f"[{count}{name}]"


def dtype_from_state(dtype: np.dtype, state: Any) -> np.dtype:
    """The dtype that ``dtype.__setstate__(state)`` would give for a plain dtype, rebuilt from a description.

    ``state`` is numpy's ``(version, byte order, subarray, names, fields, item size, alignment, flags[,
    metadata])`` with version 3 or 4. Only the byte order, the item size of an unsized bytes/str dtype
    and the datetime unit are taken; the flags are ignored (numpy derives them from the description).

    Raises
    ------
    UntrustedValueError
        For a state of another shape, one with sub-array, field names or fields, an item size that does
        not fit the dtype, or a rebuilt dtype that is not plain.
    """
    if not is_plain_dtype(dtype):
        raise UntrustedValueError("only a plain dtype takes a state")
    if type(state) is not tuple or len(state) not in (8, 9) or state[0] not in (3, 4) or type(state[0]) is not int:
        raise UntrustedValueError(f"a dtype state must be a tuple of 8 or 9 items of version 3 or 4, got "
                                  f"{describe_untrusted(state)}")
    byte_order, subarray, names, fields = state[1:5]
    if type(byte_order) is not str or byte_order not in _BYTE_ORDERS:
        raise UntrustedValueError(f"unknown byte order {describe_untrusted(byte_order)} in a dtype state")
    if subarray is not None or names is not None or fields is not None:
        raise UntrustedValueError("a dtype state with a sub-array, field names or fields is not allowed")
    item_size = _int(state[5], "the item size of a dtype state")
    _int(state[6], "the alignment of a dtype state")
    _int(state[7], "the flags of a dtype state")
    kind, size = dtype.kind, dtype.itemsize
    if kind in "mM":
        description = f"{kind}8{_datetime_unit(state[8] if len(state) == 9 else None)}"
    elif len(state) == 9 and state[8] is not None:
        raise UntrustedValueError("a dtype state with metadata is not allowed")
    if kind in "SU" and size == 0 and 0 < item_size <= _MAX_FLEXIBLE_ITEMSIZE:
        per_char = 4 if kind == "U" else 1
        if item_size % per_char:
            raise UntrustedValueError(f"item size {item_size} does not fit a str dtype")
        size = item_size
    if kind not in "mM":
        description = f"{kind}{size // 4 if kind == 'U' else size}"
    order = byte_order if byte_order in "<>=" else dtype.byteorder
    if order in "<>" and (kind == "U" or kind not in "bS" and size > 1):
        description = order + description
    rebuilt = plain_dtype(description)
    if item_size not in (-1, rebuilt.itemsize):
        raise UntrustedValueError(f"item size {item_size} does not fit the dtype {rebuilt.str}")
    return rebuilt


def plain_scalar(dtype: Any, data: Any) -> Any:
    """The numpy scalar of the plain ``dtype`` held in exactly ``dtype.itemsize`` bytes ``data``.

    ``data`` may be a str (Python 2 pickles read with ``encoding='latin1'``); it is encoded back.

    Raises
    ------
    UntrustedValueError
        For a dtype that is not plain, or data that is not bytes of the dtype's size.
    """
    if not is_plain_dtype(dtype):
        raise UntrustedValueError(f"a numpy scalar needs a plain dtype, got {describe_untrusted(dtype)}")
    if isinstance(data, str):
        try:
            data = data.encode("latin1")
        except UnicodeEncodeError:
            raise UntrustedValueError("the raw data of a numpy scalar is not latin-1 text") from None
    if data == b"" and dtype.itemsize == 0:  # numpy pickles '' and b'' with the unsized str/bytes dtype
        return dtype.type()
    if type(data) is not bytes or len(data) != dtype.itemsize:
        raise UntrustedValueError(f"a numpy scalar of {dtype.str} needs {dtype.itemsize} bytes, got "
                                  f"{describe_untrusted(data)}")
    return np.frombuffer(data, dtype=dtype)[0]


_SAFE_TEXT = re.compile(r"^[\w .:/=<>\[\]-]{0,60}$")


def describe_untrusted(obj: Any) -> str:
    """A short description of ``obj`` for an error message, made without calling its ``repr``/``str``
    unless it is a plain built-in value or a plain dtype (an object from a pickle may crash on ``repr``)."""
    kind = type(obj)
    if obj is None or kind is bool or kind is float:
        return repr(obj)
    if kind is int:
        return repr(obj) if obj.bit_length() <= 64 else f"an int of {obj.bit_length()} bits"
    if kind is str or kind is bytes:
        text = repr(obj[:40])
        return text if len(obj) <= 40 else f"{text}... ({len(obj)} {'characters' if kind is str else 'bytes'})"
    if isinstance(obj, np.dtype) and is_plain_dtype(obj):
        return f"dtype {obj.str!r}"
    if kind in (tuple, list, dict, set, frozenset):
        return f"a {kind.__name__} of {len(obj)} items"
    if isinstance(obj, type):
        return f"the class {_name_of(obj)}"
    return f"a {_name_of(kind)} object"


def _name_of(cls: type) -> str:
    module, name = getattr(cls, "__module__", None), getattr(cls, "__qualname__", None)
    parts = [p for p in (module, name) if type(p) is str and _SAFE_TEXT.match(p)]
    return ".".join(parts) if parts else "unnamed"
