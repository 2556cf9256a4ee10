"""A cache on local disk (``cache_type='local-disk'``), built on ``diskcache.FanoutCache``.

Values are stored as one blob: a pickle (protocol 5) whose large buffers (the numpy arrays of a column
batch) are written out-of-band after it, 64-byte aligned. Reading a value back reads the blob once into
a writable buffer and the arrays are views of it: no per-array copy, no per-cell pickling.
"""
from __future__ import annotations

import os
import pickle
import shutil
import struct
import threading
import warnings
from typing import Any, Callable

from petastorm.cache import CacheBase
from petastorm.errors import PetastormArgumentError

__all__ = ["LocalDiskCache"]

_MAGIC = b"PSTCACH1"
_HEADER = struct.Struct("<8sQQ")   # magic, meta length, number of buffers
_SPAN = struct.Struct("<QQ")       # offset, length of one buffer from the start of the blob
_ALIGN = 64


def _pad(n: int) -> int:
    return (-n) % _ALIGN


def serialize_value(value: Any) -> bytes:
    """One blob holding ``value``: pickle protocol 5 metadata, then its out-of-band buffers (aligned)."""
    buffers: list = []
    meta = pickle.dumps(value, protocol=5, buffer_callback=buffers.append)
    raws = [b.raw() for b in buffers]
    head_len = _HEADER.size + _SPAN.size * len(raws)
    offset = head_len + len(meta)
    spans = []
    parts = [b"", meta]
    for raw in raws:
        pad = _pad(offset)
        parts.append(b"\0" * pad)
        offset += pad
        spans.append((offset, raw.nbytes))
        parts.append(raw)
        offset += raw.nbytes
    parts[0] = _HEADER.pack(_MAGIC, len(meta), len(raws)) + b"".join(_SPAN.pack(*s) for s in spans)
    return b"".join(parts)


def deserialize_value(blob: Any) -> Any:
    """Inverse of :func:`serialize_value`; arrays come back as views of ``blob`` (pass a bytearray
    for writable arrays)."""
    view = memoryview(blob)
    magic, meta_len, n_bufs = _HEADER.unpack_from(view, 0)
    if magic != _MAGIC:
        raise ValueError("not a petastorm cache entry")
    spans = [_SPAN.unpack_from(view, _HEADER.size + i * _SPAN.size) for i in range(n_bufs)]
    meta_start = _HEADER.size + _SPAN.size * n_bufs
    meta = view[meta_start:meta_start + meta_len]
    return pickle.loads(meta, buffers=[view[o:o + n] for o, n in spans])


def _read_stored(stored: Any) -> bytearray:
    """The stored blob as a writable bytearray; ``stored`` is bytes (small values, kept in SQLite) or an
    open file (large values, kept as files)."""
    if isinstance(stored, (bytes, bytearray, memoryview)):
        return bytearray(stored)
    try:
        size = os.fstat(stored.fileno()).st_size
        buf = bytearray(size)
        got = stored.readinto(buf)
        if got != size:
            raise OSError(f"short read from cache file {getattr(stored, 'name', '?')}: {got} of {size} bytes")
        return buf
    finally:
        stored.close()


class LocalDiskCache(CacheBase):
    """A cache on the local file system (an adapter to ``diskcache.FanoutCache``).

    Parameters
    ----------
    path : str
        Directory of the cache (created if missing).
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
        Passed to ``diskcache.FanoutCache`` (see diskcache's settings).

    Raises
    ------
    PetastormArgumentError (a ValueError)
        If ``size_limit_bytes / shards < 5 * expected_row_size_bytes``.
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
        self._path = path
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
            from diskcache import FanoutCache

            with self._lock:
                if self._cache is None:
                    os.makedirs(self._path, exist_ok=True)
                    self._cache = FanoutCache(self._path, self._shards, **self._settings)
                cache = self._cache
        return cache

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
        cache = self._open()
        stored = cache.get(key, default=None, read=True)
        if stored is not None:
            try:
                value = deserialize_value(_read_stored(stored))
            except (OSError, ValueError, pickle.UnpicklingError, EOFError, struct.error) as e:
                warnings.warn(f"local disk cache at {self._path}: entry {key!r} is unreadable ({e}); "
                              f"recomputing it")
            else:
                self.hits += 1
                return value, True
        self.misses += 1
        value = fill_cache_func()
        try:
            blob = serialize_value(value)
        except Exception as e:  # a value pickle cannot handle: serve it, do not cache it
            warnings.warn(f"local disk cache at {self._path}: cannot store entry {key!r} "
                          f"({type(value).__name__}): {e}")
            return value, False
        cache.set(key, blob)
        if cache.volume() > self._size_limit_bytes:
            cache.cull()
        return value, False

    def get(self, key: str, fill_cache_func: Callable[[], Any]) -> Any:
        """The value cached under ``key``; on a miss ``fill_cache_func()`` is evaluated, stored and returned."""
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
