"""A cache on local disk (``cache_type='local-disk'``), built on ``diskcache.FanoutCache``.

Nothing read back from the cache directory is unpickled, so a cache directory that someone else can write
(``/tmp``) cannot make a reader run code:

* values are stored in a format of our own that holds Arrow IPC streams (``pyarrow.Table``,
  ``pyarrow.RecordBatch``) or ``.npy`` arrays of plain dtypes (``dict[str, numpy.ndarray]``), or nothing
  (``None``). Decoding parses Arrow IPC (then fully validates the result) or ``.npy`` headers with
  :mod:`petastorm.npy_format`; any other value type is refused when it is stored;
* diskcache itself pickles keys and values it cannot store raw, and unpickles entries marked so in its
  SQLite database. :class:`SafeDisk` stores keys only as ``str``/``bytes``, values only as ``bytes``, and
  refuses to read entries in pickle mode: :class:`~petastorm.errors.PetastormError` naming the cache.

An entry in our format that does not decode (truncated, corrupt, forged) is treated as a miss: a warning,
then the value is recomputed and stored again. A cache directory removed while the cache is open (by hand, or
by another reader sharing ``cache_location`` that exited its ``with`` block first) is made again and the
entry recomputed: diskcache opens one SQLite connection per thread, and a new thread's connection to a
removed directory fails with ``sqlite3.OperationalError``. An entry diskcache would unpickle is never written by
petastorm, so it is taken as a sign of tampering and raises.

Blob layout (little endian)::

    0   magic b"PSTCACH2" | kind (u8) | 7 zero bytes | body length (u64) | zeros up to byte 64
    64  body: kind 0 (None): empty; 1 (Table) / 2 (RecordBatch): one Arrow IPC stream;
        3 (arrays): u64 count, then per array u64 name offset, name length, npy offset, npy length
        (offsets from the start of the blob), the UTF-8 names, then each ``.npy`` at a 64-byte boundary.

Reading an entry reads it once into a 64-byte aligned, writable Arrow buffer; tables and arrays are views
of it (no copy per column or array). Arrays read back are writable; Arrow data is immutable, as always.
"""
from __future__ import annotations

import os
import shutil
import sqlite3
import struct
import threading
import warnings
from typing import Any, Callable

import diskcache
import numpy as np

from petastorm.cache import CacheBase
from petastorm.errors import PetastormArgumentError, PetastormError
from petastorm.fs_impl.urls import local_directory

__all__ = ["LocalDiskCache", "SafeDisk", "serialize_value", "deserialize_value", "SUPPORTED_VALUE_TYPES"]

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


def _read_stored(stored: Any) -> Any:
    """The stored blob as a writable, 64-byte aligned ``pyarrow.Buffer``; ``stored`` is bytes (small values,
    kept in SQLite) or an open file (large values, kept as files)."""
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


class SafeDisk(diskcache.Disk):
    """A ``diskcache.Disk`` that never pickles nor unpickles.

    Keys are stored raw and must be ``str`` or ``bytes``; values must be ``bytes`` (or a file opened for
    reading). Entries a tampered database marks as pickled (keys or values) are refused, and value file
    names that point outside the cache directory are neither read nor removed.
    """

    def __init__(self, directory: str, min_file_size: int = 0, pickle_protocol: int = 0, **ignored: Any) -> None:
        # ``ignored``: unknown ``disk_*`` settings a foreign Settings table may hold; they configure nothing here
        super().__init__(directory, min_file_size=min_file_size, pickle_protocol=pickle_protocol)

    def _where(self) -> str:
        return f"local disk cache at {os.path.dirname(os.path.abspath(self._directory))}"

    def put(self, key: Any) -> tuple:
        if type(key) not in (str, bytes):
            raise PetastormArgumentError(
                f"{self._where()}: keys must be str or bytes, got {type(key).__name__} {key!r}")
        return super().put(key)

    def get(self, key: Any, raw: bool) -> Any:
        if not raw:
            raise PetastormError(
                f"{self._where()}: refusing to unpickle a key stored in pickle mode in {self._directory} "
                f"(petastorm never writes one: the cache directory was written by something else)")
        return super().get(key, raw)

    def store(self, value: Any, read: bool, key: Any = diskcache.core.UNKNOWN) -> tuple:
        if not read and type(value) is not bytes:
            raise PetastormArgumentError(
                f"{self._where()}: values must be bytes, got {type(value).__name__} (it would be pickled)")
        return super().store(value, read, key=key)

    def _inside(self, filename: Any) -> bool:
        if not isinstance(filename, str) or not filename:
            return False
        root = os.path.realpath(self._directory)
        full = os.path.realpath(os.path.join(self._directory, filename))
        return full.startswith(root + os.sep)

    def fetch(self, mode: int, filename: Any, value: Any, read: bool) -> Any:
        if mode == diskcache.core.MODE_PICKLE:
            where = f"file {os.path.join(self._directory, filename)}" if filename else f"database {self._directory}"
            raise PetastormError(
                f"{self._where()}: refusing to unpickle a value stored in pickle mode ({where}); petastorm never "
                f"writes one: the cache directory was written by something else. Remove it or use another "
                f"cache_location")
        if mode in (diskcache.core.MODE_BINARY, diskcache.core.MODE_TEXT) and not self._inside(filename):
            raise PetastormError(
                f"{self._where()}: refusing to read value file {filename!r}, which is outside the cache directory "
                f"{self._directory}")
        return super().fetch(mode, filename, value, read)

    def remove(self, file_path: Any) -> None:
        if self._inside(file_path):
            super().remove(file_path)


class LocalDiskCache(CacheBase):
    """A cache on the local file system (an adapter to ``diskcache.FanoutCache``).

    Values may be ``pyarrow.Table``, ``pyarrow.RecordBatch``, ``dict[str, numpy.ndarray]`` (arrays of
    non-object dtypes) or None; nothing read from the cache directory is ever unpickled (see the module
    docstring).

    Parameters
    ----------
    path : str or os.PathLike
        Directory of the cache (created if missing); a ``file://`` URL is taken as its path, other URLs are
        refused.
    size_limit_bytes : int
        Largest disk space the cache should use, in bytes; least recently stored entries are evicted
        past it (the cache may exceed it briefly by about one entry per shard).
    expected_row_size_bytes : int
        Approximate size of one entry, in bytes: a sanity check that each shard can hold several.
    shards : int
        Number of independent SQLite shards; more shards, more parallel writers.
    cleanup : bool
        If True, :meth:`cleanup` removes the cache directory.
    **settings
        Passed to ``diskcache.FanoutCache`` (see diskcache's settings); ``disk`` is not accepted.

    Raises
    ------
    PetastormArgumentError (a ValueError)
        If ``size_limit_bytes / shards < 5 * expected_row_size_bytes``, or ``settings`` names ``disk``.
    """

    def __init__(self, path: str, size_limit_bytes: int, expected_row_size_bytes: int, shards: int = 6,
                 cleanup: bool = True, **settings: Any) -> None:
        if shards < 1:
            raise PetastormArgumentError(f"shards must be >= 1, got {shards}")
        if size_limit_bytes / shards < 5 * expected_row_size_bytes:
            raise PetastormArgumentError(
                "Condition 'size_limit_bytes / shards < 5 * expected_row_size_bytes' needs to hold, otherwise, "
                "newly added cached values might end up being immediately evicted. "
                f"Got size_limit_bytes={size_limit_bytes}, shards={shards}, "
                f"expected_row_size_bytes={expected_row_size_bytes}: raise cache_size_limit or lower "
                f"cache_row_size_estimate")
        if "disk" in settings:
            raise PetastormArgumentError("LocalDiskCache: the 'disk' setting is not accepted (values are stored "
                                         "by petastorm's SafeDisk, which never unpickles)")
        self._path = local_directory(path, "cache_location")
        self._size_limit_bytes = size_limit_bytes
        self._expected_row_size_bytes = expected_row_size_bytes
        self._shards = shards
        self._cleanup = cleanup
        # diskcache culls ``cull_limit`` entries at once when a shard is over its limit; with entries as large
        # as a row group, its default (10) empties whole shards. Evict one at a time, then cull() to the limit.
        self._settings = {"size_limit": size_limit_bytes, "eviction_policy": "least-recently-stored",
                          "cull_limit": 1}
        self._settings.update(settings)
        self._init_runtime()

    def _init_runtime(self) -> None:
        self._lock = threading.Lock()
        self._cache = None
        self.hits = 0
        self.misses = 0
        self._open()

    def _open(self) -> Any:
        cache = self._cache
        if cache is None:
            with self._lock:
                if self._cache is None:
                    try:
                        self._cache = self._make_fanout()
                    except sqlite3.OperationalError:
                        # the directory was removed between makedirs and connect (another reader's cleanup)
                        self._cache = self._make_fanout()
                cache = self._cache
        return cache

    def _make_fanout(self) -> Any:
        os.makedirs(self._path, exist_ok=True)
        return diskcache.FanoutCache(self._path, self._shards, disk=SafeDisk, **self._settings)

    @property
    def path(self) -> str:
        """Directory of the cache."""
        return self._path

    def lookup(self, key: str, fill_cache_func: Callable[[], Any]) -> tuple:
        """Like :meth:`get`, and also whether the value came from the cache.

        Returns
        -------
        (value, hit) : tuple of the value and a bool
        """
        if type(key) is not str:
            raise PetastormArgumentError(f"local disk cache at {self._path}: keys must be str, got "
                                         f"{type(key).__name__} {key!r}")
        cache = self._open()
        try:
            stored = cache.get(key, default=None, read=True)  # SafeDisk raises on entries diskcache would unpickle
        except (sqlite3.OperationalError, OSError) as e:
            cache = self._reopen_if_removed(cache, e)
            stored = None
        if stored is not None:
            try:
                value = deserialize_value(_read_stored(stored))
            except (OSError, ValueError) as e:
                warnings.warn(f"local disk cache at {self._path}: entry {key!r} is unreadable ({e}); "
                              f"recomputing it")
            else:
                self.hits += 1
                return value, True
        self.misses += 1
        value = fill_cache_func()
        try:
            blob = serialize_value(value)
        except PetastormArgumentError as e:
            raise PetastormArgumentError(f"local disk cache at {self._path}, entry {key!r}: {e}") from e
        try:
            self._store(cache, key, blob)
        except (sqlite3.OperationalError, OSError) as e:
            try:
                self._store(self._reopen_if_removed(cache, e), key, blob)
            except (sqlite3.OperationalError, OSError) as again:
                raise PetastormError(f"local disk cache at {self._path}: cannot store entry {key!r}: "
                                     f"{type(again).__name__}: {again}") from again
        return value, False

    def _store(self, cache: Any, key: str, blob: bytes) -> None:
        cache.set(key, blob)
        if cache.volume() > self._size_limit_bytes:
            cache.cull()

    def _reopen_if_removed(self, cache: Any, error: BaseException) -> Any:
        """A fresh cache in place of ``cache``, which failed with ``error`` (its directory was removed, or removed
        and made again by another thread or reader: its SQLite files are not ours any more)."""
        warnings.warn(f"local disk cache at {self._path}: {type(error).__name__}: {error}; the directory was "
                      f"probably removed while in use (another reader sharing cache_location exited, or it was "
                      f"deleted): opening it again")
        with self._lock:
            if self._cache is cache:
                self._cache = None  # its connections in other threads still work on the removed files
        return self._open()

    def get(self, key: str, fill_cache_func: Callable[[], Any]) -> Any:
        """The value cached under ``key``; on a miss ``fill_cache_func()`` is evaluated, stored and returned.

        Raises
        ------
        PetastormArgumentError (a ValueError)
            If ``fill_cache_func()`` returns a value of a type the cache cannot store.
        PetastormError
            If the entry under ``key`` is one diskcache would unpickle (a tampered cache directory).
        """
        return self.lookup(key, fill_cache_func)[0]

    def volume(self) -> int:
        """Disk space the cache uses now, in bytes (as diskcache counts it)."""
        return int(self._open().volume())

    def cleanup(self) -> None:
        """Close the cache; remove its directory when the cache was made with ``cleanup=True``.

        The cache may be used again afterwards: it reopens (empty, if it was removed) on the next ``get``.
        """
        with self._lock:
            cache, self._cache = self._cache, None
        if cache is not None:
            cache.close()
        if self._cleanup:
            shutil.rmtree(self._path, ignore_errors=True)

    # Pickled for process-pool workers: the arguments travel, each process opens its own connections.
    def __getstate__(self) -> dict:
        return {k: getattr(self, k) for k in ("_path", "_size_limit_bytes", "_expected_row_size_bytes",
                                               "_shards", "_cleanup", "_settings")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._init_runtime()

    def __repr__(self) -> str:
        return (f"LocalDiskCache(path={self._path!r}, size_limit_bytes={self._size_limit_bytes}, "
                f"expected_row_size_bytes={self._expected_row_size_bytes}, shards={self._shards}, "
                f"cleanup={self._cleanup})")
