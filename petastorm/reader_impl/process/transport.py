"""Move worker results between processes without pickling large arrays: pickle protocol 5 + shared memory.

A result is pickled with protocol 5; numpy buffers of at least :data:`INBAND_LIMIT` bytes are taken
out of band and copied (one memcpy) into a shared-memory segment owned by the worker. Only the small
pickle and ``(offset, length)`` descriptors go through the pipe. The parent maps the segment and
unpickles numpy arrays that view it: zero copy on the parent side.

Segments are anonymous ``memfd`` files (Linux): the worker creates one, sends its file descriptor once
over the worker's unix socket (``SCM_RIGHTS``), and reuses it for later results. Nothing is ever named in
``/dev/shm``, so nothing can leak there, even on a crash: the memory goes away with the last mapping.

Reuse is safe because each result gets its own buffer exporter over the parent's mapping (a ctypes
array). The arrays of that result keep the exporter alive; when the last of them is garbage-collected, a
``weakref.finalize`` on it queues a *release* that the pool sends back to the worker, which may then
write into the segment again. A segment is therefore never overwritten while a consumer still holds
arrays on it. Object-dtype (ragged) columns and small buffers are pickled in band as usual.

Zero copy on the worker side too: :meth:`ShmWriter.allocate` hands out arrays that live in a segment
(the worker process installs it as the codecs' batch allocator, where the codecs offer one). A result
whose buffers already lie in such segments is sent as ``(segment, offset, length)`` descriptors, with no
copy; a segment is written again only once no array of the worker and no result in the parent uses it.

Segments outlive their pool: when a pool stops, each worker hands the file descriptors of its segments
back to the parent (``bequest``), which keeps a few of them (:data:`~petastorm.reader_impl.process.segment_cache.SEGMENT_CACHE`, at most
``$PETASTORM_SHM_CACHE_MB``, default 256 MB) and gives them to the workers of the next pool (``gift``).
A segment that results still in the consumer's hands use (the last rows of an epoch, typically) joins
the cache only once the last of them is garbage-collected. A fresh memfd page costs a page fault
(zeroing): copying a result into a fresh segment takes many times longer than into a mapped one (figures in
``benchmarks/README.md``), and a reader made per epoch would pay that for every segment again. The parent
reuses its own mapping of a cached segment. A worker maps every page of a segment in one call
(``MAP_POPULATE``, cheaper than a page fault per 4 KB) when it first writes into it, not before: a fresh
segment at once (it is sized to the result about to be written), an adopted one at its first use. A
worker is dealt an even share of the cache and often leaves some of it unused (with large row groups,
typically one or two segments per pool): populated at adoption, as they were, those cost the worker the
populate and, at its exit, the unmapping of every page, for nothing.

Where ``memfd_create`` or fd passing is missing (not Linux), :data:`TRANSPORT_PIPE` sends everything in
band through the pipe (numpy still pickles each array as one buffer, never cell by cell).
"""
from __future__ import annotations

import itertools
import os
import pickle
import socket
import weakref
from collections import deque
from typing import Any, Callable, Dict, List

from petastorm.reader_impl.process.result_pickle import dumps_result
from petastorm.reader_impl.process.segment_cache import (
    CACHE_MAX_SEGMENTS,
    SEGMENT_CACHE,
    put_later,
)
from petastorm.reader_impl.process.segment_mapping import SegmentMapping, address_of
from petastorm.settings import settings

__all__ = ["ShmWriter", "ShmReader", "default_transport", "TRANSPORT_SHM", "TRANSPORT_PIPE", "INBAND_LIMIT",
           "GIFT_BASE", "shm_supported"]

TRANSPORT_SHM = "shm"
TRANSPORT_PIPE = "pipe"

#: Buffers smaller than this many bytes travel inside the pickle (a memcpy beats a mapping for them).
INBAND_LIMIT = 64 * 1024
#: Free segments a worker keeps for reuse by default; more are unmapped.
MAX_FREE_SEGMENTS = 4
_ALIGN = 64
#: Segment ids the parent gives to segments it hands down (a worker numbers its own from 0).
GIFT_BASE = 1 << 40
_GIFT_IDS = itertools.count()
_SMALL_ROUND = 64 * 1024
_BIG_ROUND = 1024 * 1024


def default_transport() -> str:
    """``'shm'`` where memfd segments and fd passing exist (Linux), else ``'pipe'``.

    ``PETASTORM_POOL_TRANSPORT=pipe`` forces the in-band fallback (see :mod:`petastorm.settings`).
    """
    forced = settings().pool_transport
    if forced in (TRANSPORT_SHM, TRANSPORT_PIPE):
        if forced == TRANSPORT_SHM and not shm_supported():
            return TRANSPORT_PIPE
        return forced
    return TRANSPORT_SHM if shm_supported() else TRANSPORT_PIPE


def shm_supported() -> bool:
    """True where ``os.memfd_create`` and ``socket.send_fds`` both exist."""
    return hasattr(os, "memfd_create") and hasattr(socket, "send_fds") and hasattr(socket, "AF_UNIX")


def _aligned(n: int) -> int:
    return (n + _ALIGN - 1) // _ALIGN * _ALIGN


def _segment_size(need: int) -> int:
    step = _BIG_ROUND if need > _BIG_ROUND else _SMALL_ROUND
    return max(step, (need + step - 1) // step * step)


class _Segment:
    """A worker's segment. Writable again (``free``) once no result in the parent holds it (``remote``)
    and no array of the worker lives on it (``local``, for segments lent by :meth:`ShmWriter.allocate`)."""

    __slots__ = ("sid", "size", "view", "mapping", "remote", "local", "fd")

    def __init__(self, sid: int, size: int, mapping: "SegmentMapping | None", fd: int = -1):
        self.sid = sid
        self.size = size
        self.fd = fd  # kept by the worker, to hand the segment back to the parent when the pool stops
        self.mapping = mapping
        # None while cold: adopted and not written yet, not mapped here (see ShmWriter.adopt and map)
        self.view = memoryview(mapping.exporter()).cast("B") if mapping is not None else None
        self.remote = 0
        self.local = False

    @property
    def cold(self) -> bool:
        return self.mapping is None

    def map(self) -> None:
        """Map a cold segment, every page at once (``MAP_POPULATE``: its pages exist already)."""
        self.mapping = SegmentMapping(self.fd, self.size, populate=True)
        self.view = memoryview(self.mapping.exporter()).cast("B")

    @property
    def free(self) -> bool:
        return self.remote == 0 and not self.local

    def close(self) -> None:
        self.view = None  # unmapped once nothing else views it
        self.mapping = None
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class ShmWriter:
    """Worker side: encodes results; owns the worker's ring of reusable memfd segments.

    Parameters
    ----------
    send : callable
        Sends one small control message (a tuple) to the parent over the worker's connection.
    sock : socket.socket or None
        The same connection as a unix socket, to pass segment file descriptors. None for 'pipe'.
    transport : {'shm', 'pipe'}
    max_free : int
        Free segments kept for reuse (the pool passes its per-worker queue depth + 2, so that steady
        state needs no new segment).
    """

    def __init__(self, send: Callable[[tuple], None], sock: "socket.socket | None", transport: str,
                 max_free: int = MAX_FREE_SEGMENTS):
        self._send = send
        self._max_free = max_free
        self._sock = sock
        self.transport = transport
        self._segments: Dict[int, _Segment] = {}
        self._next_id = 0
        self._lent: Dict[int, _Segment] = {}  # base address -> segment, for segments lent by allocate()
        self.bytes_zero_copy = 0
        self.bytes_copied = 0

    def allocate(self, shape: tuple, dtype: Any) -> "Any | None":
        """An uninitialised C-contiguous array that lives in a segment of its own, or None (not 'shm').

        Sending it (or a view of it) in a result costs no copy. The segment is reused once the array and
        its views are garbage-collected here and the parent released every result that carried it.
        """
        if self.transport != TRANSPORT_SHM:
            return None
        import numpy as np

        dtype = np.dtype(dtype)
        if dtype.hasobject:
            return None
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if nbytes <= 0:
            return None
        seg = self._acquire(nbytes)
        seg.local = True
        exporter = seg.mapping.exporter()
        weakref.finalize(exporter, self._unlend, seg.sid).atexit = False
        self._lent[seg.mapping.addr] = seg
        return np.frombuffer(exporter, dtype=np.uint8, count=nbytes).view(dtype).reshape(shape)

    def _unlend(self, sid: int) -> None:
        """Finalizer (any point of the worker's code): flags only, no message (the next trim sends them)."""
        seg = self._segments.get(sid)
        if seg is None:
            return
        seg.local = False
        if seg.mapping is not None:
            self._lent.pop(seg.mapping.addr, None)

    def _lent_segment(self, raw: memoryview) -> "tuple | None":
        """``(segment, offset)`` if ``raw`` lies inside a segment lent by :meth:`allocate`."""
        if not self._lent:
            return None
        addr = address_of(raw)
        for base, seg in list(self._lent.items()):
            if base <= addr and addr + raw.nbytes <= base + seg.size:
                return seg, addr - base
        return None

    def encode(self, obj: Any) -> tuple:
        """Pickle ``obj``; returns ``('inband', pickle)`` or ``('shm', pickle, [(segment_id, offset, length)])``.

        May first send ``('seg', id, size)`` + the fd, or ``('drop', id)``, messages to the parent.
        """
        if self.transport != TRANSPORT_SHM:
            return ("inband", dumps_result(obj, None))
        bufs: List[memoryview] = []

        def take(pb: pickle.PickleBuffer) -> bool:
            raw = pb.raw()
            if raw.nbytes < INBAND_LIMIT:
                return True  # serialise in band
            bufs.append(raw)
            return False

        header = dumps_result(obj, take, bufs)
        if not bufs:
            return ("inband", header)
        descs: List[tuple] = []
        used: Dict[int, _Segment] = {}
        copies = []
        for raw in bufs:
            found = self._lent_segment(raw)
            if found is not None:
                seg, off = found
                descs.append((seg.sid, off, raw.nbytes))
                if seg.sid not in used:
                    used[seg.sid] = seg
                    seg.remote += 1
                self.bytes_zero_copy += raw.nbytes
                raw.release()
            else:
                descs.append(None)
                copies.append(raw)
        if copies:
            seg = self._acquire(sum(_aligned(b.nbytes) for b in copies))
            seg.remote += 1  # busy before anything (a finalizer's trim) can run
            off = 0
            it = iter(copies)
            for i, d in enumerate(descs):
                if d is None:
                    raw = next(it)
                    n = raw.nbytes
                    seg.view[off:off + n] = raw
                    descs[i] = (seg.sid, off, n)
                    off += _aligned(n)
                    self.bytes_copied += n
                    raw.release()
        return ("shm", header, descs)

    def release(self, segment_ids: List[int]) -> None:
        """The parent dropped the last array of a result on each of these segments (one id per result)."""
        for sid in segment_ids:
            seg = self._segments.get(sid)
            if seg is not None and seg.remote > 0:
                seg.remote -= 1
        self._trim()

    def _acquire(self, need: int) -> _Segment:
        fits = [s for s in self._segments.values() if s.free and s.size >= need]
        if fits:  # the smallest that fits, one already written here first
            seg = min(fits, key=lambda s: (s.cold, s.size))
            if seg.cold:
                try:
                    seg.map()
                except OSError:  # it cannot be mapped here: let it go, and take another or make one
                    del self._segments[seg.sid]
                    seg.close()
                    self._send(("drop", seg.sid))
                    return self._acquire(need)
            return seg
        size = _segment_size(need)
        sid = self._next_id
        self._next_id += 1
        fd = os.memfd_create(f"petastorm-{os.getpid()}-{sid}", os.MFD_CLOEXEC)
        try:
            os.ftruncate(fd, size)
            # populated at once: sized to what is about to be written, so every page is needed, and one call
            # allocates them for less than a page fault each
            mapping = SegmentMapping(fd, size, populate=True)
            self._send(("seg", sid, size))
            socket.send_fds(self._sock, [b"F"], [fd])
        except BaseException:
            os.close(fd)
            raise
        seg = _Segment(sid, size, mapping, fd)
        self._segments[sid] = seg
        self._trim(keep=sid)
        return seg

    def _trim(self, keep: int = -1) -> None:
        """Drop the smallest free segments beyond ``max_free``; cold ones are kept (they are not mapped here,
        and go back to the parent's cache when the pool stops)."""
        free = sorted((s for s in self._segments.values() if s.free and not s.cold and s.sid != keep),
                      key=lambda s: s.size)
        while len(free) > self._max_free:
            seg = free.pop(0)
            del self._segments[seg.sid]
            seg.close()
            self._send(("drop", seg.sid))

    def adopt(self, entries: List[tuple]) -> None:
        """Receive the fds announced by a ``('gift', [(sid, size), ...])`` message: free segments of an
        earlier pool. Each is kept *cold* (its fd only) and mapped with ``MAP_POPULATE`` when first written
        (its pages exist already: one call, no page fault per 4 KB): a gift the worker never uses costs it
        neither the populate nor, at exit, the unmapping of its pages."""
        if self._sock is None or not entries:
            return
        _msg, fds, _flags, _addr = socket.recv_fds(self._sock, 1, len(entries))
        for fd in fds[len(entries):]:
            os.close(fd)
        for (sid, size), fd in zip(entries, fds):
            self._segments[sid] = _Segment(sid, size, None, fd)

    def bequeath(self) -> None:
        """On 'stop': send the segments' fds to the parent, for its next pool (the largest, as many as its
        cache can hold), also those that results in the parent still use: the parent caches each once no
        result uses it (this worker writes nothing more). Always sends the ``('bequest', [...])`` message
        (the parent waits for it, or for the end of the connection)."""
        mine = sorted((seg for seg in self._segments.values() if seg.fd >= 0),
                      key=lambda seg: seg.size, reverse=True)[:CACHE_MAX_SEGMENTS]
        self._send(("bequest", [(seg.sid, seg.size) for seg in mine]))
        if mine and self._sock is not None:
            socket.send_fds(self._sock, [b"B"], [seg.fd for seg in mine])

    def close(self) -> None:
        """Drop every segment (each is unmapped here once nothing views it; the parent keeps its own)."""
        for seg in self._segments.values():
            seg.close()
        self._segments.clear()
        self._lent.clear()


class _Holder:
    """Kept alive by every live result on one segment (see :meth:`ShmReader._holder`)."""

    __slots__ = ("__weakref__",)


class ShmReader:
    """Parent side for one worker: maps the worker's segments and decodes results onto them.

    Each segment is mapped once, with its fd closed at once (``mmap.mmap`` would keep a duplicate open),
    so results held by the consumer cost no file descriptors (but for segments of a stopped pool promised
    to the segment cache, at most as many as it holds: see :meth:`take_bequest`).
    Each decoded result gets its own buffer exporter over the mapping (a ctypes array): every array of
    the result keeps that exporter alive, and a ``weakref.finalize`` on it tells when the last is gone.

    Parameters
    ----------
    sock : socket.socket or None
        The worker's connection as a unix socket (to receive fds).
    key : hashable
        Identifies the worker in release notices.
    releases : collections.deque
        Receives ``(key, segment_id)`` when the last array of a result on that segment is collected
        (appended from whatever thread runs the garbage collector; drained by the pool).
    """

    def __init__(self, sock: "socket.socket | None", key: Any, releases: deque):
        self._sock = sock
        self._key = key
        self._releases = releases
        self._maps: Dict[int, SegmentMapping] = {}
        # segment id -> weak reference to the _Holder that the live results on that segment share
        self._holders: Dict[int, Any] = {}
        self.bytes_shm = 0
        self.bytes_inband = 0
        self.segments_received = 0

    def add_segment(self, sid: int, size: int) -> None:
        """Receive and map the fd announced by a ``('seg', sid, size)`` message."""
        _msg, fds, _flags, _addr = socket.recv_fds(self._sock, 1, 1)
        if not fds:
            raise OSError(f"worker {self._key} announced segment {sid} but sent no file descriptor")
        try:
            self._maps[sid] = SegmentMapping(fds[0], size)
        finally:
            for fd in fds:
                os.close(fd)
        self.segments_received += 1

    def drop_segment(self, sid: int) -> None:
        """The worker unmapped a free segment: drop ours (no result lives on it)."""
        self._maps.pop(sid, None)

    def decode(self, payload: tuple) -> Any:
        """Rebuild the object of an ``encode`` payload (arrays view shared memory, zero copy)."""
        if payload[0] == "inband":
            self.bytes_inband += len(payload[1])
            return pickle.loads(payload[1])
        _kind, header, descs = payload
        bases: Dict[int, memoryview] = {}
        views = []
        for sid, off, n in descs:
            base = bases.get(sid)
            if base is None:
                exporter = self._maps[sid].exporter()
                exporter._holder = self._holder(sid)
                weakref.finalize(exporter, self._releases.append, (self._key, sid)).atexit = False
                base = bases[sid] = memoryview(exporter).cast("B")
                del exporter  # from here on only the views (then the arrays) keep it alive
            views.append(base[off:off + n])
            self.bytes_shm += n
        bases.clear()
        self.bytes_inband += len(header)
        return pickle.loads(header, buffers=views)

    def _live_holder(self, sid: int) -> "_Holder | None":
        """The holder live results on segment ``sid`` share, or None when no result on it is alive."""
        ref = self._holders.get(sid)
        return ref() if ref is not None else None

    def _holder(self, sid: int) -> "_Holder":
        """The object every live result on segment ``sid`` keeps alive (a new one if there is none): it dies
        with the last of them, which tells when a bequeathed segment may go to the cache."""
        holder = self._live_holder(sid)
        if holder is None:
            holder = _Holder()
            self._holders[sid] = weakref.ref(holder)
        return holder

    def discard(self, payload: tuple) -> None:
        """Drop a payload nobody wants (an abandoned item): its segments are released at once."""
        if payload[0] == "shm":
            for sid in dict.fromkeys(d[0] for d in payload[2]):
                self._releases.append((self._key, sid))

    def take_bequest(self, entries: List[tuple]) -> int:
        """Receive the fds of a stopping worker's ``('bequest', [(sid, size), ...])`` into
        :data:`SEGMENT_CACHE`, with our mapping of each: at once for a segment no live result uses, else
        when the last of those results is garbage-collected. Returns how many were kept at once."""
        if self._sock is None or not entries:
            return 0
        cache = SEGMENT_CACHE
        _msg, fds, _flags, _addr = socket.recv_fds(self._sock, 1, len(entries))
        for fd in fds:  # not inherited by programs this process starts meanwhile (os.system, Popen...)
            os.set_inheritable(fd, False)
        kept = 0
        for i, fd in enumerate(fds):
            sid, size = entries[i] if i < len(entries) else (None, 0)
            mapping = self._maps.get(sid)
            if mapping is None or mapping.size != size:
                os.close(fd)
                continue
            holder = self._live_holder(sid)
            if holder is None:
                kept += cache.put(fd, size, mapping)
            else:  # results on it are still alive: cache it after them (never while they may be read),
                # if the cache has room for it now (so that held fds stay within the cache's bounds)
                reservation = cache.reserve(size)
                if reservation is None:
                    os.close(fd)
                else:
                    weakref.finalize(holder, put_later, os.getpid(), cache, reservation, fd, size,
                                     mapping).atexit = False
            del holder
        return kept

    def give(self, send: Callable[[tuple], None], segments: List[tuple]) -> None:
        """Hand cached ``(fd, size, mapping)`` segments to this reader's worker: a ``('gift', ...)``
        message, then their fds; our side reuses the mappings. The fds are closed here either way."""
        if self._sock is None or not segments:
            for fd, _size, _mapping in segments:
                os.close(fd)
            return
        # ids unique in this process, not only for this reader
        entries = [(GIFT_BASE + next(_GIFT_IDS), size) for _fd, size, _m in segments]
        try:
            send(("gift", entries))
            socket.send_fds(self._sock, [b"G"], [fd for fd, _size, _m in segments])
            for (sid, _size), (_fd, _s, mapping) in zip(entries, segments):
                self._maps[sid] = mapping
        except OSError:  # the worker is gone (a start error, say): the pool's consumer sees it and says why
            pass
        finally:
            for fd, _size, _mapping in segments:
                os.close(fd)

    def close(self) -> None:
        """Forget the mappings; those still viewed by live arrays stay valid until the arrays go."""
        self._maps.clear()
