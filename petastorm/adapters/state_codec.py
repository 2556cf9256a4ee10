"""Loader states that ``torch.load`` reads with its default ``weights_only=True`` (torch >= 2.6).

A loader state holds the rows buffered between the reader and the model: numpy arrays and scalars,
``Decimal`` values, dates. ``torch.load``'s safe unpickler refuses all of those, so a training checkpoint
``{"model": ..., "loader": loader.state_dict()}`` saved with ``torch.save`` could not be read back without
``weights_only=False``. :func:`encode_state` turns them into what the safe unpickler accepts (dicts, lists,
tuples, str, bytes, int, float, bool, None) and :func:`decode_state` turns them back, exactly (dtype, shape,
bytes). Nothing is executed on decoding: values are rebuilt from dtype strings and raw bytes.

A tagged value is a dict with the key :data:`TAG`::

    {"__petastorm__": "ndarray", "dtype": "<f4", "shape": [3, 2], "data": b"..."}   # numeric/str/bytes arrays
    {"__petastorm__": "objects", "shape": [3], "items": [...]}                    # object arrays (each item encoded)
    {"__petastorm__": "scalar", "dtype": "<i8", "data": b"..."}                   # numpy scalars
    {"__petastorm__": "decimal", "value": "1.250"}
    {"__petastorm__": "bytes", "value": None}                                     # b"" (torch.save's b"" is refused)
    {"__petastorm__": "date" | "datetime" | "timedelta", "value": ...}

**Digest.** A loader's state also carries :func:`state_digest` of the rest of it (:func:`with_digest`), checked
when it is loaded (:func:`check_digest`): a state changed or cut after ``state_dict()`` - a batch or a buffered
row dropped, a number edited - is refused with a :class:`~petastorm.errors.PetastormStateError` instead of
resuming with rows lost or repeated. The digest is of the values, not of their pickle: the same after a
``pickle``/``torch.save`` round trip (or JSON, for a state of plain values), whatever the dict key order.
"""
from __future__ import annotations

import datetime
import decimal
import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from petastorm.errors import PetastormStateError

__all__ = ["TAG", "DIGEST_KEY", "encode_state", "decode_state", "state_digest", "with_digest", "check_digest"]

#: Key marking an encoded value (no state of ours uses it otherwise).
TAG = "__petastorm__"

#: Key of the digest a loader adds to its state (:func:`with_digest`).
DIGEST_KEY = "digest"

_RAW_KINDS = frozenset("biufcmMUS")


def _raw(data: bytes) -> Any:
    # torch.save pickles b"" as a call of the global ``bytes``, which weights_only loading refuses
    return data if data else None


def encode_state(obj: Any) -> Any:
    """``obj`` with numpy values, Decimals and dates replaced by tagged plain values (see the module doc).

    Dicts, lists and tuples are rebuilt; str, bytes, numbers, None and torch tensors are kept as they are.
    """
    if isinstance(obj, dict):
        return {k: encode_state(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [encode_state(v) for v in obj]
    if isinstance(obj, tuple) and not hasattr(obj, "_fields"):
        return tuple(encode_state(v) for v in obj)
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind in _RAW_KINDS:
            return {TAG: "ndarray", "dtype": obj.dtype.str, "shape": list(obj.shape),
                    "data": _raw(np.ascontiguousarray(obj).tobytes())}
        if obj.dtype.kind == "O":
            return {TAG: "objects", "shape": list(obj.shape), "items": [encode_state(v) for v in obj.ravel()]}
        return obj  # structured dtypes: kept (a plain pickle still carries them)
    if isinstance(obj, np.generic):
        if obj.dtype.kind in _RAW_KINDS:
            return {TAG: "scalar", "dtype": obj.dtype.str, "data": _raw(obj.tobytes())}
        return obj
    if isinstance(obj, bytes) and not obj:
        return {TAG: "bytes", "value": None}
    if isinstance(obj, decimal.Decimal):
        return {TAG: "decimal", "value": str(obj)}
    if isinstance(obj, datetime.datetime):
        return {TAG: "datetime", "value": obj.isoformat()}
    if isinstance(obj, datetime.date):
        return {TAG: "date", "value": obj.isoformat()}
    if isinstance(obj, datetime.timedelta):
        return {TAG: "timedelta", "value": [obj.days, obj.seconds, obj.microseconds]}
    return obj


def _decode_tagged(obj: dict) -> Any:
    kind = obj[TAG]
    try:
        if kind == "ndarray":
            dtype = np.dtype(obj["dtype"])
            return np.frombuffer(obj["data"] or b"", dtype=dtype).reshape(obj["shape"]).copy()
        if kind == "objects":
            items = obj["items"]
            out = np.empty(len(items), dtype=object)
            for i, item in enumerate(items):  # one by one: equal-shape arrays must stay separate objects
                out[i] = decode_state(item)
            return out.reshape(obj["shape"])
        if kind == "scalar":
            dtype = np.dtype(obj["dtype"])
            if dtype.itemsize == 0:  # an empty numpy.str_ / numpy.bytes_
                return dtype.type()
            return np.frombuffer(obj["data"] or b"", dtype=dtype)[0]
        if kind == "bytes":
            return b""
        if kind == "decimal":
            return decimal.Decimal(obj["value"])
        if kind == "datetime":
            return datetime.datetime.fromisoformat(obj["value"])
        if kind == "date":
            return datetime.date.fromisoformat(obj["value"])
        if kind == "timedelta":
            days, seconds, micros = obj["value"]
            return datetime.timedelta(days=days, seconds=seconds, microseconds=micros)
    except (KeyError, TypeError, ValueError) as e:
        raise PetastormStateError(f"malformed loader state: a saved {kind!r} value cannot be read back ({e})") from None
    raise PetastormStateError(f"malformed loader state: unknown saved value kind {kind!r}")


def decode_state(obj: Any) -> Any:
    """Inverse of :func:`encode_state`; values that are not tagged are returned as they are.

    Raises
    ------
    PetastormStateError
        A tagged value is malformed or of an unknown kind.
    """
    if isinstance(obj, dict):
        if TAG in obj:
            return _decode_tagged(obj)
        return {k: decode_state(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [decode_state(v) for v in obj]
    if isinstance(obj, tuple) and not hasattr(obj, "_fields"):
        return tuple(decode_state(v) for v in obj)
    return obj


def _feed(h: Any, obj: Any) -> None:
    """Feed ``obj``'s value into the hash ``h``: the type, then the content (lengths before variable parts)."""
    kind = type(obj)
    if kind is str:
        data = obj.encode("utf-8", "surrogatepass")
        h.update(b"s%d;%s" % (len(data), data))
    elif kind is dict or isinstance(obj, Mapping):
        h.update(b"d%d;" % len(obj))
        for key in sorted(obj, key=str):  # keys as text: a JSON round trip turns int keys into str
            _feed(h, str(key))
            _feed(h, obj[key])
    elif kind is int or kind is float or kind is bool or obj is None:
        h.update(b"r%s:%r;" % (kind.__name__.encode(), obj))
    elif isinstance(obj, (list, tuple)):
        h.update(b"l%d;" % len(obj))
        for value in obj:
            _feed(h, value)
    elif isinstance(obj, np.ndarray) and obj.dtype.kind == "O":
        h.update(b"o%r;" % (obj.shape,))
        for value in obj.ravel():
            _feed(h, value)
    elif isinstance(obj, (np.ndarray, np.generic)):
        arr = np.ascontiguousarray(obj)
        h.update(b"a%s%r;" % (arr.dtype.str.encode(), arr.shape))
        h.update(memoryview(arr.reshape(-1)).cast("B") if arr.dtype.kind in "biuf" else arr.tobytes())
    elif isinstance(obj, (bytes, bytearray)):
        h.update(b"b%d;" % len(obj))
        h.update(obj)
    elif hasattr(obj, "detach") and hasattr(obj, "numpy"):  # a torch tensor: its values (its repr is cut short)
        _feed(h, obj.detach().cpu().numpy())
    else:  # Decimal, dates, str subclasses...: their repr (an object's address is not its value)
        text = repr(obj)
        h.update(b"r%s:%s;" % (kind.__name__.encode(), b"" if " at 0x" in text else text.encode()))


def state_digest(state: Any) -> str:
    """A 128-bit hex digest of a state's values (see the module docstring)."""
    h = hashlib.blake2b(digest_size=16)
    _feed(h, state)
    return h.hexdigest()


def with_digest(state: dict) -> dict:
    """``state`` with :data:`DIGEST_KEY` set to the digest of its other keys."""
    body = {k: v for k, v in state.items() if k != DIGEST_KEY}
    return {**body, DIGEST_KEY: state_digest(body)}


def check_digest(state: Mapping, what: str) -> None:
    """Refuse a state whose digest does not match its content, or that has none (every ``state_dict()`` adds
    one: without it an edit would go unnoticed).

    Raises
    ------
    PetastormStateError
        The state was changed or cut after ``state_dict()``; the message names ``what``.
    """
    saved = state.get(DIGEST_KEY)
    if saved is None:
        raise PetastormStateError(f"{what} has no digest: it was changed or cut after state_dict(). Resume from the "
                                  f"state as state_dict() returned it")
    if saved != state_digest({k: v for k, v in state.items() if k != DIGEST_KEY}):
        raise PetastormStateError(f"{what} was changed or cut after state_dict() (its digest does not match its "
                                  f"content): it would resume with rows lost or repeated. Resume from the state "
                                  f"as state_dict() returned it")
