"""Open Parquet files for the workers, optionally with row-group reads served by a memory pool of their own.

Workers read the big row groups of local files through :func:`mapped_row_group_file` (a memory map made
for one read, with the footer parsed before; see :mod:`petastorm.reader_impl.worker`), other filesystems
through :func:`open_row_group_file`; both choose the pool the same way.

``$PETASTORM_ARROW_POOL`` = ``jemalloc``, ``mimalloc`` or ``system`` makes petastorm's row-group reads (and
local file reads) allocate from that pyarrow pool, leaving the process-wide default pool, which the rest
of the user's program uses, alone; unset (or ``default``) they use pyarrow's default pool.

With pyarrow's default mimalloc, a JPEG pass peaks higher than with ``jemalloc`` (the pool pyarrow 14, and
so the original petastorm, used): mimalloc keeps freed pages of its arenas. But jemalloc's page decay
(which pyarrow offers no working knob for) refaults the pages of large row groups: a (64, 64) ndarray pass
of 8 MB row groups took more CPU per row in threads, and more still in process-pool workers, for no lower
peak; on JPEG the CPU per row did not change (figures in ``benchmarks/README.md``, "Design measurements
quoted by the code"). So readers that decode
compressed images or arrays read with jemalloc, the others with the default pool, unless
``$PETASTORM_ARROW_POOL`` says otherwise.

Only from files whose column chunks are stored uncompressed, though (:func:`open_row_group_file`): with
Snappy/zstd/... chunks every page is decompressed into a fresh buffer, and jemalloc hands those pages back
and faults them in again at the next page: ``read_row_group`` of a Snappy file took more than twice as long
with jemalloc as with mimalloc, while the same file stored uncompressed read as fast with every pool.
"""
from __future__ import annotations

import contextlib
import functools
from typing import Any, Iterator, Optional

from petastorm.settings import Settings, settings

__all__ = ["read_memory_pool", "open_input_file", "open_parquet_file", "open_row_group_file",
           "mapped_row_group_file"]


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


def read_memory_pool(decode_bound: bool = False, compressed: bool = False,
                     config: Optional[Settings] = None) -> Optional[Any]:
    """The ``pyarrow.MemoryPool`` for row-group reads, or None for pyarrow's default pool.

    ``config.arrow_pool`` (``$PETASTORM_ARROW_POOL``; ``config`` None: :func:`petastorm.settings.settings`)
    decides when set; a pool this pyarrow was built without gives None. Otherwise a reader whose decoding
    dominates (``decode_bound``: compressed images or arrays, where a page fault per reused page is noise
    next to the decode) reads files whose chunks are not ``compressed`` with jemalloc, which gives freed
    pages back; the others use the default pool.
    """
    wanted = (config or settings()).arrow_pool
    if wanted == "default":
        return None
    if wanted:
        return _pool_named(wanted)
    return _pool_named("jemalloc") if decode_bound and not compressed else None


def _has_compressed_chunks(metadata: Any) -> bool:
    """Whether a column chunk of the file's first row group is stored compressed (files are written with
    one codec throughout in practice)."""
    if metadata.num_row_groups == 0:
        return False
    group = metadata.row_group(0)
    return any(group.column(j).compression != "UNCOMPRESSED" for j in range(group.num_columns))


def open_input_file(filesystem: Any, path: str, pool: Optional[Any] = None) -> Any:
    """``filesystem.open_input_file(path)``; a local file is opened with ``pool`` (see
    :func:`read_memory_pool`) for the buffers its reads allocate (a pyarrow filesystem's own reads use the
    default pool)."""
    import pyarrow as pa
    import pyarrow.fs as pafs

    if pool is not None and isinstance(filesystem, pafs.LocalFileSystem):
        return pa.OSFile(path, "r", memory_pool=pool)
    return filesystem.open_input_file(path)


def open_row_group_file(filesystem: Any, path: str, *, pre_buffer: bool, buffer_size: int,
                        decode_bound: bool, config: Optional[Settings] = None) -> Any:
    """``ParquetFile`` of ``path`` whose reads allocate from :func:`read_memory_pool` for this reader and
    this file (the footer is read first when the choice depends on the file's compression; ``config``
    None: :func:`petastorm.settings.settings`)."""
    config = config or settings()
    pool = read_memory_pool(decode_bound, config=config)
    if pool is None or config.arrow_pool is not None:
        return open_parquet_file(open_input_file(filesystem, path, pool), pre_buffer=pre_buffer,
                                 buffer_size=buffer_size, pool=pool)
    pf = open_parquet_file(open_input_file(filesystem, path), pre_buffer=pre_buffer, buffer_size=buffer_size)
    if _has_compressed_chunks(pf.metadata):
        return pf
    metadata = pf.metadata
    pf.close(force=True)
    return open_parquet_file(open_input_file(filesystem, path, pool), pre_buffer=pre_buffer,
                             buffer_size=buffer_size, pool=pool, metadata=metadata)


@contextlib.contextmanager
def mapped_row_group_file(fd: int, metadata: Any, *, decode_bound: bool,
                          config: Optional[Settings] = None) -> Iterator[Any]:
    """``with mapped_row_group_file(...) as pf``: a ``ParquetFile`` of the local file open as descriptor ``fd``
    over a memory map of it made for this block, with its footer ``metadata`` (read before from the same file:
    not parsed again; a descriptor, not a path, so a file replaced under its path is not mapped), whose reads
    allocate from :func:`read_memory_pool` as in :func:`open_row_group_file`. The map is closed when the
    block ends, unless a buffer read from it still refers to it (it is then unmapped with the last one).

    The map is Python's ``mmap`` read through a ``pyarrow.BufferReader``, not ``pyarrow.memory_map``:
    pyarrow's memory-mapped file asks the kernel to read ahead (``madvise(WILLNEED)``) each range it reads,
    pages that are already cached, which cost about 8% more CPU per row group read (20 float columns).
    """
    import mmap

    import pyarrow as pa

    pool = read_memory_pool(decode_bound, compressed=_has_compressed_chunks(metadata), config=config)
    mapping = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
    try:
        buffer = pa.py_buffer(mapping)
        pf = open_parquet_file(pa.BufferReader(buffer), pre_buffer=False, buffer_size=0, pool=pool,
                               metadata=metadata)
        del buffer
        try:
            yield pf
        finally:
            pf.close(force=True)
            del pf
    finally:
        try:
            mapping.close()
        except BufferError:  # a buffer read from the map is still alive: unmapped when the last one goes
            pass


def open_parquet_file(source: Any, *, pre_buffer: bool, buffer_size: int, pool: Optional[Any] = None,
                      metadata: Any = None) -> Any:
    """``pyarrow.parquet.ParquetFile(source, ...)`` whose reads allocate from ``pool`` (None: the default).

    ``ParquetFile`` takes no pool, but the ``ParquetReader`` it wraps does: it is swapped for one opened
    on the same source with the footer already read (``metadata``: a footer read before, not read again). Where that fails (a pyarrow without these
    internals), the plain ``ParquetFile`` is returned.
    """
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(source, pre_buffer=pre_buffer, buffer_size=buffer_size, metadata=metadata)
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
