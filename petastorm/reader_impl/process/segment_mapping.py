"""A shared mapping of a memfd segment, unmapped when the last buffer over it is garbage-collected.

``mmap.mmap`` keeps a duplicate of the file descriptor open for as long as the mapping lives; a worker and
the parent map many segments, so :class:`SegmentMapping` calls ``mmap``/``munmap`` through ctypes instead
and keeps no descriptor. Each :meth:`SegmentMapping.exporter` is a ctypes array over the whole mapping that
keeps it alive: the arrays of a result hold theirs, so a segment stays mapped while any of them lives.
"""
from __future__ import annotations

import ctypes
import mmap
import os
from typing import Any

__all__ = ["SegmentMapping", "address_of"]


def address_of(raw: memoryview) -> int:
    """Address of the first byte of a (read-only) contiguous buffer."""
    import numpy as np

    return int(np.frombuffer(raw, dtype=np.uint8).__array_interface__["data"][0])


_LIBC: Any = None


def _libc() -> Any:
    global _LIBC
    if _LIBC is None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                              ctypes.c_long]
        libc.munmap.restype = ctypes.c_int
        libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        _LIBC = libc
    return _LIBC


class SegmentMapping:
    """A shared mapping of a memfd that, unlike ``mmap.mmap``, keeps no duplicate of the fd open.

    Unmapped when the last :meth:`exporter` over it (and the mapping itself) is garbage-collected.
    """

    __slots__ = ("addr", "size", "_ctype", "_munmap", "__weakref__")

    def __init__(self, fd: int, size: int, populate: bool = False):
        libc = _libc()
        self._munmap = libc.munmap  # held here: at interpreter exit module globals may already be gone
        flags = mmap.MAP_SHARED | (getattr(mmap, "MAP_POPULATE", 0x8000) if populate else 0)
        addr = libc.mmap(None, size, mmap.PROT_READ | mmap.PROT_WRITE, flags, fd, 0)
        if addr is None or addr == ctypes.c_void_p(-1).value:
            err = ctypes.get_errno()
            raise OSError(err, f"mmap of a {size}-byte shared-memory segment failed: {os.strerror(err)}")
        self.addr = addr
        self.size = size
        self._ctype = ctypes.c_char * size

    def exporter(self) -> Any:
        """A new buffer object over the whole mapping; it keeps the mapping alive."""
        arr = self._ctype.from_address(self.addr)
        arr._mapping = self
        return arr

    def __del__(self) -> None:
        munmap, addr = getattr(self, "_munmap", None), getattr(self, "addr", None)
        if munmap is not None and addr is not None:  # (no addr: the mmap failed)
            munmap(addr, self.size)
