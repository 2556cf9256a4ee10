"""Memory of decoded batches: recycled slabs, the process worker's shared-memory allocator, and views of
fixed-size ``.npy`` cells where they lie (an Arrow buffer, a page buffer, shared memory).

Split out of :mod:`petastorm.codecs`, which uses these helpers to decode fixed-shape columns without a copy.
A process-pool worker (:mod:`petastorm.reader_impl.process.worker_main`) installs its shared-memory
allocator here with :func:`set_batch_allocator`; the codecs know nothing of the pool.
"""
from __future__ import annotations

import ctypes
import os
import threading
import weakref
from typing import Any

import numpy as np

__all__ = ["set_batch_allocator", "empty_batch", "cells_view", "cells_copy_view", "compact_copy", "cell_strides",
           "MIN_BATCH_BYTES"]


class _BatchMemory:
    """Memory of decoded batch arrays, recycled once every view of a batch (the rows handed out) is gone.

    Batches are allocated in the pool's worker threads and freed in the consumer's. Through ``np.empty`` (malloc),
    glibc's per-thread arenas and sliding mmap threshold kept far more memory mapped over a (64, 64) float32 pass
    than the batches in flight; a fresh ``mmap`` per batch releases it but pays the page faults of every batch
    (figures in ``benchmarks/README.md``). Here a batch's array is a view of a ``bytearray`` slab (size rounded up
    to ``granule``) through a ctypes lease; when the lease dies (no view of the batch is left) the slab goes back
    to a short free list and the next batch of that size reuses it (no page faults). Free slabs are at most
    ``keep`` and ``max_free_bytes`` in all (the oldest are dropped). Arrays are writeable and C-contiguous.
    """

    def __init__(self, keep: int = 4, max_free_bytes: int = 256 << 20, min_bytes: int = 1 << 20,
                 granule: int = 1 << 20) -> None:
        self._keep = keep
        self._max_free_bytes = max_free_bytes
        #: Smaller arrays are plain ``np.empty`` (and, in a process worker, are not given shared memory).
        self.min_bytes = min_bytes
        self._granule = granule
        self._free: list = []  # slabs, most recently freed last
        self._lock = threading.Lock()

    def empty(self, shape: tuple, dtype: Any) -> np.ndarray:
        """``np.empty(shape, dtype)`` backed by a recycled slab (small or object arrays: plain ``np.empty``)."""
        dtype = np.dtype(dtype)
        count = int(np.prod(shape, dtype=np.int64))
        nbytes = count * dtype.itemsize
        if nbytes < self.min_bytes or dtype.hasobject:
            return np.empty(shape, dtype)
        if _ALLOCATOR is not None:  # a process-pool worker: decode straight into shared memory
            out = _ALLOCATOR(shape, dtype)
            if out is not None:
                return out
        size = -(-nbytes // self._granule) * self._granule
        slab = None
        with self._lock:
            for i in range(len(self._free) - 1, -1, -1):
                if len(self._free[i]) == size:
                    slab = self._free.pop(i)
                    break
        if slab is None:
            slab = bytearray(size)
        lease = (ctypes.c_char * size).from_buffer(slab)
        weakref.finalize(lease, self._give_back, slab).atexit = False
        return np.frombuffer(lease, dtype=dtype, count=count).reshape(shape)

    def _give_back(self, slab: bytearray) -> None:
        with self._lock:
            self._free.append(slab)
            total = sum(len(s) for s in self._free)
            while self._free and (len(self._free) > self._keep or total > self._max_free_bytes):
                total -= len(self._free.pop(0))


_BATCH_MEMORY = _BatchMemory()
_ALLOCATOR: Any = None
#: Decoded batches smaller than this many bytes are plain ``np.empty`` arrays (not recycled, and not given
#: shared memory in a process worker).
MIN_BATCH_BYTES = _BATCH_MEMORY.min_bytes


def empty_batch(shape: tuple, dtype: Any) -> np.ndarray:
    """``np.empty(shape, dtype)`` for a decoded batch: a recycled slab, or shared memory in a process-pool
    worker (see :class:`_BatchMemory` and :func:`set_batch_allocator`); small or object arrays are plain
    ``np.empty``. Writeable and C-contiguous."""
    return _BATCH_MEMORY.empty(shape, dtype)


def set_batch_allocator(fn: Any) -> None:
    """Let ``fn(shape, dtype) -> ndarray or None`` allocate the decoded batches (>= 1 MiB) of this process.

    A process-pool worker installs its shared-memory allocator here, so fixed-shape columns are decoded
    straight into the memory that crosses to the reader's process (no copy). ``None`` restores the default.
    """
    global _ALLOCATOR
    _ALLOCATOR = fn


_LENT_BUFFERS: "weakref.WeakValueDictionary[int, Any]" = weakref.WeakValueDictionary()
_LENT_LOCK = threading.Lock()


def _locks_after_fork() -> None:
    """In a forked child, fresh locks: another thread of the parent may have held them at the fork."""
    global _LENT_LOCK
    _LENT_LOCK = threading.Lock()
    _BATCH_MEMORY._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_locks_after_fork)


def cells_view(column: Any, start: int, n: int, stride: int, header: Any) -> "np.ndarray | None":
    """The ``(n,) + shape`` array of fixed-size npy cells as a writable view of the Arrow data buffer: each
    row is a C-contiguous array inside its cell, rows ``stride`` bytes apart (no copy). The view keeps the
    buffer alive. Writing into rows is safe: cells do not overlap, the reader decodes each column of a row
    group it read once, and a buffer is lent to one decoded batch at a time (decoding the same column again
    while that batch lives copies it, with whatever was written into it).

    None where a copy is wanted: in a process-pool worker (the batch allocator puts the copy straight into
    shared memory), for an immutable buffer, for a slice of less than half the buffer (the view would keep
    all of it alive), or when cells are not aligned for the dtype or not a whole number of elements apart.
    """
    if _ALLOCATOR is not None:
        return None
    dtype = np.dtype(header.dtype)
    buf = column.buffers()[2]
    if (buf is None or not buf.is_mutable or dtype.hasobject or (buf.address + start) % max(1, dtype.alignment)
            or stride % dtype.itemsize  # torch.from_numpy wants strides in whole elements
            or 2 * n * stride < buf.size):  # a slice (drop partitions): a view would pin the whole buffer
        return None
    with _LENT_LOCK:  # a buffer already lent to live views (the same column decoded again): copy instead
        if _LENT_BUFFERS.get(buf.address) is not None:
            return None
        exporter = (ctypes.c_char * buf.size).from_address(buf.address)
        exporter._arrow_buffer = buf  # keeps the Arrow memory alive as long as any row views it
        _LENT_BUFFERS[buf.address] = exporter
    flat = np.frombuffer(exporter, dtype=np.uint8)
    shape = tuple(header.shape)
    first = flat[start:start + (n - 1) * stride + dtype.itemsize * int(np.prod(shape, dtype=np.int64))]
    return np.ndarray((n,) + shape, dtype=dtype, buffer=first, offset=0, strides=cell_strides(stride, shape, dtype))


def compact_copy(rows: np.ndarray, shape: tuple, dtype: Any) -> np.ndarray:
    """The ``(n,) + shape`` array of ``dtype`` whose rows are the bytes of ``rows`` (uint8, ``(n, row bytes)``,
    any strides), copied into a C-contiguous batch array."""
    out = empty_batch((len(rows),) + tuple(shape), dtype)
    np.copyto(out.view(np.uint8).reshape(rows.shape), rows)
    return out


def cell_strides(stride: int, shape: tuple, dtype: np.dtype) -> tuple:
    """Strides of ``(n,) + shape`` cells ``stride`` bytes apart, each a C-contiguous ``shape`` array."""
    inner = [dtype.itemsize] * (len(shape) + 1)
    for i in range(len(shape) - 1, 0, -1):
        inner[i - 1] = inner[i] * shape[i]
    return (stride,) + tuple(inner[:len(shape)])


def cells_copy_view(data: np.ndarray, start: int, n: int, stride: int, header: Any) -> "np.ndarray | None":
    """In a process-pool worker, for a batch of 1 MiB or more: the cells' whole span copied at once (one
    ``memcpy``, the npy headers between the cells included: ~1% more bytes than the arrays) into the shared
    memory of the batch allocator, and the ``(n,) + shape`` array viewed there with rows ``stride`` bytes
    apart, as :func:`cells_view` does over the Arrow buffer in threads. The transport sends the span and
    rebuilds the same view in the reader's process. None elsewhere, or when the layout does not allow a
    view (alignment, a stride that is not a whole number of elements)."""
    if _ALLOCATOR is None:
        return None
    dtype = np.dtype(header.dtype)
    shape = tuple(header.shape)
    row_bytes = dtype.itemsize * int(np.prod(shape, dtype=np.int64))
    if dtype.hasobject or stride % dtype.itemsize:
        return None
    span = (n - 1) * stride + row_bytes
    if span < MIN_BATCH_BYTES:  # small batches: a compact copy (in band, or packed with others)
        return None
    # the copy keeps the source's position modulo 64 bytes, so an aligned cell stays aligned
    lead = (data.ctypes.data + start) % 64
    if lead % max(1, dtype.alignment):
        return None
    raw = _ALLOCATOR((lead + span,), np.uint8)
    if raw is None:
        return None
    np.copyto(raw[lead:], data[start:start + span])
    return np.ndarray((n,) + shape, dtype=dtype, buffer=raw, offset=lead, strides=cell_strides(stride, shape, dtype))
