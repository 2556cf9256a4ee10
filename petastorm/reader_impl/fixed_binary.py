"""Read a column chunk of equal-length binary values straight from its Parquet pages into one buffer.

A fixed-shape ``NdarrayCodec`` field stores every row as ``.npy`` bytes of the same length. Through
pyarrow, a row group of such a column is read into a buffer, decompressed into another, decoded from
Parquet's PLAIN or dictionary encoding into a third (offsets + data), and, in a process-pool worker, copied
into shared memory. Here the chunk is read with one ``pread`` and each page is decompressed (cramjam)
straight to where its values belong in one destination buffer (shared memory in a process worker), so
that value ``k`` sits at ``start + k * stride``: two passes over the bytes instead of four or five.

Handled: data pages v1 and v2, PLAIN values, a dictionary page whose dictionary-encoded data pages
reference its entries in order (what writers produce for values that do not repeat, before falling back
to PLAIN; other indices are gathered from a decompressed copy of the dictionary), definition levels with
no nulls, and the codecs UNCOMPRESSED, SNAPPY, GZIP, ZSTD, BROTLI and LZ4_RAW (which pyarrow calls LZ4).
Anything else (nulls, values of different lengths, other codecs such as LZO or the deprecated
Hadoop-framed LZ4, a malformed page) makes :func:`read_fixed_binary` return None and the caller reads the column through pyarrow, which also
reports any real corruption. Every placed value's length prefix is checked, so a page layout this module
misreads cannot pass silently.

``PETASTORM_DIRECT_READ=off`` (:attr:`petastorm.settings.Settings.direct_read`, passed to the workers in
``ReadSpec.direct_read``) turns this path off: every column is then read through pyarrow.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np

from petastorm.reader_impl.thrift_compact import BOOL, I32, STRUCT, ThriftError, read_struct, read_varint

__all__ = ["FixedCells", "ReadBuffer", "read_fixed_binary"]

_DATA_PAGE, _INDEX_PAGE, _DICTIONARY_PAGE, _DATA_PAGE_V2 = 0, 1, 2, 3
_PLAIN, _PLAIN_DICTIONARY, _RLE, _RLE_DICTIONARY = 0, 2, 3, 8
_DICT_ENCODINGS = (_PLAIN_DICTIONARY, _RLE_DICTIONARY)

#: The fields of parquet.thrift's PageHeader read here; the others are skipped.
_PAGE_HEADER = {
    1: I32, 2: I32, 3: I32, 4: I32,
    5: (STRUCT, {1: I32, 2: I32, 3: I32, 4: I32}),  # DataPageHeader
    7: (STRUCT, {1: I32, 2: I32, 3: BOOL}),  # DictionaryPageHeader
    8: (STRUCT, {1: I32, 2: I32, 3: I32, 4: I32, 5: I32, 6: I32, 7: BOOL}),  # DataPageHeaderV2
}
#: Required fields of each struct: a header without them is malformed (pyarrow rejects it too).
_REQUIRED = {None: (1, 2, 3), 5: (1, 2, 3, 4), 7: (1, 2), 8: (1, 2, 3, 4, 5, 6)}


class _Unsupported(Exception):
    """The chunk's layout is not one this module places; read it through pyarrow."""


@dataclass(frozen=True)
class FixedCells:
    """``count`` values of ``length`` bytes: value ``k`` is ``buffer[start + k * stride:][:length]``.

    Attributes
    ----------
    buffer : numpy.ndarray
        1-D uint8, from the caller's ``alloc``.
    start, stride, length, count : int
        Bytes, bytes, bytes, values. ``stride`` is ``length + 4`` (Parquet's length prefix).
    """

    buffer: np.ndarray
    start: int
    stride: int
    length: int
    count: int


class ReadBuffer:
    """A growable buffer the compressed chunks are read into, reused from read to read (one per worker:
    it is not thread-safe).

    Parameters
    ----------
    alloc : callable, optional
        ``alloc(nbytes)`` -> writable 1-D uint8 array (default ``np.empty``). A process-pool worker passes
        its batch allocator: shared memory that earlier workers already faulted in, where a fresh buffer
        would cost each new worker process a page fault per 4 KiB.
    """

    def __init__(self, alloc: Optional[Callable[[int], np.ndarray]] = None) -> None:
        self._alloc = alloc or (lambda n: np.empty(n, np.uint8))
        self._buf = np.empty(0, np.uint8)

    def view(self, size: int) -> memoryview:
        """A writable view of ``size`` bytes (the contents of an earlier view may be overwritten)."""
        if len(self._buf) < size:
            size_wanted = max(size, len(self._buf) * 5 // 4)
            self._buf = np.empty(0, np.uint8)  # let the old one go first
            self._buf = self._alloc(size_wanted)
        return memoryview(self._buf)[:size]


def read_fixed_binary(path: str, chunk: Any, max_def_level: int, alloc: Callable[[int], np.ndarray],
                      buffer: Optional[ReadBuffer] = None) -> Optional[FixedCells]:
    """The values of one BYTE_ARRAY column chunk of a local file, placed at a uniform stride.

    Parameters
    ----------
    path : str
        Local path of the Parquet file.
    chunk : pyarrow.parquet.ColumnChunkMetaData
        The column chunk (of a flat column: no repetition levels).
    max_def_level : int
        The column's maximum definition level (0 for a required column).
    alloc : callable
        ``alloc(nbytes)`` -> writable 1-D uint8 array of at least ``nbytes``; receives the values.
    buffer : ReadBuffer, optional
        Where the compressed chunk is read (None: a buffer of this call's own).

    Returns
    -------
    FixedCells or None
        None when the chunk holds nulls, values of different lengths, or a layout or codec not handled
        here (the caller then reads the column through pyarrow).
    """
    if chunk.physical_type != "BYTE_ARRAY" or chunk.num_values <= 0:
        return None
    decompress = _decompressor(chunk.compression)
    if decompress is None:
        return None
    start = chunk.data_page_offset
    if chunk.has_dictionary_page and chunk.dictionary_page_offset:
        start = min(start, chunk.dictionary_page_offset)
    size = chunk.total_compressed_size
    if start < 4 or size <= 0:
        return None
    raw = (buffer or ReadBuffer()).view(size)
    try:
        _pread_into(path, raw, start)
        return _place(raw, chunk.num_values, max_def_level, decompress, alloc, chunk.total_uncompressed_size)
    except (_Unsupported, ThriftError, IndexError, ValueError, OSError, MemoryError):
        return None


def _pread_into(path: str, out: memoryview, offset: int) -> None:
    """Fill ``out`` with the bytes of ``path`` from ``offset`` (``preadv`` where the OS has it)."""
    with open(path, "rb", buffering=0) as f:
        done = 0
        while done < len(out):
            if hasattr(os, "preadv"):
                got = os.preadv(f.fileno(), [out[done:]], offset + done)
            else:  # pragma: no cover - Windows
                f.seek(offset + done)
                got = f.readinto(out[done:])
            if not got:
                raise _Unsupported("file shorter than its footer says")
            done += got


def _decompressor(codec: str) -> Optional[Callable[[memoryview, np.ndarray], int]]:
    if codec == "UNCOMPRESSED":
        def copy(src: memoryview, dst: np.ndarray) -> int:
            if len(src) != len(dst):
                raise _Unsupported("uncompressed page size mismatch")
            dst[:] = np.frombuffer(src, np.uint8)
            return len(src)
        return copy
    import cramjam

    return {"SNAPPY": cramjam.snappy.decompress_raw_into, "ZSTD": cramjam.zstd.decompress_into,
            "GZIP": cramjam.gzip.decompress_into, "BROTLI": cramjam.brotli.decompress_into,
            # pyarrow names Parquet's LZ4_RAW "LZ4" (and the deprecated Hadoop-framed LZ4 "UNKNOWN")
            "LZ4": cramjam.lz4.decompress_block_into, "LZ4_RAW": cramjam.lz4.decompress_block_into}.get(codec)


@dataclass
class _Page:
    kind: int
    usize: int
    payload: memoryview
    count: int = 0
    encoding: int = _PLAIN
    levels: int = 0  # v2: bytes of (uncompressed) levels before the values
    nulls: int = 0
    compressed: bool = True
    level_encoding: int = _RLE
    row: int = 0


def _pages(raw: memoryview, num_values: int, uncompressed: int) -> list:
    """The pages of a chunk, with sizes and counts checked against the footer's before anything is
    allocated for them (a corrupt header must not ask for gigabytes)."""
    pages = []
    pos = 0
    while pos < len(raw):
        head, pos = read_struct(raw, pos, _PAGE_HEADER)
        if any(k not in head for k in _REQUIRED[None]) or any(
                k in head and any(f not in head[k] for f in fields) for k, fields in _REQUIRED.items() if k):
            raise _Unsupported("page header without a required field")
        kind, usize, csize = head[1], head[2], head[3]
        if usize < 0 or csize < 0 or pos + csize > len(raw):
            raise _Unsupported("bad page header")
        page = _Page(kind, usize, raw[pos:pos + csize])
        pos += csize
        if kind == _INDEX_PAGE:
            continue
        if kind == _DICTIONARY_PAGE:
            sub = head.get(7) or {}
            page.count, page.encoding = sub.get(1, -1), sub.get(2, _PLAIN)
            if page.encoding not in (_PLAIN, _PLAIN_DICTIONARY):
                raise _Unsupported("dictionary page encoding")
        elif kind == _DATA_PAGE:
            sub = head.get(5) or {}
            page.count, page.encoding = sub.get(1, -1), sub.get(2, -1)
            page.level_encoding = sub.get(3, _RLE)  # parquet-mr says BIT_PACKED where there are no levels
        elif kind == _DATA_PAGE_V2:
            sub = head.get(8) or {}
            page.count, page.nulls, page.encoding = sub.get(1, -1), sub.get(2, -1), sub.get(4, -1)
            if sub.get(6, 0) != 0:
                raise _Unsupported("repetition levels")
            page.levels = sub.get(5, 0)
            page.compressed = sub.get(7, True)
            if page.nulls != 0 or not 0 <= page.levels <= min(csize, usize):
                raise _Unsupported("nulls")
            if sub[3] != page.count:  # a flat column: one value per row
                raise _Unsupported("rows and values of a v2 page differ")
        else:
            raise _Unsupported(f"page type {kind}")
        if page.count <= 0 or page.count > num_values or usize > uncompressed:
            raise _Unsupported("page header beyond the chunk's values or size")
        pages.append(page)
    return pages


def _place(raw: memoryview, num_values: int, max_def: int, decompress: Callable, alloc: Callable,
           uncompressed: int) -> FixedCells:
    pages = _pages(raw, num_values, uncompressed)
    dictionary = pages[0] if pages and pages[0].kind == _DICTIONARY_PAGE else None
    data = pages[1:] if dictionary is not None else pages
    if not data or any(p.kind == _DICTIONARY_PAGE for p in data):
        raise _Unsupported("no data page, or a second dictionary")
    if max_def and any(p.kind == _DATA_PAGE and p.level_encoding != _RLE for p in data):
        raise _Unsupported("definition level encoding")
    stride = _stride(dictionary, data[0], max_def)
    row = 0
    indices = {}  # dictionary-encoded page -> its rows' dictionary entries
    for i, p in enumerate(data):
        p.row = row
        if row + p.count > num_values:
            raise _Unsupported("pages hold more values than the chunk")
        if p.encoding in _DICT_ENCODINGS:
            if dictionary is None:
                raise _Unsupported("dictionary indices without a dictionary")
            indices[i] = _dictionary_indices(p, decompress, max_def)
            if len(indices[i]) and not 0 <= int(indices[i].min()) <= int(indices[i].max()) < dictionary.count:
                raise _Unsupported("dictionary index beyond the dictionary")
        elif p.encoding != _PLAIN:
            raise _Unsupported("value encoding")
        row += p.count
    if row != num_values:
        raise _Unsupported("pages do not add up to the chunk's values")
    # the common case: values that do not repeat, whose dictionary holds the first rows in order
    in_place = dictionary is not None and sum(len(v) for v in indices.values()) == dictionary.count and all(
        i < len(indices) and (v == np.arange(data[i].row, data[i].row + len(v))).all() for i, v in indices.items())
    table = None
    if dictionary is not None and (dictionary.usize != dictionary.count * stride):
        raise _Unsupported("dictionary page size")
    if indices and not in_place:
        table = np.empty(dictionary.usize, np.uint8)
        _decompress(decompress, dictionary.payload, table)
        table = table.reshape(dictionary.count, stride)
    first = data[0]
    head = _v1_prefix(first, stride) if first.kind == _DATA_PAGE and first.encoding == _PLAIN else 0
    buf = alloc(64 + head + num_values * stride)
    # value k's data lands 64-byte aligned before its npy header (headers are padded to 16 or 64 bytes)
    lead = -(buf.ctypes.data + head + 4) % 64
    base = lead + head  # value 0's length prefix
    # later pages first: a v1 page's levels precede its values and spill into the previous page's tail,
    # which that page overwrites once the levels have been checked
    for i in range(len(data) - 1, -1, -1):
        p = data[i]
        if p.encoding == _PLAIN:
            _place_plain(p, buf, base, stride, decompress, max_def)
        elif table is not None:
            rows = np.ndarray((p.count, stride), np.uint8, buffer=buf, offset=base + p.row * stride)
            np.take(table, indices[i], axis=0, out=rows)
    if in_place:
        _decompress(decompress, dictionary.payload, buf[base:base + dictionary.usize])
    length = stride - 4
    prefixes = np.ndarray((num_values,), dtype="<u4", buffer=buf, offset=base, strides=(stride,))
    if not (prefixes == length).all():
        raise _Unsupported("values of different lengths")
    return FixedCells(buf, base + 4, stride, length, num_values)


def _stride(dictionary: Optional[_Page], first: _Page, max_def: int) -> int:
    """Bytes per value including its 4-byte length prefix, from the page sizes (checked once placed)."""
    if dictionary is not None:
        stride, rest = divmod(dictionary.usize, dictionary.count)
    elif first.kind == _DATA_PAGE_V2:
        stride, rest = divmod(first.usize - first.levels, first.count)
    elif max_def == 0:
        stride, rest = divmod(first.usize, first.count)
    else:  # 4-byte length + definition levels (fewer bytes than values when they are one run) + values
        stride, rest = (first.usize - 4) // first.count, 0
    if rest or stride <= 4:
        raise _Unsupported("values of different lengths")
    return stride


def _v1_prefix(page: _Page, stride: int) -> int:
    prefix = page.usize - page.count * stride
    if prefix < 0:
        raise _Unsupported("page smaller than its values")
    return prefix


def _decompress(decompress: Callable, src: memoryview, dst: np.ndarray) -> None:
    try:
        got = decompress(src, dst)
    except _Unsupported:
        raise
    except Exception as e:  # cramjam.DecompressionError and friends: let pyarrow read (and report) it
        raise _Unsupported(f"decompression: {e}") from e
    if got != len(dst):
        raise _Unsupported("decompressed size")


def _place_plain(p: _Page, buf: np.ndarray, base: int, stride: int, decompress: Callable, max_def: int) -> None:
    end = base + (p.row + p.count) * stride
    if p.kind == _DATA_PAGE_V2:
        if p.usize - p.levels != p.count * stride:
            raise _Unsupported("page size")
        _v2_values(p, decompress, max_def, buf[end - p.count * stride:end])
        return
    prefix = _v1_prefix(p, stride)
    if (prefix != 0) != (max_def > 0):
        raise _Unsupported("page size")
    if end - p.usize < 0:
        raise _Unsupported("definition levels longer than the values before them")
    dst = buf[end - p.usize:end]
    _decompress(decompress, p.payload, dst)
    if _v1_levels(dst, max_def, p.count) != prefix:
        raise _Unsupported("definition levels")


def _v2_values(p: _Page, decompress: Callable, max_def: int, dst: np.ndarray) -> None:
    """Check a v2 page's definition levels (stored uncompressed) and decompress its values into ``dst``."""
    _check_levels(p.payload[:p.levels], max_def, p.count)
    if p.compressed:
        _decompress(decompress, p.payload[p.levels:], dst)
    else:
        _decompressor("UNCOMPRESSED")(p.payload[p.levels:], dst)


def _v1_levels(body: np.ndarray, max_def: int, count: int) -> int:
    """Check the definition levels at the start of a decompressed v1 page (a 4-byte length, then the
    levels; nothing for a required column); returns the bytes they take."""
    if not max_def:
        return 0
    n = int(body[:4].view("<u4")[0])
    _check_levels(memoryview(body[4:4 + n]), max_def, count)
    return 4 + n


def _check_levels(levels: memoryview, max_def: int, count: int) -> None:
    if max_def == 0:
        if len(levels):
            raise _Unsupported("levels on a required column")
        return
    values, _ = _rle_hybrid(levels, max_def.bit_length(), count)
    if not (values == max_def).all():
        raise _Unsupported("nulls")


def _dictionary_indices(p: _Page, decompress: Callable, max_def: int) -> np.ndarray:
    """The dictionary entry of each row of a dictionary-encoded data page, shape ``(p.count,)``."""
    if p.kind == _DATA_PAGE_V2:
        body = np.empty(p.usize - p.levels, np.uint8)
        _v2_values(p, decompress, max_def, body)
        pos = 0
    else:
        body = np.empty(p.usize, np.uint8)
        _decompress(decompress, p.payload, body)
        pos = _v1_levels(body, max_def, p.count)
    mv = memoryview(body)
    values, _ = _rle_hybrid(mv[pos + 1:], mv[pos], p.count)
    return values


def _rle_hybrid(buf: memoryview, width: int, count: int) -> "tuple[np.ndarray, int]":
    """Decode ``count`` values of Parquet's RLE / bit-packed hybrid encoding, ``width`` bits each."""
    if not 0 <= width <= 32:
        raise _Unsupported("bit width")
    out = np.empty(count, np.int64)
    weights = np.left_shift(np.int64(1), np.arange(width, dtype=np.int64))
    run_bytes = (width + 7) // 8
    filled = pos = 0
    while filled < count:
        header, pos = read_varint(buf, pos)
        if header & 1:  # bit-packed groups of 8 values, least significant bit first
            groups = header >> 1
            nbytes = groups * width
            if not groups or pos + nbytes > len(buf):
                raise _Unsupported("bit-packed run")
            bits = np.unpackbits(np.frombuffer(buf, np.uint8, nbytes, pos), bitorder="little")
            values = bits.reshape(groups * 8, width) @ weights if width else np.zeros(groups * 8, np.int64)
            pos += nbytes
        else:
            run = header >> 1
            if not run or pos + run_bytes > len(buf):
                raise _Unsupported("RLE run")
            values = np.full(min(run, count - filled), int.from_bytes(buf[pos:pos + run_bytes], "little"))
            pos += run_bytes
        take = min(len(values), count - filled)
        out[filled:filled + take] = values[:take]
        filled += take
    return out, pos
