"""Caches for the values a reader's workers produce (one per work item), keyed by strings.

:class:`NullCache` caches nothing; :class:`petastorm.local_disk_cache.LocalDiskCache` keeps values on
local disk so that later epochs skip reading and decoding. It stores ``pyarrow.Table``, ``pyarrow.RecordBatch``,
``dict[str, numpy.ndarray]`` (non-object dtypes) and None, and never unpickles what it reads back, so a cache
directory others can write cannot make a reader run code.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Callable

__all__ = ["CacheBase", "NullCache"]


class CacheBase(ABC):
    """A cache of values by key."""

    @abstractmethod
    def get(self, key: str, fill_cache_func: Callable[[], Any]) -> Any:
        """The value stored under ``key``; on a miss, ``fill_cache_func()`` is evaluated, stored and returned.

        Parameters
        ----------
        key : str
            Identifies the entry.
        fill_cache_func : callable with no arguments
            Produces the value on a miss.
        """

    def cleanup(self) -> None:
        """Release the cache's resources (and its storage, where the cache owns it)."""


class NullCache(CacheBase):
    """A pass-through cache: ``fill_cache_func`` is called on every ``get``."""

    def get(self, key: str, fill_cache_func: Callable[[], Any]) -> Any:
        return fill_cache_func()
