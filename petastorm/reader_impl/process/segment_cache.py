"""Free shared-memory segments kept by the parent between process pools (see
:mod:`petastorm.reader_impl.process.transport`, "Segments outlive their pool").

A stopped pool's workers hand their segments back; :data:`SEGMENT_CACHE` keeps up to
``$PETASTORM_SHM_CACHE_MB`` megabytes (default 256; 0 disables it) and 16 segments, each with one file
descriptor and the parent's mapping, and the next pool's workers adopt them instead of faulting fresh pages
in. A segment that results still in the consumer's hands use is *promised* room (:meth:`SegmentCache.reserve`)
and joins once they are gone (:func:`put_later`); :func:`clear_segment_cache` gives everything back.

A new pool deals the cached segments out evenly (:meth:`SegmentCache.take_share`). Each worker used to
take the 5 largest: with 6 cached 38 MB segments (224x224 JPEG, 250-row row groups) the second worker got
one and faulted in a fresh segment every pass while another stayed cached. Dealing them evenly about halved
the page faults of a JPEG reader (figures in ``benchmarks/README.md``).
"""
from __future__ import annotations

import atexit
import os
import threading
from typing import Any, List

from petastorm.errors import PetastormArgumentError
from petastorm.settings import settings

__all__ = ["SegmentCache", "SEGMENT_CACHE", "clear_segment_cache", "put_later", "CACHE_MAX_SEGMENTS"]

#: Segments the cache holds at most (cached and promised together).
CACHE_MAX_SEGMENTS = 16


class _Reservation:
    """Room in a :class:`SegmentCache` promised to a segment that joins later."""

    __slots__ = ("size", "__weakref__")

    def __init__(self, size: int):
        self.size = size


class SegmentCache:
    """Free segments of stopped pools, kept by the parent for its next pool: ``(fd, size, mapping)``.

    At most ``$PETASTORM_SHM_CACHE_MB`` megabytes (default 256; 0 disables it) and 16 segments; what does
    not fit is closed. Each entry holds one file descriptor and the parent's mapping (whose pages stay
    allocated: that is the point). :func:`clear_segment_cache` gives the memory back.
    """

    def __init__(self) -> None:
        self._items: List[tuple] = []
        # room promised to segments that join later (see reserve); a set of _Reservation objects, so that
        # the finalizer giving one back needs no lock (set.remove is atomic under the GIL)
        self._pending: set = set()
        self._lock = threading.Lock()

    @staticmethod
    def limit_bytes() -> int:
        """``$PETASTORM_SHM_CACHE_MB`` in bytes (see :mod:`petastorm.settings`). A bad value gives 0 here
        (this runs in finalizers, where raising would leak the descriptor): the pool's start raises it."""
        try:
            return settings().shm_cache_bytes
        except PetastormArgumentError:
            return 0

    def put(self, fd: int, size: int, mapping: Any) -> bool:
        """Keep the segment if it fits (the cache owns ``fd`` from here on); False when it was closed.

        Never waits for the lock: this runs in a pool's finalizer, i.e. inside any garbage collection,
        possibly in a thread that holds the lock in :meth:`take` (then the segment is simply let go).
        """
        limit = self.limit_bytes()
        if self._lock.acquire(blocking=False):
            try:
                if self._fits(size, limit):
                    os.set_inheritable(fd, False)
                    self._items.append((fd, size, mapping))
                    return True
            finally:
                self._lock.release()
        os.close(fd)
        return False

    def _fits(self, size: int, limit: int) -> bool:
        """(Lock held.) Whether one more segment of ``size`` bytes fits beside the cached and promised ones."""
        count = len(self._items) + len(self._pending)
        total = sum(item[1] for item in self._items) + sum(r.size for r in self._pending)
        return count < CACHE_MAX_SEGMENTS and total + size <= limit

    def reserve(self, size: int) -> "_Reservation | None":
        """Promise room for a segment that joins later (:meth:`put_reserved`), within the same limits, or
        None (no room, or the lock is busy): the caller then lets the segment go at once."""
        limit = self.limit_bytes()
        if not self._lock.acquire(blocking=False):
            return None
        try:
            if not self._fits(size, limit):
                return None
            reservation = _Reservation(size)
            self._pending.add(reservation)
            return reservation
        finally:
            self._lock.release()

    def put_reserved(self, reservation: "_Reservation", fd: int, size: int, mapping: Any) -> bool:
        """:meth:`put` a segment whose room was reserved; closed instead if :meth:`clear` ran since."""
        try:
            self._pending.remove(reservation)
        except KeyError:  # cleared (or forked) meanwhile: the memory is given back
            os.close(fd)
            return False
        return self.put(fd, size, mapping)

    def take(self, n: int) -> List[tuple]:
        """Up to ``n`` cached segments, largest first; the caller owns their fds."""
        with self._lock:
            self._items.sort(key=lambda item: item[1])
            out = self._items[-n:] if n > 0 else []
            del self._items[len(self._items) - len(out):]
        return out[::-1]

    def take_share(self, parts: int) -> List[tuple]:
        """One of ``parts`` even shares of the cached segments (``ceil(len / parts)`` of them, every
        ``parts``-th by size, so each share mixes large and small ones), largest first; the caller owns their
        fds. A pool of ``n`` workers gives worker ``i`` ``take_share(n - i)``: every cached segment goes to
        a worker, and none gets more of them than another."""
        parts = max(1, int(parts))
        with self._lock:
            self._items.sort(key=lambda item: item[1], reverse=True)
            out = self._items[::parts]
            del self._items[::parts]
        return out

    def forget_after_fork(self) -> None:
        """In a forked child: drop the inherited entries without touching the parent's (their memory is
        shared with the parent, whose next pool may hand it out: this process must never write to it)."""
        self._lock = threading.Lock()  # the parent's may have been held by another thread at the fork
        self._pending = set()
        items, self._items = self._items, []
        for fd, _size, _mapping in items:
            try:
                os.close(fd)  # this process's copy of the descriptor
            except OSError:
                pass

    def clear(self) -> None:
        """Close every cached segment, and cancel the promised ones (they are let go when they arrive)."""
        with self._lock:
            items, self._items = self._items, []
            self._pending = set()
        for fd, _size, _mapping in items:
            try:
                os.close(fd)
            except OSError:
                pass

    @property
    def nbytes(self) -> int:
        with self._lock:
            return sum(item[1] for item in self._items)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


#: The process-wide cache of free segments (parent side); emptied at interpreter exit.
SEGMENT_CACHE = SegmentCache()
atexit.register(SEGMENT_CACHE.clear)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=SEGMENT_CACHE.forget_after_fork)


def clear_segment_cache() -> None:
    """Give back the shared memory kept for the next process pool (see :class:`SegmentCache`)."""
    SEGMENT_CACHE.clear()


def put_later(pid: int, cache: SegmentCache, reservation: _Reservation, fd: int, size: int,
              mapping: Any) -> None:
    """A bequeathed segment whose last result just died goes to the cache, in the process that received
    it only: a forked child's copy of the descriptor is closed (the memory is the parent's to hand out)."""
    if os.getpid() == pid:
        cache.put_reserved(reservation, fd, size, mapping)
    else:
        try:
            os.close(fd)
        except OSError:
            pass
