"""Open Parquet files for the workers, optionally with row-group reads served by a memory pool of their own.

``$PETASTORM_ARROW_POOL`` = ``jemalloc``, ``mimalloc`` or ``system`` makes petastorm's row-group reads (and
local file reads) allocate from that pyarrow pool, leaving the process-wide default pool, which the rest
of the user's program uses, alone; unset (or ``default``) they use pyarrow's default pool.

Measured on a 2-core VM (``benchmarks/read_pass.py``, thread pool, 2 workers): with pyarrow's default
mimalloc, a 224x224x3 JPEG pass peaks at 305-345 MB, ~50 MB of it mimalloc keeping freed pages of its
arenas; with ``jemalloc`` (the pool pyarrow 14, and so the original petastorm, used) 278-284 MB. But
jemalloc's page decay (which pyarrow offers no working knob for) refaults the pages of large row groups:
a (64, 64) ndarray pass of 8 MB row groups took ~50% more CPU per row in threads and twice the CPU in
process-pool workers, for no lower peak; on JPEG the CPU per row did not change. So readers that decode
compressed images or arrays read with jemalloc, the others with the default pool, unless
``$PETASTORM_ARROW_POOL`` says otherwise.
"""
from __future__ import annotations

import functools
import os
from typing import Any, Optional

__all__ = ["read_memory_pool", "open_input_file", "open_parquet_file", "ARROW_POOL_ENV"]

ARROW_POOL_ENV = "PETASTORM_ARROW_POOL"


@functools.lru_cache(maxsize=None)
def _pool_named(name: str) -> Optional[Any]:
    import pyarrow as pa

    makers = {"jemalloc": pa.jemalloc_memory_pool, "mimalloc": pa.mimalloc_memory_pool,
              "system": pa.system_memory_pool}
    if name not in makers:
        return None
    try:
        return makers[name]()
    except (NotImplementedError, AttributeError, OSError):  # pyarrow built without it
        return None


def read_memory_pool(decode_bound: bool = False) -> Optional[Any]:
    """The ``pyarrow.MemoryPool`` for row-group reads, or None for pyarrow's default pool.

    ``$PETASTORM_ARROW_POOL`` decides when set. Otherwise a reader whose decoding dominates
    (``decode_bound``: compressed images or arrays, where a page fault per reused page is noise next to
    the decode) reads with jemalloc, which gives freed pages back; the others use the default pool.
    """
    wanted = os.environ.get(ARROW_POOL_ENV, "").strip().lower()
    if wanted == "default":
        return None
    if wanted:
        return _pool_named(wanted)
    return _pool_named("jemalloc") if decode_bound else None


def open_input_file(filesystem: Any, path: str, pool: Optional[Any] = None) -> Any:
    """``filesystem.open_input_file(path)``; a local file is opened with ``pool`` (see
    :func:`read_memory_pool`) for the buffers its reads allocate (a pyarrow filesystem's own reads use the
    default pool)."""
    import pyarrow as pa
    import pyarrow.fs as pafs

    if pool is not None and isinstance(filesystem, pafs.LocalFileSystem):
        return pa.OSFile(path, "r", memory_pool=pool)
    return filesystem.open_input_file(path)


def open_parquet_file(source: Any, *, pre_buffer: bool, buffer_size: int, pool: Optional[Any] = None) -> Any:
    """``pyarrow.parquet.ParquetFile(source, ...)`` whose reads allocate from ``pool`` (None: the default).

    ``ParquetFile`` takes no pool, but the ``ParquetReader`` it wraps does: it is swapped for one opened
    on the same source with the footer already read. Where that fails (a pyarrow without these
    internals), the plain ``ParquetFile`` is returned.
    """
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(source, pre_buffer=pre_buffer, buffer_size=buffer_size)
    if pool is None:
        return pf
    try:
        from pyarrow._parquet import ParquetReader

        reader = ParquetReader(memory_pool=pool)
        options = dict(buffer_size=buffer_size, pre_buffer=pre_buffer, metadata=pf.metadata)
        try:  # ParquetFile turns Arrow extension types on; ParquetReader.open does not by default
            reader.open(source, arrow_extensions_enabled=True, **options)
        except TypeError:  # a pyarrow without the option
            reader.open(source, **options)
        pf.reader = reader
    except Exception:  # noqa: BLE001 - keep the default pool rather than fail a read over an optimisation
        pass
    return pf
