"""Placing each reader batch on the device in a few pages and cutting its batches there, several per call.

Why: JAX has a fixed cost per array it creates from the host (``jax.device_put``: ~20 us per array on a CPU
host, whatever its size) and per jitted call (~60 us, even for one output), while a jitted call's *outputs* cost
only ~3 us each. A batch of 1,024 rows of 20 ``float32`` columns put column by column costs ~430 us;
stacked and split by one jitted call per batch (:mod:`petastorm.jax_impl.transfer`) ~130-170 us. Here:

1. The shared core (:class:`~petastorm.adapters.BatchPipeline`) gives every reader batch to
   :meth:`ChunkPlacer.register` (its ``chunk_fn``) before cutting it; nothing is copied then.
2. When ``convert`` later receives a batch whose columns are all views of one registered reader batch, at
   one row offset, of exactly ``batch_size`` rows (no shuffling, no ``transform_fn``, the batch not
   straddling two reader batches), its small columns (at most ``CHUNK_MAX_BYTES`` per batch) are served
   from a page of the reader batch on the device: ``c * G`` batches' rows from that offset on (``c`` =
   1..8 calls, covering the reader batch if it fits in 4 MiB), stacked on the host per group of columns
   of one dtype and cell shape (one ``(k, page rows) + cell`` copy per group; rows past the reader batch
   are zeros) and moved in one transfer (aliasing the host copy on CPU). One page at a time is kept; the
   next page starts where the last one ended, so no row is copied twice while batches follow each other.
3. One jitted call cuts ``G`` batches (``G * columns`` outputs, ``G = 96 // columns`` clamped to 1..8)
   from the page with ``lax.dynamic_slice`` at a traced start row, so it is compiled once per column
   layout, batch size and page shape (at most 8), not once per offset or reader batch size. Batches past
   the reader batch's end are never served.

Per batch of 1,024 rows x 20 float32 columns on a 2-core CPU host this costs ~3 us per output array plus
``1/G`` of a dispatch plus ``1/(c G)`` of a page placement (~0.5 ms): ~50-100 us instead of ~130-170.
Anything else (a shuffled batch, a ``transform_fn``'s output, a batch straddling two reader batches, the
short last batch, a resumed prefetched batch, columns too wide to stack, a sharding over several devices)
is served by :class:`~petastorm.jax_impl.transfer.BatchTransfer`. Which rows form each batch is
the core's decision alone: this module only recognises where the rows of a batch already lie.

Memory: one page on the host and the device (at most 4 MiB unless one call needs more; on CPU the device
page aliases the host one), and references to the last two reader batches registered (one more than the
core would hold).
"""
from __future__ import annotations

import functools
from collections import deque
from typing import Any, Callable, Deque, Dict, List, Mapping, Optional, Tuple

import numpy as np

__all__ = ["CHUNK_MAX_BYTES", "ChunkPlacer", "batches_per_call", "page_rows"]

#: Columns of at most this many bytes per batch are cut on the device (float32 scalars up to batch_size 2048).
#: Measured (20 float32 columns, 2-core CPU host): at 4 KiB per column 1.3x faster than the per-batch path,
#: at 8 KiB even, at 32 KiB 10 % slower.
CHUNK_MAX_BYTES = 8 << 10

_KINDS = "biufc"
_NO_ROOT = object()
_KEEP = 2                 # reader batches remembered (the current one and the one before)
_MAX_OUTPUTS = 96         # outputs per jitted call (compile time grows with them: ~1 s at 100 on CPU)
_MAX_G = 8
_PAGE_CALLS = 8          # calls per page, at most
_PAGE_BYTES = 4 << 20    # bytes per page, at most (unless one call needs more)


def batches_per_call(n_columns: int) -> int:
    """``G``: batches cut per jitted call for ``n_columns`` stacked columns."""
    return max(1, min(_MAX_G, _MAX_OUTPUTS // max(1, n_columns)))


def _pointer(array: np.ndarray) -> int:
    return array.__array_interface__["data"][0]


def page_rows(rows: int, batch_size: int, g: int, row_bytes: int) -> int:
    """Rows of a page: ``c * g * batch_size``, ``c`` calls (1..8) covering the reader batch's ``rows`` if they
    can, in at most ``_PAGE_BYTES`` of ``row_bytes`` rows (a page copied in the caches); so at most 8 page
    shapes, 8 compilations, per column layout and batch size."""
    step = g * batch_size
    calls = min(_PAGE_CALLS, -(-rows // step), max(1, _PAGE_BYTES // max(1, step * row_bytes)))
    return calls * step


@functools.lru_cache(maxsize=32)
def _cutter(group_sizes: Tuple[int, ...], batch_size: int, g: int) -> Callable:
    """Jitted ``(pages, start) -> [column arrays of batch 0, of batch 1, ...]``: ``g`` batches from row ``start``
    of page stacks of shape ``(k, page rows) + cell``. ``start`` is traced, so it compiles once per
    column layout, batch size, ``g`` and page shape, not per offset."""
    import jax
    from jax import lax

    def cut(pages: tuple, start: Any) -> list:
        blocks = [lax.dynamic_slice_in_dim(page, start, g * batch_size, axis=1) for page in pages]
        out = []
        for i in range(g):
            for block, k in zip(blocks, group_sizes):
                out.extend(block[j, i * batch_size:(i + 1) * batch_size] for j in range(k))
        return out

    return jax.jit(cut)


class _Chunk:
    """One reader batch: its columns, their memory, and (once a batch of it is served) its device stacks."""

    def __init__(self, columns: Mapping[str, np.ndarray]) -> None:
        self.columns = dict(columns)
        self.names = tuple(self.columns)
        self.roots = {}
        self.pointers: Dict[str, int] = {}   # address of each column's first row, once asked
        self.rows = -1
        for name, col in self.columns.items():
            self.roots[name] = col[:0].base if isinstance(col, np.ndarray) else None
            self.rows = len(col) if self.rows < 0 else self.rows
        # a root of None (not an array) matches nothing: a batch column's base is never this sentinel
        self.root_list = tuple(_NO_ROOT if r is None else r for r in self.roots.values())
        self.groups: Optional[List[List[str]]] = None   # stacked columns per group; [] when nothing qualifies
        self.stacked_names: Tuple[str, ...] = ()
        self.n_stacked = 0
        self.g = 1
        self.page_rows = -1
        self.page_start = -1             # the first row of the page placed on the device, and its stacks
        self.pages: Optional[tuple] = None
        self.cache_start = -1
        self.cache: List[Any] = []

    def offset_of(self, columns: Mapping[str, Any], batch_size: int) -> int:
        """Row offset of ``columns`` in this reader batch, or -1 when they are not all views of it there."""
        if tuple(columns) != self.names:
            return -1
        for col, root in zip(columns.values(), self.root_list):  # views of these columns (~0.1 us a column)
            if getattr(col, "base", None) is not root:
                return -1
        first = columns[self.names[0]]
        if type(first) is not np.ndarray or len(first) != batch_size:  # the core cuts every column alike
            return -1
        return self._offset(self.names[0], first, batch_size)

    def _offset(self, name: str, col: np.ndarray, batch_size: int) -> int:
        source = self.columns[name]
        start = self.pointers.get(name)
        if start is None:
            start = self.pointers[name] = _pointer(source)
        step = source.strides[0]
        delta = _pointer(col) - start
        if step <= 0 or delta % step or col.strides != source.strides:
            return -1
        offset = delta // step
        return offset if 0 <= offset <= self.rows - batch_size else -1

    def same_offset(self, columns: Mapping[str, np.ndarray], offset: int, batch_size: int) -> bool:
        return all(self._offset(n, columns[n], batch_size) == offset for n in self.names)


class ChunkPlacer:
    """Serves batches that are row ranges of a registered reader batch from one device copy of it.

    Parameters
    ----------
    batch_size : int
        Rows per batch; only batches of exactly this many rows are served.
    device : jax.Device or jax.sharding.SingleDeviceSharding, optional
        Where to place (None: JAX's default device).
    group_max_bytes : int
        Columns whose ``batch_size`` rows exceed this many bytes are left to the per-batch path (there the
        per-array costs this module saves are small next to the copies it adds).
    """

    def __init__(self, batch_size: int, device: Any = None, group_max_bytes: int = CHUNK_MAX_BYTES) -> None:
        self.batch_size = batch_size
        self.device = device
        self.group_max_bytes = group_max_bytes
        self._chunks: Deque[_Chunk] = deque(maxlen=_KEEP)

    def register(self, columns: Mapping[str, Any]) -> Mapping[str, Any]:
        """The core's ``chunk_fn``: remember a reader batch (no copy) and return it unchanged."""
        self._chunks.append(_Chunk(columns))
        return columns

    def __call__(self, columns: Mapping[str, Any]) -> Optional[Dict[str, Any]]:
        """``{name: jax.Array}`` for the stacked columns of a batch that is a row range of a registered reader
        batch (the other columns are the caller's), or None when the batch is not one."""
        bs = self.batch_size
        for chunk in reversed(self._chunks):
            offset = chunk.offset_of(columns, bs)
            if offset >= 0:
                return self._serve(chunk, columns, offset)
        return None

    def _serve(self, chunk: _Chunk, columns: Mapping[str, np.ndarray], offset: int) -> Optional[Dict[str, Any]]:
        bs = self.batch_size
        if chunk.groups is None:
            self._plan(chunk)
        if not chunk.groups:
            return None
        index = (offset - chunk.cache_start) // bs if chunk.cache_start >= 0 else -1
        if chunk.cache_start < 0 or (offset - chunk.cache_start) % bs or not 0 <= index < chunk.g:
            if not chunk.same_offset(columns, offset, bs):  # checked for every column once per call
                return None
            chunk.cache = self._cut(chunk, offset)
            chunk.cache_start, index = offset, 0
        n = chunk.n_stacked
        arrays = chunk.cache[index * n:(index + 1) * n]
        return dict(zip(chunk.stacked_names, arrays))

    def _plan(self, chunk: _Chunk) -> None:
        bs = self.batch_size
        by_kind: Dict[Tuple[str, Tuple[int, ...]], List[str]] = {}
        for name, col in chunk.columns.items():
            if type(col) is np.ndarray and col.dtype.kind in _KINDS and col.ndim >= 1 \
                    and col.itemsize * int(np.prod(col.shape[1:], dtype=np.int64)) * bs <= self.group_max_bytes:
                by_kind.setdefault((col.dtype.str, col.shape[1:]), []).append(name)
        chunk.groups = list(by_kind.values()) if chunk.rows >= 2 * bs else []  # else not worth a stack
        chunk.stacked_names = tuple(name for names in chunk.groups for name in names)
        chunk.n_stacked = len(chunk.stacked_names)
        chunk.g = batches_per_call(chunk.n_stacked)

    def _cut(self, chunk: _Chunk, offset: int) -> List[Any]:
        """The ``g`` batches from ``offset`` (rows past the reader batch's end are zeros, never served), cut by
        one jitted call from the page starting ``c * g`` batches before it at most; a page is placed when
        none holds them (one host stack and one transfer per group of columns), from ``offset`` on, so
        pages do not overlap while batches follow each other. Waits for the batches."""
        import jax

        bs, g = self.batch_size, chunk.g
        if chunk.page_rows < 0:
            row_bytes = sum(chunk.columns[n].itemsize * int(np.prod(chunk.columns[n].shape[1:], dtype=np.int64))
                            for n in chunk.stacked_names)
            chunk.page_rows = page_rows(chunk.rows, bs, g, row_bytes)
        size = chunk.page_rows
        start = offset - chunk.page_start
        if chunk.page_start < 0 or start < 0 or start % (g * bs) or start >= size:
            chunk.page_start, chunk.pages, start = offset, None, 0  # the previous page is no longer needed
            hi = min(chunk.rows, offset + size)
            hosts = []
            for names in chunk.groups:
                first = chunk.columns[names[0]]
                host = np.empty((len(names), size) + first.shape[1:], dtype=first.dtype)
                for j, name in enumerate(names):
                    host[j, :hi - offset] = chunk.columns[name][offset:hi]
                if hi - offset < size:
                    host[:, hi - offset:] = 0
                hosts.append(host)
            chunk.pages = tuple(jax.device_put(hosts, self.device, may_alias=True))
        out = _cutter(tuple(len(names) for names in chunk.groups), bs, g)(chunk.pages, np.int32(start))
        jax.block_until_ready(out[-1])  # one executable: its outputs are ready together
        return out
