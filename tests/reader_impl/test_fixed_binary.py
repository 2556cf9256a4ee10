"""Fixed-size binary column chunks read straight from their Parquet pages (``reader_impl.fixed_binary``).

Every layout the module handles is written with pyarrow and compared with what pyarrow reads; every
layout it does not handle must give None (the worker then reads through pyarrow), never wrong values.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from petastorm.codecs import NdarrayCodec
from petastorm.npy_format import array_to_npy_bytes
from petastorm.reader_impl import fixed_binary
from petastorm.reader_impl.fixed_binary import read_fixed_binary
from petastorm.reader_impl.thrift_compact import ThriftError, read_struct


def _arrays(n: int, shape=(4, 8), dtype=np.float32, repeats: bool = False, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(shape).astype(dtype) for _ in range(3 if repeats else n)]
    return [arrays[(i * 7) % 3] for i in range(n)] if repeats else arrays


def _write(path, values: list, nullable: bool = False, **options) -> str:
    schema = pa.schema([pa.field("arr", pa.binary(), nullable=nullable)])
    pq.write_table(pa.table({"arr": pa.array(values, pa.binary())}, schema=schema), path, **options)
    return str(path)


def _npy(arrays: list) -> list:
    return [bytes(array_to_npy_bytes(a)) for a in arrays]


def _cells(path: str, row_group: int = 0):
    md = pq.ParquetFile(path).metadata
    return read_fixed_binary(path, md.row_group(row_group).column(0), md.schema.column(0).max_definition_level,
                             lambda n: np.empty(n, np.uint8))


def _values(cells) -> list:
    return [bytes(cells.buffer[cells.start + k * cells.stride:][:cells.length]) for k in range(cells.count)]


def _page_kinds(path: str) -> list:
    """(page type, encoding) of every page of the first column chunk."""
    md = pq.ParquetFile(path).metadata
    chunk = md.row_group(0).column(0)
    start = chunk.data_page_offset
    if chunk.has_dictionary_page and chunk.dictionary_page_offset:
        start = min(start, chunk.dictionary_page_offset)
    with open(path, "rb") as f:
        f.seek(start)
        raw = f.read(chunk.total_compressed_size)
    kinds, pos = [], 0
    while pos < len(raw):
        head, pos = read_struct(raw, pos)
        sub = head.get(5) or head.get(8) or head.get(7) or {}
        kinds.append((head[1], sub.get(4 if 8 in head else 2)))
        pos += head[3]
    return kinds


LAYOUTS = {
    "defaults": {},
    "uncompressed": {"compression": "none"},
    "zstd": {"compression": "zstd"},
    "gzip": {"compression": "gzip"},
    "brotli": {"compression": "brotli"},
    "lz4_raw": {"compression": "lz4"},
    "plain": {"use_dictionary": False},
    "plain-uncompressed": {"use_dictionary": False, "compression": "none"},
    "v2": {"data_page_version": "2.0"},
    "v2-plain-zstd": {"data_page_version": "2.0", "use_dictionary": False, "compression": "zstd"},
    "v2-plain-uncompressed": {"data_page_version": "2.0", "use_dictionary": False, "compression": "none"},
    "many-pages": {"use_dictionary": False, "data_page_size": 1000, "write_batch_size": 4},
    "many-pages-v2": {"use_dictionary": False, "data_page_size": 1000, "write_batch_size": 4,
                      "data_page_version": "2.0"},
    "dictionary-then-plain": {"dictionary_pagesize_limit": 3000, "data_page_size": 2000, "write_batch_size": 8},
    "dictionary-then-plain-v2": {"dictionary_pagesize_limit": 3000, "data_page_size": 2000, "write_batch_size": 8,
                                 "data_page_version": "2.0"},
}


@pytest.mark.parametrize("nullable", [False, True], ids=["required", "optional"])
@pytest.mark.parametrize("repeats", [False, True], ids=["unique", "repeated"])
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_every_handled_layout_reads_the_values_pyarrow_reads(tmp_path, layout, repeats, nullable):
    arrays = _arrays(200, repeats=repeats)
    path = _write(tmp_path / "f.parquet", _npy(arrays), nullable=nullable, **LAYOUTS[layout])
    cells = _cells(path)
    assert cells is not None, f"{layout}: {_page_kinds(path)}"
    assert _values(cells) == pq.read_table(path).column("arr").to_pylist()
    got = NdarrayCodec().decode_fixed_cells(None, cells)
    assert got.shape == (200, 4, 8) and got.dtype == np.float32
    np.testing.assert_array_equal(got, np.stack(arrays))
    assert got.base is not None and got.strides[0] == cells.stride  # a view of the placed values


def test_the_layouts_are_what_their_names_say(tmp_path):
    kinds = {}
    for name in ("many-pages", "many-pages-v2", "dictionary-then-plain", "dictionary-then-plain-v2"):
        kinds[name] = _page_kinds(_write(tmp_path / f"{name}.parquet", _npy(_arrays(200)), **LAYOUTS[name]))
    assert len(kinds["many-pages"]) > 10 and {k for k, _ in kinds["many-pages"]} == {0}
    assert len(kinds["many-pages-v2"]) > 10 and {k for k, _ in kinds["many-pages-v2"]} == {3}
    for name in ("dictionary-then-plain", "dictionary-then-plain-v2"):
        encodings = [e for _, e in kinds[name][1:]]
        assert kinds[name][0][0] == 2 and 8 in encodings and 0 in encodings, kinds[name]


def test_every_row_group_of_a_file(tmp_path):
    arrays = _arrays(100)
    path = _write(tmp_path / "f.parquet", _npy(arrays), row_group_size=30)
    assert pq.ParquetFile(path).metadata.num_row_groups == 4
    for g in range(4):
        np.testing.assert_array_equal(NdarrayCodec().decode_fixed_cells(None, _cells(path, g)),
                                      np.stack(arrays[30 * g:30 * g + 30]))


def test_values_are_aligned_for_their_dtype_and_misaligned_strides_are_copied(tmp_path):
    # float64 (4, 8): 256 data bytes + 128 header + 4 length bytes: rows 388 bytes apart, not whole elements
    arrays = _arrays(50, dtype=np.float64)
    cells = _cells(_write(tmp_path / "f.parquet", _npy(arrays)))
    assert cells.stride % 8 == 4 and (cells.buffer.ctypes.data + cells.start) % 64 == 0
    got = NdarrayCodec().decode_fixed_cells(None, cells)
    assert got.flags.c_contiguous and got.ctypes.data % 8 == 0
    np.testing.assert_array_equal(got, np.stack(arrays))


@pytest.mark.parametrize("case", ["null", "lengths", "shapes", "lz4-hadoop-like-codec", "fortran", "not-npy"])
def test_layouts_not_handled_give_none(tmp_path, case):
    arrays = _arrays(20)
    nullable = False
    values = _npy(arrays)
    if case == "null":
        values[5], nullable = None, True
    elif case == "lengths":
        values[3] = values[3] + b"x"
    elif case == "shapes":  # same length, other header
        values[7] = bytes(array_to_npy_bytes(arrays[7].reshape(8, 4)))
    elif case == "fortran":
        values = [bytes(array_to_npy_bytes(np.asfortranarray(a))) for a in arrays]
    elif case == "not-npy":
        values = [b"0123456789"] * 20
    path = _write(tmp_path / "f.parquet", values, nullable=nullable)
    if case == "lz4-hadoop-like-codec":
        md = pq.ParquetFile(path).metadata
        chunk = md.row_group(0).column(0)

        class Other:  # a codec this module does not decompress
            def __getattr__(self, name):
                return "LZO" if name == "compression" else getattr(chunk, name)
        assert read_fixed_binary(path, Other(), 0, lambda n: np.empty(n, np.uint8)) is None
        return
    cells = _cells(path)
    if case in ("null", "lengths"):
        assert cells is None
    else:  # the values are equal-length bytes, but not one npy header + data
        assert NdarrayCodec().decode_fixed_cells(None, cells) is None


def test_a_truncated_file_gives_none(tmp_path):
    path = _write(tmp_path / "f.parquet", _npy(_arrays(20)))
    md = pq.ParquetFile(path).metadata
    with open(path, "r+b") as f:
        f.truncate(md.row_group(0).column(0).data_page_offset // 2)
    assert read_fixed_binary(path, md.row_group(0).column(0), 0, lambda n: np.empty(n, np.uint8)) is None


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def _dictionary_page_header(usize: int, csize: int, count: int) -> bytes:
    """A compact-protocol PageHeader of a DICTIONARY_PAGE (i32 fields: zigzag varints)."""
    i32 = 0x15  # field id delta 1, type i32
    return (bytes([i32]) + _varint(2 << 1) + bytes([i32]) + _varint(usize << 1) + bytes([i32])
            + _varint(csize << 1) + bytes([0x4C, i32]) + _varint(count << 1) + bytes([i32, 0, 0, 0]))


@pytest.mark.parametrize("usize, count", [(2**31 - 1, 1), (64, 2**30)])
def test_a_header_asking_for_more_than_the_footer_says_allocates_nothing(usize, count):
    raw = _dictionary_page_header(usize, 8, count) + bytes(8)
    head, pos = read_struct(raw)
    assert head[1] == 2 and head[2] == usize and head[3] == 8 and head[7][1] == count and pos == len(raw) - 8

    def alloc(n):
        raise AssertionError(f"allocated {n} bytes")
    with pytest.raises(fixed_binary._Unsupported):
        fixed_binary._place(memoryview(raw), 10, 0, fixed_binary._decompressor("UNCOMPRESSED"), alloc, 4096)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), compression=st.sampled_from(["none", "snappy"]),
       options=st.sampled_from(["defaults", "plain", "many-pages", "dictionary-then-plain-v2"]))
def test_a_corrupted_chunk_gives_none_or_what_pyarrow_reads(tmp_path_factory, data, compression, options):
    """Flip one byte anywhere in the column chunk: the direct read never raises, and whatever it returns
    pyarrow reads too (a corruption it cannot see, such as a statistics byte, changes nothing for either)."""
    path = str(tmp_path_factory.mktemp("corrupt") / "f.parquet")
    arrays = _arrays(40, shape=(2, 3))
    _write(path, _npy(arrays), **{**LAYOUTS[options], "compression": compression})
    chunk = pq.ParquetFile(path).metadata.row_group(0).column(0)
    start = chunk.data_page_offset
    if chunk.has_dictionary_page and chunk.dictionary_page_offset:
        start = min(start, chunk.dictionary_page_offset)
    where = data.draw(st.integers(start, start + chunk.total_compressed_size - 1))
    flip = data.draw(st.integers(1, 255))
    with open(path, "r+b") as f:
        f.seek(where)
        byte = f.read(1)[0]
        f.seek(where)
        f.write(bytes([byte ^ flip]))
    cells = read_fixed_binary(path, chunk, 0, lambda n: np.empty(n, np.uint8))
    if cells is not None:
        assert _values(cells) == pq.read_table(path).column("arr").to_pylist()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_thrift_reader_raises_only_its_own_error_on_garbage(raw):
    try:
        read_struct(raw)
    except ThriftError:
        pass


def test_thrift_reader_decodes_a_page_header_pyarrow_wrote(tmp_path):
    path = _write(tmp_path / "f.parquet", _npy(_arrays(10)), use_dictionary=False, compression="none")
    chunk = pq.ParquetFile(path).metadata.row_group(0).column(0)
    with open(path, "rb") as f:
        f.seek(chunk.data_page_offset)
        raw = f.read(chunk.total_compressed_size)
    head, pos = read_struct(raw)
    assert head[1] == 0 and head[2] == head[3] == 10 * (4 + 128 + 128)  # DATA_PAGE, uncompressed sizes
    assert head[5][1] == 10 and head[5][2] == 0  # 10 values, PLAIN
    assert pos + head[3] == len(raw)
    with pytest.raises(ThriftError):
        read_struct(raw[:pos - 1])


def test_rle_hybrid_decodes_runs_and_bit_packed_groups():
    # a run of 5 threes (width 2), then one bit-packed group of 8 values 0..7 (width 3)
    run, _ = fixed_binary._rle_hybrid(memoryview(bytes([5 << 1, 3])), 2, 5)
    assert run.tolist() == [3] * 5
    bits = 0
    for i, v in enumerate(range(8)):
        bits |= v << (3 * i)
    packed, pos = fixed_binary._rle_hybrid(memoryview(bytes([1 << 1 | 1]) + bits.to_bytes(3, "little")), 3, 8)
    assert packed.tolist() == list(range(8)) and pos == 4
    with pytest.raises(fixed_binary._Unsupported):
        fixed_binary._rle_hybrid(memoryview(bytes([0, 0])), 2, 3)  # a run of no values would never end


# --- through the reader ------------------------------------------------------------------------------------


def _write_ndarray_dataset(path, rows: int, shape: tuple, dtype, rows_per_group: int) -> str:
    from petastorm.codecs import ScalarCodec
    from petastorm.spark_types import spark_type
    from petastorm.unischema import Unischema, UnischemaField
    from tests._fixtures.datasets import write_synthetic_dataset

    schema = Unischema("Arrays", [
        UnischemaField("id", np.int64, (), ScalarCodec(spark_type("LongType")), False),
        UnischemaField("arr", dtype, shape, NdarrayCodec(), False),
    ])

    def row(i):
        return {"id": i, "arr": np.random.default_rng(i).standard_normal(shape).astype(dtype)}

    return write_synthetic_dataset(str(path), rows=rows, rows_per_group=rows_per_group, groups_per_file=2,
                                   schema=schema, row_fn=row)


def _read_all(url, direct: bool, monkeypatch, batch: bool = False, **kwargs) -> list:
    from petastorm import make_batch_reader, make_reader

    monkeypatch.setenv("PETASTORM_DIRECT_READ", "1" if direct else "0")
    with (make_batch_reader if batch else make_reader)(url, **kwargs) as reader:
        return [{k: np.asarray(v).copy() for k, v in r._asdict().items()} for r in reader]


def _spy_direct(monkeypatch) -> list:
    """Counts the chunks the worker placed directly (in this process: dummy and thread pools)."""
    placed = []
    orig = fixed_binary.read_fixed_binary

    def spy(*args, **kwargs):
        out = orig(*args, **kwargs)
        placed.append(out is not None)
        return out

    monkeypatch.setattr(fixed_binary, "read_fixed_binary", spy)
    return placed


READER_OPTIONS = {
    "in-order": {"shuffle_row_groups": False},
    "shuffled": {"seed": 3, "shuffle_rows": True},
    "drop-partitions": {"seed": 3, "shuffle_row_drop_partitions": 2},
    "predicate": {"shuffle_row_groups": False, "predicate": "odd"},
    "two-epochs": {"seed": 5, "num_epochs": 2},
}


@pytest.mark.parametrize("pool", ["dummy", "thread", "process"])
@pytest.mark.parametrize("options", sorted(READER_OPTIONS))
def test_reader_rows_are_the_same_with_and_without_the_direct_read(tmp_path_factory, monkeypatch, pool, options):
    from petastorm.predicates import in_lambda

    kwargs = dict(READER_OPTIONS[options])
    if kwargs.get("predicate") == "odd":
        kwargs["predicate"] = in_lambda(["id"], lambda i: i % 2 == 1)
    # (24, 24) float32 rows of 2,432 bytes: 480 rows per group make 1.1 MiB, shared memory in process workers
    url = _write_ndarray_dataset(tmp_path_factory.mktemp("arrays"), 1920, (24, 24), np.float32, 480)
    placed = _spy_direct(monkeypatch)
    kwargs.update(reader_pool_type=pool, workers_count=2)
    got = _read_all(url, True, monkeypatch, **kwargs)
    if pool != "process":
        assert placed and all(placed), placed
    placed.clear()
    want = _read_all(url, False, monkeypatch, **kwargs)
    assert not placed
    assert len(got) == len(want) > 0
    for a, b in zip(got, want):
        assert a["id"] == b["id"]
        np.testing.assert_array_equal(a["arr"], b["arr"])


@pytest.mark.parametrize("pool", ["dummy", "thread", "process"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batch_reader_batches_view_the_placed_values_where_the_dtype_allows(tmp_path, monkeypatch, pool, dtype):
    from petastorm import make_batch_reader

    # (48, 48): 9,216 or 18,432 data bytes + 128 header + 4 length bytes a row; 120 rows: 1.1 or 2.2 MiB
    url = _write_ndarray_dataset(tmp_path, 480, (48, 48), dtype, 120)
    row_bytes = 48 * 48 * np.dtype(dtype).itemsize
    stride = row_bytes + 128 + 4  # float64: not a whole number of elements, so rows are copied compact
    with make_batch_reader(url, reader_pool_type=pool, workers_count=2, shuffle_row_groups=False) as reader:
        batches = [(b.id.copy(), b.arr) for b in reader]
    assert [ids.tolist() for ids, _ in batches] == [list(range(i, i + 120)) for i in range(0, 480, 120)]
    for ids, arr in batches:
        assert arr.shape == (120, 48, 48) and arr.dtype == dtype
        assert arr.strides[0] == (stride if dtype == np.float32 else row_bytes)
        assert arr.flags.writeable and all(row.flags.c_contiguous for row in arr)
        for i, row in zip(ids, arr):
            np.testing.assert_array_equal(row, np.random.default_rng(int(i)).standard_normal((48, 48)).astype(dtype))


def test_not_used_for_variable_shapes_a_cache_or_when_turned_off(tmp_path, monkeypatch, synthetic_dataset):
    from petastorm import make_reader

    placed = _spy_direct(monkeypatch)
    with make_reader(synthetic_dataset, reader_pool_type="dummy", schema_fields=["id", "var"]) as reader:
        assert len(list(reader)) == 100
    assert placed == []  # 'var' is (None,): its values differ in length
    with make_reader(synthetic_dataset, reader_pool_type="dummy", schema_fields=["id", "matrix"],
                     cache_type="local-disk", cache_location=str(tmp_path / "cache"),
                     cache_size_limit=1 << 30, cache_row_size_estimate=100) as reader:
        assert len(list(reader)) == 100
    assert placed == []  # the cache holds Arrow tables
    monkeypatch.setenv("PETASTORM_DIRECT_READ", "0")
    with make_reader(synthetic_dataset, reader_pool_type="dummy", schema_fields=["id", "matrix"]) as reader:
        assert len(list(reader)) == 100
    assert placed == []
    monkeypatch.delenv("PETASTORM_DIRECT_READ")
    with make_reader(synthetic_dataset, reader_pool_type="dummy", schema_fields=["id", "matrix"]) as reader:
        assert len(list(reader)) == 100
    assert len(placed) == 10 and all(placed)


def test_a_layout_not_handled_is_read_through_pyarrow_and_not_tried_again(tmp_path, monkeypatch):
    from petastorm import make_reader

    url = _write_ndarray_dataset(tmp_path, 40, (2, 2), np.float32, 10)
    placed = _spy_direct(monkeypatch)
    monkeypatch.setattr(fixed_binary, "_decompressor", lambda codec: None)  # no codec handled here
    with make_reader(url, reader_pool_type="dummy", shuffle_row_groups=False) as reader:
        rows = list(reader)
    assert [int(r.id) for r in rows] == list(range(40))
    assert len(placed) == 2 and not any(placed)  # one try per file
