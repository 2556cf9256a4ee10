"""Cells that do not decode to what their field declares, or do not decode at all, stop the read with an error
that names the field, the Parquet file, the row group and the row: through every pool, both readers, the
direct page read of fixed-shape ndarray columns and the pyarrow path.

The datasets are written by ``write_dataset`` and then one column of one file is rewritten by hand with pyarrow
(the writer refuses such values), keeping the row groups as they were.
"""
from __future__ import annotations

import glob
import io
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from petastorm import make_batch_reader, make_reader, write_dataset
from petastorm.codecs import CompressedImageCodec, CompressedNdarrayCodec, NdarrayCodec, ScalarCodec
from petastorm.predicates import in_lambda
from petastorm.spark_types import spark_type
from petastorm.unischema import Unischema, UnischemaField

POOLS = ["dummy", "thread", "process"]
READERS = {"make_reader": make_reader, "make_batch_reader": make_batch_reader}
BAD_GROUP, BAD_ROW = 1, 2  # the rewritten cell: row 2 of row group 1 (the file has two row groups of 4 to 6 rows)


def _schema(codec, dtype=np.float32, shape=(4, 4)):
    return Unischema("S", [UnischemaField("id", np.int64, (), ScalarCodec(spark_type("LongType")), False),
                           UnischemaField("m", dtype, shape, codec, False)])


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def _dataset(tmp_path, schema, value, replace, row_group_size_mb=0.001) -> tuple[str, str]:
    """A 10-row dataset of ``schema`` (row i: ``value(i)``), one file of two row groups, in which
    ``replace(group, row, cell) -> cell or None`` rewrites the ``m`` cells. Returns (url, file path)."""
    url = str(tmp_path / "ds")
    write_dataset(url, schema, [{"id": i, "m": value(i)} for i in range(10)], row_group_size_mb=row_group_size_mb,
                  workers_count=1, progress=False)
    (path,) = glob.glob(os.path.join(url, "*.parquet"))
    pf = pq.ParquetFile(path)
    groups = [pf.read_row_group(g) for g in range(pf.metadata.num_row_groups)]
    assert len(groups) == 2 and groups[1].num_rows > BAD_ROW + 1
    with pq.ParquetWriter(path + ".tmp", groups[0].schema) as writer:
        for g, table in enumerate(groups):
            cells = table.column("m").to_pylist()
            cells = [c if replace(g, r, c) is None else replace(g, r, c) for r, c in enumerate(cells)]
            index = table.schema.get_field_index("m")
            table = table.set_column(index, table.schema.field(index), pa.array(cells, pa.binary()))
            writer.write_table(table, row_group_size=table.num_rows)
    os.replace(path + ".tmp", path)
    return "file://" + url, path


def _read_all(reader_name, url, pool, **kwargs):
    with READERS[reader_name](url, reader_pool_type=pool, workers_count=2, shuffle_row_groups=False,
                              **kwargs) as reader:
        return list(reader)


def _assert_names_the_place(error, path, row=BAD_ROW, group=BAD_GROUP):
    message = str(error)
    assert "'m'" in message
    assert os.path.basename(path) in message
    assert f"row group {group}" in message
    assert f"row {row} of" in message
    assert type(error).__name__ == "PetastormDecodeError"  # a ValueError, as the original's decoding errors


def _fixed(i):
    return np.full((4, 4), i, np.float32)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("direct", ["1", "0"])
@pytest.mark.parametrize("reader_name", sorted(READERS))
@pytest.mark.parametrize("pool", POOLS)
@pytest.mark.parametrize("bad", ["shape (3, 3)", "dtype float64", "dtype int32 of the same byte length"])
def test_cell_of_another_shape_or_dtype_than_its_fixed_shape_field_raises_naming_field_file_row_group_and_row(
        tmp_path, monkeypatch, pool, reader_name, direct, bad):
    monkeypatch.setenv("PETASTORM_DIRECT_READ", direct)
    wrong = {"shape (3, 3)": np.zeros((3, 3), np.float32), "dtype float64": np.zeros((4, 4), np.float64),
             "dtype int32 of the same byte length": np.zeros((4, 4), np.int32)}[bad]
    url, path = _dataset(tmp_path, _schema(NdarrayCodec()), _fixed,
                         lambda g, r, c: _npy(wrong) if (g, r) == (BAD_GROUP, BAD_ROW) else None)
    with pytest.raises(ValueError) as info:
        _read_all(reader_name, url, pool)
    _assert_names_the_place(info.value, path)
    assert "float32" in str(info.value)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("direct", ["1", "0"])
@pytest.mark.parametrize("reader_name", sorted(READERS))
@pytest.mark.parametrize("pool", POOLS)
def test_row_group_whose_cells_all_have_another_shape_raises_instead_of_yielding_them(
        tmp_path, monkeypatch, pool, reader_name, direct):
    """Every cell of row group 1 is a valid (3, 3) npy: the one-header-per-column fast paths must refuse it."""
    monkeypatch.setenv("PETASTORM_DIRECT_READ", direct)
    url, path = _dataset(tmp_path, _schema(NdarrayCodec()), _fixed,
                         lambda g, r, c: _npy(np.full((3, 3), r, np.float32)) if g == BAD_GROUP else None)
    with pytest.raises(ValueError, match=r"shape \(3, 3\)") as info:
        _read_all(reader_name, url, pool)
    _assert_names_the_place(info.value, path, row=0)


def test_bad_cell_is_named_by_its_row_in_the_row_group_after_a_predicate_dropped_rows(tmp_path):
    """The predicate keeps the odd ids: the decoded column holds rows 1, 3, 5 of row group 1, and the bad
    cell (row 3 of the group) is the column's second one: the message names row 3."""
    url, path = _dataset(tmp_path, _schema(NdarrayCodec()), _fixed,
                         lambda g, r, c: _npy(np.zeros((3, 3), np.float32)) if (g, r) == (1, 3) else None)
    with pytest.raises(ValueError) as info:
        _read_all("make_reader", url, "dummy", predicate=in_lambda(["id"], lambda i: i % 2 == 1))
    _assert_names_the_place(info.value, path, row=3)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("reader_name", sorted(READERS))
@pytest.mark.parametrize("pool", POOLS)
@pytest.mark.parametrize("kind", ["npy", "npz", "png", "jpeg", "variable-shape npy"])
def test_corrupt_cell_raises_naming_field_file_row_group_and_row(tmp_path, pool, reader_name, kind):
    codec, dtype, shape, value = {
        "npy": (NdarrayCodec(), np.float32, (4, 4), _fixed),
        "variable-shape npy": (NdarrayCodec(), np.float32, (None, 4), _fixed),
        "npz": (CompressedNdarrayCodec(), np.float32, (4, 4), _fixed),
        "png": (CompressedImageCodec("png"), np.uint8, (4, 5, 3), lambda i: np.full((4, 5, 3), i, np.uint8)),
        "jpeg": (CompressedImageCodec("jpeg"), np.uint8, (4, 5, 3), lambda i: np.full((4, 5, 3), i, np.uint8)),
    }[kind]
    url, path = _dataset(tmp_path, _schema(codec, dtype, shape), value,
                         lambda g, r, c: b"\x93NUMPY garbage" if (g, r) == (BAD_GROUP, BAD_ROW) else None,
                         row_group_size_mb={"png": 0.0004, "jpeg": 0.003}.get(kind, 0.001))
    with pytest.raises(ValueError) as info:
        _read_all(reader_name, url, pool)
    _assert_names_the_place(info.value, path)


def test_compressed_ndarray_cell_of_another_shape_raises(tmp_path):
    def npz(array):
        buf = io.BytesIO()
        np.savez_compressed(buf, arr=array)
        return buf.getvalue()

    url, path = _dataset(tmp_path, _schema(CompressedNdarrayCodec()), _fixed,
                         lambda g, r, c: npz(np.zeros((3, 3), np.float32)) if (g, r) == (BAD_GROUP, BAD_ROW) else None)
    with pytest.raises(ValueError, match=r"shape \(3, 3\)") as info:
        _read_all("make_batch_reader", url, "thread")
    _assert_names_the_place(info.value, path)


@pytest.mark.parametrize("reader_name", sorted(READERS))
def test_cells_that_fit_their_field_still_read(tmp_path, reader_name):
    url, _ = _dataset(tmp_path, _schema(NdarrayCodec()), _fixed, lambda g, r, c: None)
    out = _read_all(reader_name, url, "thread")
    values = [r.m for r in out] if reader_name == "make_reader" else [m for b in out for m in b.m]
    assert len(values) == 10 and all(v.shape == (4, 4) and v.dtype == np.float32 for v in values)
