"""The ``diskcache.Disk`` of the local disk cache: :class:`SafeDisk`, which never pickles nor unpickles.

diskcache pickles keys and values it cannot store raw, and unpickles entries marked so in its SQLite
database. :class:`SafeDisk` stores keys only as ``str``/``bytes``, values only as ``bytes``, and refuses to
read entries in pickle mode (:class:`~petastorm.errors.PetastormError` naming the cache): an entry diskcache
would unpickle is never written by petastorm, so it is taken as a sign of tampering.
"""
from __future__ import annotations

import os
from typing import Any

import diskcache

from petastorm.errors import PetastormArgumentError, PetastormError

__all__ = ["SafeDisk"]


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
