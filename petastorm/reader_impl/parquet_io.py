"""Open Parquet files for the workers, with row-group reads served by a memory pool of the reader's own.

pyarrow's default pool on Linux is mimalloc, which kept freed pages of its 1 GiB arenas resident: reading
8 MB binary row groups in two threads left ~120 MB resident for ~30 MB allocated; a 224x224x3 JPEG pass
peaked ~50 MB higher than with jemalloc (the pool pyarrow 14, and so the original petastorm, used). The
pool is picked for petastorm's reads only: the process-wide default pool, which the rest of the user's
program uses, is left alone. The price: jemalloc returns freed pages to the system after ~1 s of decay
(pyarrow starts it so, and offers no working knob afterwards), so 8 MB row groups fault some pages in again
(measured: ~20% more CPU per row on a (64, 64) ndarray pass; none on JPEG). ``PETASTORM_ARROW_POOL=default``
trades that memory back for that CPU.

``$PETASTORM_ARROW_POOL`` = ``jemalloc`` (default where pyarrow has it), ``mimalloc``, ``system`` or
``default`` (pyarrow's default pool) overrides the choice.
"""
from __future__ import annotations

import functools
import os
from typing import Any, Optional

__all__ = ["read_memory_pool", "open_input_file", "open_parquet_file", "ARROW_POOL_ENV"]

ARROW_POOL_ENV = "PETASTORM_ARROW_POOL"
_PREFERRED = ("jemalloc", "mimalloc", "system")


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


def read_memory_pool() -> Optional[Any]:
    """The ``pyarrow.MemoryPool`` for row-group reads, or None for pyarrow's default pool."""
    wanted = os.environ.get(ARROW_POOL_ENV, "").strip().lower()
    if wanted == "default":
        return None
    if wanted:
        return _pool_named(wanted)
    return _pool_named(_PREFERRED[0])


def open_input_file(filesystem: Any, path: str) -> Any:
    """``filesystem.open_input_file(path)``; a local file is opened with :func:`read_memory_pool` for the
    buffers its reads allocate (a pyarrow filesystem's own reads use the default pool)."""
    import pyarrow as pa
    import pyarrow.fs as pafs

    pool = read_memory_pool()
    if pool is not None and isinstance(filesystem, pafs.LocalFileSystem):
        return pa.OSFile(path, "r", memory_pool=pool)
    return filesystem.open_input_file(path)


def open_parquet_file(source: Any, *, pre_buffer: bool, buffer_size: int) -> Any:
    """``pyarrow.parquet.ParquetFile(source, ...)`` whose reads allocate from :func:`read_memory_pool`.

    ``ParquetFile`` takes no pool, but the ``ParquetReader`` it wraps does: it is swapped for one opened
    on the same source with the footer already read. Where that fails (a pyarrow without these
    internals), the plain ``ParquetFile`` is returned.
    """
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(source, pre_buffer=pre_buffer, buffer_size=buffer_size)
    pool = read_memory_pool()
    if pool is None:
        return pf
    try:
        from pyarrow._parquet import ParquetReader

        reader = ParquetReader(memory_pool=pool)
        reader.open(source, buffer_size=buffer_size, pre_buffer=pre_buffer, metadata=pf.metadata)
        pf.reader = reader
    except Exception:  # noqa: BLE001 - keep the default pool rather than fail a read over an optimisation
        pass
    return pf
