"""Row groups of local files are read from a memory map opened for each read (those of at least
``worker._MAP_MIN_BYTES``; the tests lower it to 0 to map these small files): the same values as pyarrow's own
read, no mapping left behind once a row group is read, and a file cut short after its footer was read is an
error naming the file and the row group (not a crash)."""
from __future__ import annotations

import datetime
import os
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import petastorm.reader_impl.parquet_io as parquet_io
import petastorm.reader_impl.worker as worker
from petastorm import make_batch_reader
from petastorm.errors import PetastormDatasetError


@pytest.fixture(autouse=True)
def map_every_row_group(monkeypatch):
    monkeypatch.setattr(worker, "_MAP_MIN_BYTES", 0)


def _table(n: int = 3000) -> pa.Table:
    ids = np.arange(n, dtype=np.int64)
    return pa.table({
        "id": ids,
        "f": (ids / 7).astype(np.float32),
        "maybe": pa.array([None if i % 5 == 0 else i for i in range(n)], pa.int32()),
        "s": pa.array([f"s{i % 13}" for i in range(n)]),
        "blob": pa.array([bytes([i % 251]) * (i % 17) for i in range(n)], pa.binary()),
        "dec": pa.array([Decimal(i) / 4 for i in range(n)], pa.decimal128(12, 2)),
        "day": pa.array([datetime.date(2020, 1, 1 + i % 28) for i in range(n)]),
        "vec": pa.array([[float(i), float(i) + 0.5] for i in range(n)], pa.list_(pa.float64())),
    })


def _mapped_files(directory: str) -> list:
    with open("/proc/self/maps") as f:
        return [line for line in f if directory in line]


@pytest.mark.parametrize("compression", ["none", "snappy", "zstd"])
def test_every_column_reads_as_pyarrow_reads_it(tmp_path, compression):
    table = _table()
    pq.write_table(table, str(tmp_path / "a.parquet"), row_group_size=1000, compression=compression)
    with make_batch_reader("file://" + str(tmp_path), reader_pool_type="dummy", shuffle_row_groups=False) as reader:
        batches = list(reader)
    assert [len(b.id) for b in batches] == [1000, 1000, 1000]
    expected = table.to_pydict()
    got = {name: [v for b in batches for v in getattr(b, name)] for name in table.column_names}
    assert [int(v) for v in got["id"]] == expected["id"]
    assert np.array_equal(np.concatenate([b.f for b in batches]), table.column("f").to_numpy())
    assert [None if v is None else int(v) for v in got["maybe"]] == expected["maybe"]
    assert got["s"] == expected["s"] and got["blob"] == expected["blob"] and got["dec"] == expected["dec"]
    assert got["day"] == expected["day"]
    assert [list(v) for v in got["vec"]] == expected["vec"]


@pytest.mark.parametrize("pool", ["dummy", "thread"])
@pytest.mark.parametrize("compression", ["none", "snappy"])
def test_no_mapping_of_the_files_is_left_once_their_row_groups_are_read(tmp_path, pool, compression):
    # a mapping kept per open file would hold every page read so far in the reader's RSS; a column that
    # referred to the mapping (an uncompressed page used in place) would keep it mapped
    directory = str(tmp_path / "ds")
    os.makedirs(directory)
    for k in range(3):
        pq.write_table(_table(), os.path.join(directory, f"part-{k}.parquet"), row_group_size=1000,
                       compression=compression)
    with make_batch_reader("file://" + directory, reader_pool_type=pool, workers_count=2) as reader:
        kept = []
        for batch in reader:
            kept.append(batch)  # the batches are alive: their columns hold no reference to a mapping
            if pool == "dummy":  # (a worker thread may be reading the next row group now)
                assert _mapped_files(directory) == []
        assert len(kept) == 9
        assert _mapped_files(directory) == []
    assert sorted(int(v) for b in kept for v in b.id) == sorted(list(range(3000)) * 3)


def test_only_row_groups_of_at_least_the_threshold_are_mapped(tmp_path, monkeypatch):
    # below ~1 MB mapping costs more CPU than the copy it saves (2,000 one-row-group files: +13%)
    monkeypatch.setattr(worker, "_MAP_MIN_BYTES", 2 << 20)
    mapped = []
    original = parquet_io.mapped_row_group_file

    def recording(fd, *args, **kwargs):
        mapped.append(os.path.basename(os.readlink(f"/proc/self/fd/{fd}")))
        return original(fd, *args, **kwargs)

    monkeypatch.setattr(parquet_io, "mapped_row_group_file", recording)
    rng = np.random.default_rng(0)
    for name, rows in [("big", 1 << 20), ("small", 1000)]:  # 8 MiB of doubles in "big"'s x, 8 KB in "small"'s
        pq.write_table(pa.table({"x": rng.random(rows), "y": np.zeros(rows, np.int8)}),
                       str(tmp_path / f"{name}.parquet"), compression="none")
    with make_batch_reader("file://" + str(tmp_path), reader_pool_type="dummy") as reader:
        assert sorted(len(b.x) for b in reader) == [1000, 1 << 20]
    assert mapped == ["big.parquet"]
    mapped.clear()  # only the bytes of the columns read count: "big"'s y takes 1 MiB
    with make_batch_reader("file://" + str(tmp_path), reader_pool_type="dummy", schema_fields=["y"]) as reader:
        assert sorted(len(b.y) for b in reader) == [1000, 1 << 20]
    assert mapped == []
    monkeypatch.setenv("PETASTORM_MMAP_READ", "off")  # the switch for datasets rewritten in place while read
    with make_batch_reader("file://" + str(tmp_path), reader_pool_type="dummy") as reader:
        assert sorted(len(b.x) for b in reader) == [1000, 1 << 20]
    assert mapped == []


@pytest.mark.parametrize("map_min_bytes", [0, 1 << 40])
def test_a_file_cut_short_after_its_footer_was_read_is_an_error_naming_file_and_row_group(tmp_path, monkeypatch,
                                                                                         map_min_bytes):
    monkeypatch.setattr(worker, "_MAP_MIN_BYTES", map_min_bytes)  # read from a map, and through the file
    path = str(tmp_path / "a.parquet")
    pq.write_table(pa.table({"x": np.arange(30000, dtype=np.int64)}), path, row_group_size=10000)
    with make_batch_reader("file://" + str(tmp_path), reader_pool_type="dummy", shuffle_row_groups=False) as reader:
        assert next(reader).x[:3].tolist() == [0, 1, 2]
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) // 2)
        with pytest.raises(PetastormDatasetError, match=r"row group 1 of Parquet file '.*a\.parquet'"):
            next(reader)
