"""Parse and write ``.npy`` bytes without ``ast.literal_eval``.

numpy's own reader parses the header with ``ast.literal_eval``, and CPython's parser is not thread-safe on
3.11 (python/cpython#106905): readers that decode in threads crashed intermittently. The header is a tiny
Python dict literal of three known keys, so a strict regular expression reads it, and the data is then a
plain ``np.frombuffer`` view.
"""
from __future__ import annotations

import re
import struct
from typing import NamedTuple

import numpy as np

from petastorm.errors import PetastormSchemaError

__all__ = ["NpyHeader", "parse_npy_header", "npy_bytes_to_array", "array_to_npy_bytes"]

_MAGIC = b"\x93NUMPY"
_HEADER_RE = re.compile(
    r"""\{\s*
    (?=(?:[^}]*?)'descr'\s*:\s*'(?P<descr>[^']*)')
    (?=(?:[^}]*?)'fortran_order'\s*:\s*(?P<fortran>True|False))
    (?=(?:[^}]*?)'shape'\s*:\s*\((?P<shape>[^)]*)\))
    """,
    re.VERBOSE,
)


class NpyHeader(NamedTuple):
    """A parsed ``.npy`` header.

    Attributes
    ----------
    dtype : numpy.dtype
    fortran_order : bool
    shape : tuple of int
    data_offset : int
        Bytes from the start of the ``.npy`` bytes to the first data byte.
    """

    dtype: np.dtype
    fortran_order: bool
    shape: tuple
    data_offset: int


def parse_npy_header(buf: bytes | memoryview | np.ndarray) -> NpyHeader:
    """Parse the header of ``.npy`` bytes (format versions 1, 2 and 3).

    Raises
    ------
    PetastormSchemaError
        If the bytes are not a ``.npy`` array of a plain (non-object, non-structured) dtype.
    """
    mv = memoryview(buf).cast("B") if not isinstance(buf, np.ndarray) else memoryview(buf.view(np.uint8))
    if len(mv) < 10 or bytes(mv[:6]) != _MAGIC:
        raise PetastormSchemaError("value is not .npy bytes (bad magic)")
    major = mv[6]
    if major == 1:
        (hlen,) = struct.unpack("<H", bytes(mv[8:10]))
        start = 10
    elif major in (2, 3):
        (hlen,) = struct.unpack("<I", bytes(mv[8:12]))
        start = 12
    else:
        raise PetastormSchemaError(f"unsupported .npy format version {major}")
    header = bytes(mv[start:start + hlen]).decode("utf8" if major == 3 else "latin1")
    m = _HEADER_RE.match(header)
    if m is None:
        raise PetastormSchemaError(f"unsupported .npy header {header.strip()!r}")
    descr = m.group("descr")
    try:
        dtype = np.dtype(descr)
    except TypeError as e:
        raise PetastormSchemaError(f"unsupported .npy dtype {descr!r}: {e}") from e
    if dtype.hasobject:
        raise PetastormSchemaError(f".npy dtype {descr!r} holds Python objects; refusing to unpickle them")
    shape_text = m.group("shape").strip()
    try:
        # Python 2 wrote longs as '3L'
        shape = tuple(int(x.strip().rstrip("lL")) for x in shape_text.split(",") if x.strip()) if shape_text else ()
    except ValueError:
        raise PetastormSchemaError(f"malformed .npy shape {shape_text!r} in header {header.strip()!r}") from None
    if any(d < 0 for d in shape):
        raise PetastormSchemaError(f"malformed .npy shape {shape_text!r}: negative dimension")
    return NpyHeader(dtype, m.group("fortran") == "True", shape, start + hlen)


def npy_bytes_to_array(buf: bytes | memoryview) -> np.ndarray:
    """Decode ``.npy`` bytes into an array (a read-only view of ``buf`` when possible).

    Parameters
    ----------
    buf : bytes-like
        The whole ``.npy`` value.
    """
    header = parse_npy_header(buf)
    count = int(np.prod(header.shape, dtype=np.int64)) if header.shape else 1
    available = len(memoryview(buf).cast("B")) - header.data_offset
    if count * header.dtype.itemsize > available:
        raise PetastormSchemaError(
            f".npy value too short: shape {header.shape} of {header.dtype} needs {count * header.dtype.itemsize} "
            f"bytes, {available} present")
    arr = np.frombuffer(buf, dtype=header.dtype, count=count, offset=header.data_offset)
    if header.fortran_order:
        return arr.reshape(header.shape[::-1]).transpose()
    return arr.reshape(header.shape)


def array_to_npy_bytes(value: np.ndarray) -> bytearray:
    """Encode an array as ``.npy`` bytes (what ``np.save`` writes), as a ``bytearray``."""
    from io import BytesIO

    memfile = BytesIO()
    np.save(memfile, value, allow_pickle=False)
    return bytearray(memfile.getbuffer())
