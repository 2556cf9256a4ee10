"""Whole batches of one reader batch placed a block at a time: one host page, one transfer, batches cut on the
device several per jitted call.

Why: JAX has a fixed cost per array it creates from the host (``jax.device_put``, whatever its size) and per
jitted call, while a jitted call's *outputs* cost much less each. A batch of many small columns put column by
column pays the first cost per column; stacked and split by one jitted call per batch
(:mod:`petastorm.jax_impl.transfer`) it pays one transfer and one call per batch. Here:

1. Without a shuffling buffer and without ``transform_fn``, the shared core
   (:class:`~petastorm.adapters.BatchPipeline`) hands the ``k`` whole batches lying in one reader batch (up to
   64) to :meth:`BlockPlacer.__call__` at once, as one block of ``k * batch_size`` rows (views of the reader
   batch: nothing is copied by then).
2. The block's small columns (at most ``CHUNK_MAX_BYTES``, 32 KiB, per batch) are copied, per group of columns of one
   dtype and cell shape, into a page on the host: ``(columns of the group, page rows) + cell``, one copy per
   column. The page buffer is the placer's own, 64-byte aligned and reused from block to block, so on a CPU
   host ``jax.device_put`` takes it without a copy (XLA's CPU client aliases aligned host memory) and no fresh
   memory is faulted in per block. A page holds ``c * G`` batches, ``c`` a power of two up to 8 calls (so a
   column layout and batch size compile at most 4 page shapes, whatever the sizes of the reader batches).
3. One jitted call cuts ``G`` batches (``G * columns`` outputs, ``G = 96 // columns`` clamped to 1..8, and
   fewer where ``G`` batches would pass 4 MiB) from
   the page with ``lax.dynamic_slice`` at a traced start row. Rows of the page past the block are stale (zeros at first)
   (left from an earlier block) and are never served: only the block's ``k`` batches are returned. The outputs
   are chained (each is ``select(True, its slice, the previous output)`` with the predicate traced): XLA's CPU
   runtime then runs the call's small copies one after another on one thread, instead of handing each of them
   to its intra-op threads, whose wake-ups cost more CPU than the copies.
4. Before the page buffer is refilled, every cut from it has completed (the placer waits for each call's
   outputs, which are XLA's own buffers, not views of the page) and the device page is dropped, so no live
   array ever sees the buffer change.

Per batch this costs one output array per column plus ``1/G`` of a dispatch plus a share of the page copy (figures
in ``benchmarks/README.md``, "Design measurements quoted by the code"). Anything else (a shuffled batch, a
``transform_fn``'s output, a batch straddling two reader batches, the short last batch, a resumed prefetched
batch, a sharding over several devices) is served by :class:`~petastorm.jax_impl.transfer.BatchTransfer`, and so
are the columns of a block too wide to stack (one transfer per batch). Which rows form each batch is the core's
decision alone.

Memory: one page per column group on the host (at most 8 calls' rows, 4 MiB at most unless a single call
needs more) and, off a CPU host, its device copy while the block is cut.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import numpy as np

__all__ = ["CHUNK_MAX_BYTES", "KEEP", "BlockPlacer", "batches_per_call", "chain_link", "page_calls"]

#: Columns of at most this many bytes per batch are cut on the device (float32 scalars up to batch_size 8192).
#: Up to that size the cut on the device costs less CPU than the per-batch path; at 64 KiB a column the copies
#: (page, then the cut) outweigh the per-array costs saved (figures in ``benchmarks/README.md``).
CHUNK_MAX_BYTES = 32 << 10

_KINDS = "biufc"
_MAX_OUTPUTS = 96         # outputs per jitted call (compile time grows with them)
_MAX_G = 8
_PAGE_CALLS = 8          # calls per page, at most (a power of two)
_PAGE_BYTES = 4 << 20    # bytes per page, at most (unless one call needs more)
_ALIGN = 64              # XLA's CPU client aliases host buffers aligned to this many bytes
KEEP = np.bool_(True)    #: the always-true predicate of the chained outputs (:func:`chain_link`)

_Layout = Tuple[Tuple[str, np.dtype, Tuple[int, ...], bool], ...]


def batches_per_call(n_columns: int) -> int:
    """``G``: batches cut per jitted call for ``n_columns`` stacked columns."""
    return max(1, min(_MAX_G, _MAX_OUTPUTS // max(1, n_columns)))


def page_calls(calls: int, call_bytes: int) -> int:
    """Calls a page holds for ``calls`` calls to make: the power of two at or above ``calls``, at most 8 and at
    most what fits in 4 MiB of ``call_bytes`` calls (at least 1); so at most 4 page shapes per layout."""
    cap = _PAGE_CALLS
    while cap > 1 and cap * call_bytes > _PAGE_BYTES:
        cap //= 2
    size = 1
    while size < calls and size < cap:
        size *= 2
    return size


def chain_link(piece: Any, prev: Any, keep: Any) -> Any:
    """``piece`` as the next link of a chain of outputs of a jitted function (traced values): ``select(keep,
    piece, other)``, with ``keep`` a traced ``True`` and ``other`` the previous link ``prev`` (None: this is the
    head), converted and broadcast if its dtype or shape differ. Equal to ``piece``, but XLA cannot know it, so
    each output's kernel waits for the one before and XLA's CPU runtime runs them one after another on one
    thread (see :func:`_cutter`)."""
    import jax
    from jax import lax

    if prev is None or prev.size == 0 or piece.size == 0:  # the head of a chain: another value of its shape
        other = lax.rev(piece, (0,)) if piece.ndim else piece
    elif prev.shape == piece.shape and prev.dtype == piece.dtype:
        other = prev
    else:  # another group: its first element, converted and broadcast (never served: keep is True)
        first = prev.reshape(-1)[0]
        if jax.numpy.iscomplexobj(first) and not jax.numpy.iscomplexobj(piece):
            first = lax.real(first)
        other = jax.numpy.broadcast_to(lax.convert_element_type(first, piece.dtype), piece.shape)
    return lax.select(jax.numpy.broadcast_to(keep, piece.shape), piece, other)


@functools.lru_cache(maxsize=32)
def _cutter(group_sizes: Tuple[int, ...], batch_size: int, g: int) -> Callable:
    """Jitted ``(pages, start, keep) -> [column arrays of batch 0, of batch 1, ...]``: ``g`` batches from row
    ``start`` of page stacks of shape ``(k, page rows) + cell``; ``keep`` is always ``True``. ``start`` is traced,
    so it compiles once per column layout, batch size, ``g`` and page shape, not per offset.

    Each output after the first is ``select(keep, its slice, the previous output)``: equal to its slice (``keep``
    is True), but XLA cannot know that, so every output's kernel depends on the one before. Unchained, the
    ``g * columns`` independent copies of a few KiB are spread by XLA's CPU runtime over its intra-op threads,
    whose hand-offs cost more CPU than the copies (``tf_XLAEigen`` threads, invisible to cProfile); chained, they
    run one after another on one thread (figures in ``benchmarks/README.md``).
    """
    import jax
    from jax import lax

    def cut(pages: tuple, start: Any, keep: Any) -> list:
        out: list = []
        prev = None
        for i in range(g):
            for page, k in zip(pages, group_sizes):
                for j in range(k):
                    piece = lax.dynamic_slice_in_dim(page[j], start + i * batch_size, batch_size, axis=0)
                    prev = chain_link(piece, prev, keep)
                    out.append(prev)
        return out

    return jax.jit(cut)


def _aligned_zeros(nbytes: int) -> np.ndarray:
    """``nbytes`` zero bytes starting at a multiple of 64 bytes.

    Zeros, not uninitialised memory: the rows of a page past its block are put on the device too, and with JAX's
    64-bit mode off ``jax.device_put`` casts a ``float64`` page to ``float32`` on the host, where leftover heap
    bytes read as huge floats gave numpy's ``RuntimeWarning: overflow encountered in cast`` for rows that are
    never served.
    """
    raw = np.zeros(nbytes + _ALIGN, dtype=np.uint8)
    skip = -raw.ctypes.data % _ALIGN
    return raw[skip:skip + nbytes]


class _Plan:
    """How one column layout is placed: groups of stacked columns (one page each), the other columns, ``G``."""

    def __init__(self, groups: List[List[str]], rest: List[str], batch_size: int, row_bytes: int) -> None:
        self.groups = groups
        self.sizes = tuple(len(names) for names in groups)
        self.stacked = tuple(name for names in groups for name in names)
        self.rest = rest
        # G batches per call, fewer where a call's rows would pass a page's bytes (large batches)
        self.g = min(batches_per_call(len(self.stacked)), max(1, _PAGE_BYTES // max(1, batch_size * row_bytes)))
        self.call_bytes = self.g * batch_size * row_bytes
        self.hosts: List[Optional[np.ndarray]] = [None] * len(groups)   # page buffers, reused


class BlockPlacer:
    """The ``k`` whole batches of a block (``k * batch_size`` rows of one reader batch), their small columns
    placed with one transfer per page and cut on the device several batches per jitted call.

    Parameters
    ----------
    batch_size : int
        Rows per batch.
    device : jax.Device or jax.sharding.SingleDeviceSharding, optional
        Where to place (None: JAX's default device).
    group_max_bytes : int
        Columns whose ``batch_size`` rows exceed this many bytes are not stacked (there the per-array costs
        this module saves are small next to the copies it adds): the caller places them.
    """

    def __init__(self, batch_size: int, device: Any = None, group_max_bytes: int = CHUNK_MAX_BYTES) -> None:
        self.batch_size = batch_size
        self.device = device
        self.group_max_bytes = group_max_bytes
        self._plans: Dict[_Layout, _Plan] = {}

    def plan(self, columns: Mapping[str, Any]) -> _Plan:
        """The plan of this column layout (made once per layout)."""
        layout = tuple((name, getattr(col, "dtype", np.dtype(object)), np.shape(col)[1:],
                        type(col) is np.ndarray) for name, col in columns.items())
        plan = self._plans.get(layout)
        if plan is None:
            if len(self._plans) >= 32:
                self._plans.clear()
            plan = self._plans[layout] = self._make_plan(columns)
        return plan

    def _make_plan(self, columns: Mapping[str, Any]) -> _Plan:
        bs = self.batch_size
        by_kind: Dict[Tuple[np.dtype, Tuple[int, ...]], List[str]] = {}
        rest: List[str] = []
        row_bytes = 0
        for name, col in columns.items():
            cell = int(np.prod(col.shape[1:], dtype=np.int64)) * col.itemsize if type(col) is np.ndarray else 0
            if type(col) is np.ndarray and col.dtype.kind in _KINDS and col.ndim >= 1 \
                    and cell * bs <= self.group_max_bytes:
                by_kind.setdefault((col.dtype, col.shape[1:]), []).append(name)  # not dtype.str: int4 = float8 there
                row_bytes += cell
            else:
                rest.append(name)
        return _Plan(list(by_kind.values()), rest, bs, row_bytes)

    def __call__(self, columns: Mapping[str, np.ndarray], k: int) -> Optional[List[Dict[str, Any]]]:
        """``k`` dicts ``{name: jax.Array}`` of the stacked columns of each batch of the block (the plan's
        ``rest`` columns are the caller's), ready on the device; None when no column stacks."""
        import jax

        plan = self.plan(columns)
        if not plan.groups:
            return None
        bs, g = self.batch_size, plan.g
        cutter = _cutter(plan.sizes, bs, g)
        calls = -(-k // g)
        outs: List[Any] = []
        done = 0
        while done < calls:
            size = page_calls(calls - done, plan.call_bytes)
            n = min(size, calls - done)
            pages = self._place(plan, columns, done * g * bs, min(k * bs, (done + n) * g * bs), size * g * bs)
            for c in range(n):
                out = cutter(pages, np.int32(c * g * bs), KEEP)
                jax.block_until_ready(out[-1])  # one executable: its outputs are ready together
                outs.append(out)
            del pages  # every cut from the page is done: the buffer may be refilled
            done += n
        m = len(plan.stacked)
        return [dict(zip(plan.stacked, outs[b // g][(b % g) * m:(b % g + 1) * m])) for b in range(k)]

    def _place(self, plan: _Plan, columns: Mapping[str, np.ndarray], lo: int, hi: int, rows: int) -> tuple:
        """Rows ``lo:hi`` of each group's columns copied to the front of its page buffer (``rows`` rows; the
        rest stale) and put on the device."""
        import jax

        hosts = []
        for i, names in enumerate(plan.groups):
            first = columns[names[0]]
            shape = (len(names), rows) + first.shape[1:]
            nbytes = int(np.prod(shape, dtype=np.int64)) * first.itemsize
            buf = plan.hosts[i]
            if buf is None or buf.nbytes < nbytes:
                buf = plan.hosts[i] = _aligned_zeros(nbytes)
            host = buf[:nbytes].view(first.dtype).reshape(shape)
            for j, name in enumerate(names):
                host[j, :hi - lo] = columns[name][lo:hi]
            hosts.append(host)
        return tuple(jax.device_put(hosts, self.device, may_alias=True))
