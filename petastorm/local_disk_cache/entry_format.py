"""The format of a local disk cache entry: :func:`serialize_value` and :func:`deserialize_value`.

Values are stored in a format of our own that holds Arrow IPC streams (``pyarrow.Table``,
``pyarrow.RecordBatch``) or ``.npy`` arrays of plain dtypes (``dict[str, numpy.ndarray]``), or nothing
(``None``). Decoding parses Arrow IPC (then fully validates the result) or ``.npy`` headers with
:mod:`petastorm.npy_format`, so nothing read back is ever unpickled or executed; any other value type is
refused when it is stored. A blob that does not decode (truncated, corrupt, forged) raises ``ValueError``.

Blob layout (little endian)::

    0   magic b"PSTCACH2" | kind (u8) | 7 zero bytes | body length (u64) | zeros up to byte 64
    64  body: kind 0 (None): empty; 1 (Table) / 2 (RecordBatch): one Arrow IPC stream;
        3 (arrays): u64 count, then per array u64 name offset, name length, npy offset, npy length
        (offsets from the start of the blob), the UTF-8 names, then each ``.npy`` at a 64-byte boundary.

Reading an entry reads it once into a 64-byte aligned, writable Arrow buffer (:func:`read_stored`); tables
and arrays are views of it (no copy per column or array). Arrays read back are writable; Arrow data is
immutable, as always.
"""
from __future__ import annotations

import os
import struct
from typing import Any

import numpy as np

from petastorm.errors import PetastormArgumentError

__all__ = ["serialize_value", "deserialize_value", "read_stored", "SUPPORTED_VALUE_TYPES"]

SUPPORTED_VALUE_TYPES = ("pyarrow.Table", "pyarrow.RecordBatch",
                         "dict of str to numpy.ndarray (non-object, non-structured dtypes)", "None")

_MAGIC = b"PSTCACH2"
_HEADER = struct.Struct("<8sB7xQ")   # magic, kind, body length
_BODY_START = 64
_COUNT = struct.Struct("<Q")
_ENTRY = struct.Struct("<QQQQ")      # name offset, name length, npy offset, npy length
_ALIGN = 64

_KIND_NONE, _KIND_TABLE, _KIND_BATCH, _KIND_ARRAYS = 0, 1, 2, 3


class _CorruptEntry(ValueError):
    """A stored blob is not a well-formed value of our format."""


def _pad(n: int) -> int:
    return (-n) % _ALIGN


def _unsupported(value: Any, detail: str = "") -> PetastormArgumentError:
    return PetastormArgumentError(
        f"the local disk cache cannot store a value of type {type(value).__module__}.{type(value).__qualname__}"
        f"{detail}; supported value types: {', '.join(SUPPORTED_VALUE_TYPES)}")


def _check_arrays(value: dict) -> None:
    for name, arr in value.items():
        if not isinstance(name, str):
            raise _unsupported(value, f" (key {name!r} is a {type(name).__name__}, not a str)")
        if not isinstance(arr, np.ndarray) or isinstance(arr, np.ma.MaskedArray):
            raise _unsupported(value, f" (entry {name!r} is a {type(arr).__name__}, not a numpy.ndarray)")
        if arr.dtype.hasobject or arr.dtype.names is not None:
            raise _unsupported(value, f" (array {name!r} has dtype {arr.dtype}, which holds Python objects or "
                                      f"fields)")


def _ipc_bytes(value: Any) -> Any:
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, value.schema) as writer:
        if isinstance(value, pa.Table):
            writer.write_table(value)
        else:
            writer.write_batch(value)
    return sink.getvalue()


def serialize_value(value: Any) -> bytes:
    """One blob holding ``value`` (see the module docstring for the layout).

    Parameters
    ----------
    value : pyarrow.Table, pyarrow.RecordBatch, dict of str to numpy.ndarray, or None
        Arrays must not hold Python objects (object or structured dtypes).

    Raises
    ------
    PetastormArgumentError (a ValueError)
        If ``value`` is of another type; the message names it and the supported types.
    """
    import pyarrow as pa

    from petastorm.npy_format import array_to_npy_bytes

    parts: list = []
    if value is None:
        kind = _KIND_NONE
    elif isinstance(value, (pa.Table, pa.RecordBatch)):
        kind = _KIND_TABLE if isinstance(value, pa.Table) else _KIND_BATCH
        parts.append(_ipc_bytes(value))
    elif isinstance(value, dict):
        _check_arrays(value)
        kind = _KIND_ARRAYS
        names = [name.encode("utf-8") for name in value]
        npys = [array_to_npy_bytes(arr) for arr in value.values()]
        offset = _BODY_START + _COUNT.size + _ENTRY.size * len(names)
        name_spans = []
        for raw in names:
            name_spans.append((offset, len(raw)))
            offset += len(raw)
        parts.append(b"")  # the index, filled below
        parts.extend(names)
        npy_spans = []
        for raw in npys:
            pad = _pad(offset)
            parts.append(b"\0" * pad)
            offset += pad
            npy_spans.append((offset, len(raw)))
            parts.append(raw)
            offset += len(raw)
        parts[0] = _COUNT.pack(len(names)) + b"".join(
            _ENTRY.pack(*n, *a) for n, a in zip(name_spans, npy_spans))
    else:
        raise _unsupported(value)
    body_len = sum(len(memoryview(p)) for p in parts)
    head = _HEADER.pack(_MAGIC, kind, body_len)
    return b"".join([head, b"\0" * (_BODY_START - len(head)), *parts])


def _span(blob_len: int, offset: int, length: int, what: str) -> None:
    if offset < _BODY_START or length < 0 or offset + length > blob_len:
        raise _CorruptEntry(f"{what} at bytes [{offset}, {offset + length}) lies outside the entry of {blob_len} "
                            f"bytes")


def _read_ipc(body: Any, kind: int) -> Any:
    import pyarrow as pa

    try:
        with pa.ipc.open_stream(body) as reader:
            if kind == _KIND_TABLE:
                value = reader.read_all()
            else:
                batches = list(reader)
                if len(batches) != 1:
                    raise _CorruptEntry(f"a record batch entry holds {len(batches)} batches")
                value = batches[0]
        # offsets and lengths are checked before anything reads through them
        value.validate(full=True)
    except (pa.ArrowException, OSError) as e:  # pyarrow reports bad flatbuffers as OSError
        raise _CorruptEntry(f"bad Arrow IPC stream: {e}") from e
    return value


def _read_arrays(buf: Any, view: memoryview) -> dict:
    from petastorm.npy_format import npy_bytes_to_array

    (count,) = _COUNT.unpack_from(view, _BODY_START)
    _span(len(view), _BODY_START, _COUNT.size + _ENTRY.size * count, "the array index")
    out = {}
    for i in range(count):
        name_off, name_len, npy_off, npy_len = _ENTRY.unpack_from(view, _BODY_START + _COUNT.size + i * _ENTRY.size)
        _span(len(view), name_off, name_len, f"name {i}")
        _span(len(view), npy_off, npy_len, f"array {i}")
        try:
            name = bytes(view[name_off:name_off + name_len]).decode("utf-8")
        except UnicodeDecodeError as e:
            raise _CorruptEntry(f"name {i} is not UTF-8") from e
        # npy_bytes_to_array refuses object dtypes (it never unpickles) and checks the size against the shape
        out[name] = npy_bytes_to_array(np.frombuffer(buf, np.uint8, npy_len, npy_off))
    return out


def deserialize_value(blob: Any) -> Any:
    """Inverse of :func:`serialize_value`.

    Parameters
    ----------
    blob : bytes-like
        A whole entry. Arrays and tables come back as views of it when it is a ``pyarrow.Buffer`` (pass a
        mutable, 64-byte aligned one for writable, aligned arrays); other bytes-like objects are copied once.

    Raises
    ------
    ValueError
        If ``blob`` is not a well-formed entry. Nothing in ``blob`` is ever unpickled or executed.
    """
    import pyarrow as pa

    from petastorm.errors import PetastormSchemaError

    if not isinstance(blob, pa.Buffer):
        blob = _aligned_copy(blob)
    view = memoryview(blob).cast("B")
    if len(view) < _BODY_START:
        raise _CorruptEntry(f"entry of {len(view)} bytes is shorter than its header")
    magic, kind, body_len = _HEADER.unpack_from(view, 0)
    if magic != _MAGIC:
        raise _CorruptEntry("not a petastorm cache entry (bad magic)")
    if body_len != len(view) - _BODY_START:
        raise _CorruptEntry(f"entry says its body has {body_len} bytes, {len(view) - _BODY_START} present")
    try:
        if kind == _KIND_NONE:
            return None
        if kind in (_KIND_TABLE, _KIND_BATCH):
            return _read_ipc(blob.slice(_BODY_START), kind)
        if kind == _KIND_ARRAYS:
            return _read_arrays(blob, view)
    except (struct.error, PetastormSchemaError) as e:
        raise _CorruptEntry(str(e)) from e
    except ValueError as e:  # numpy refusing a reshape of forged sizes
        if isinstance(e, _CorruptEntry):
            raise
        raise _CorruptEntry(str(e)) from e
    raise _CorruptEntry(f"unknown entry kind {kind}")


def _aligned_copy(data: Any) -> Any:
    import pyarrow as pa

    src = memoryview(data).cast("B")
    buf = pa.allocate_buffer(len(src), resizable=False)
    memoryview(buf).cast("B")[:] = src
    return buf


def read_stored(stored: Any) -> Any:
    """The stored blob as a writable, 64-byte aligned ``pyarrow.Buffer`` (what :func:`deserialize_value` takes).

    Parameters
    ----------
    stored : bytes-like or file
        What diskcache returns for an entry: bytes (small values, kept in SQLite) or a file opened for reading
        (large values, kept as files; it is closed).

    Raises
    ------
    ValueError
        ``stored`` is neither.
    OSError
        The file cannot be read whole.
    """
    import pyarrow as pa

    if isinstance(stored, (bytes, bytearray, memoryview)):
        return _aligned_copy(stored)
    if not hasattr(stored, "readinto"):
        raise _CorruptEntry(f"entry is a {type(stored).__name__}, not bytes")
    try:
        size = os.fstat(stored.fileno()).st_size
        buf = pa.allocate_buffer(size, resizable=False)
        got = stored.readinto(memoryview(buf))
        if got != size:
            raise OSError(f"short read from cache file {getattr(stored, 'name', '?')}: {got} of {size} bytes")
        return buf
    finally:
        stored.close()
