"""A cache on local disk (``cache_type='local-disk'``), built on ``diskcache.FanoutCache``.

Nothing read back from the cache directory is unpickled, so a cache directory that someone else can write
(``/tmp``) cannot make a reader run code:

* values are stored in a format of our own that holds Arrow IPC streams (``pyarrow.Table``,
  ``pyarrow.RecordBatch``) or ``.npy`` arrays of plain dtypes (``dict[str, numpy.ndarray]``), or nothing
  (``None``). Decoding parses Arrow IPC (then fully validates the result) or ``.npy`` headers with
  :mod:`petastorm.npy_format`; any other value type is refused when it is stored (the format:
  :mod:`petastorm.local_disk_cache.entry_format`);
* diskcache itself pickles keys and values it cannot store raw, and unpickles entries marked so in its
  SQLite database. :class:`SafeDisk` (:mod:`petastorm.local_disk_cache.safe_disk`) stores keys only as
  ``str``/``bytes``, values only as ``bytes``, and refuses to read entries in pickle mode:
  :class:`~petastorm.errors.PetastormError` naming the cache.

An entry in our format that does not decode (truncated, corrupt, forged) is treated as a miss: a warning,
then the value is recomputed and stored again. A cache directory removed while the cache is open (by hand, or
by another reader sharing ``cache_location`` that exited its ``with`` block first) is made again and the
entry recomputed: diskcache opens one SQLite connection per thread, and a new thread's connection to a
removed directory fails with ``sqlite3.OperationalError``. An entry diskcache would unpickle is never written by
petastorm, so it is taken as a sign of tampering and raises.
"""
from __future__ import annotations

import os
import shutil
import sqlite3
import threading
import warnings
from typing import Any, Callable

import diskcache

from petastorm.cache import CacheBase
from petastorm.errors import PetastormArgumentError, PetastormError
from petastorm.fs_impl.urls import local_directory
from petastorm.local_disk_cache.entry_format import (
    SUPPORTED_VALUE_TYPES,
    deserialize_value,
    read_stored,
    serialize_value,
)
from petastorm.local_disk_cache.safe_disk import SafeDisk

__all__ = ["LocalDiskCache", "SafeDisk", "serialize_value", "deserialize_value", "SUPPORTED_VALUE_TYPES"]


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
                value = deserialize_value(read_stored(stored))
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
