"""Datasets written by old versions of the original library read with make_reader and make_batch_reader."""
import io
import os
import subprocess
import sys
from decimal import Decimal

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest

from petastorm import make_batch_reader, make_reader

LEGACY_VERSIONS = ["0.4.0", "0.4.3", "0.5.1", "0.6.0", "0.7.0", "0.7.6"]

# The fields each legacy dataset's stored Unischema has (see testdata/README.md), per version.
_FIELDS_0_4 = {"partition_key", "id", "id2", "python_primitive_uint8", "image_png", "matrix", "decimal",
               "matrix_uint16", "matrix_string", "empty_matrix_string", "matrix_nullable", "sensor_name",
               "string_array_nullable"}
_FIELDS_0_5 = _FIELDS_0_4 | {"id_float", "id_odd"}
_FIELDS_0_7_6 = _FIELDS_0_5 | {"integer_nullable", "matrix_uint32"}
LEGACY_FIELDS = {"0.4.0": _FIELDS_0_4, "0.4.3": _FIELDS_0_4, "0.5.1": _FIELDS_0_5, "0.6.0": _FIELDS_0_5,
                 "0.7.0": _FIELDS_0_5, "0.7.6": _FIELDS_0_7_6}
_NULLABLE = {"matrix_nullable", "string_array_nullable", "integer_nullable"}
# Stored as NdarrayCodec cells (npy bytes).
_NPY_FIELDS = {"matrix", "matrix_uint16", "matrix_uint32", "matrix_string", "empty_matrix_string",
               "sensor_name", "string_array_nullable", "matrix_nullable"}
# Plain Parquet scalars, and the numpy type each decodes to (the Unischema's, not the Spark storage type's).
_SCALAR_DTYPES = {"id": np.int64, "id2": np.int32, "python_primitive_uint8": np.uint8, "id_float": np.float64,
                  "id_odd": np.bool_, "integer_nullable": np.int32}


def _legacy_url(testdata_dir, version):
    return "file://" + os.path.join(testdata_dir, "legacy", version)


def _raw_rows_by_id(testdata_dir, version):
    """The dataset's cells as plain pyarrow reads them (Hive partition column included), keyed by ``id``."""
    table = pq.read_table(os.path.join(testdata_dir, "legacy", version))
    return table.schema, {row["id"]: row for row in table.to_pylist()}


def _decode_png(data):
    """An independent decoding of a stored PNG cell, as (BGR as OpenCV gives it, RGB)."""
    bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    assert bgr is not None and bgr.shape == (32, 16, 3) and bgr.dtype == np.uint8
    return bgr, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


@pytest.mark.parametrize("version", LEGACY_VERSIONS)
def test_legacy_dataset_reads_100_rows_with_the_right_values(testdata_dir, version):
    expected_fields = LEGACY_FIELDS[version]
    with make_reader(_legacy_url(testdata_dir, version), workers_count=1) as reader:
        schema = reader.schema
        rows = list(reader)
    # the stored schema and the rows have exactly this version's fields: a missing one fails here
    assert set(schema.fields) == expected_fields
    assert {name for name, f in schema.fields.items() if f.nullable} == expected_fields & _NULLABLE
    raw_schema, raw = _raw_rows_by_id(testdata_dir, version)
    assert set(raw_schema.names) == expected_fields
    assert len(rows) == 100
    rows.sort(key=lambda r: r.id)
    assert [int(r.id) for r in rows] == list(range(100)) == sorted(raw)

    nulls = {name: 0 for name in expected_fields & _NULLABLE}
    swapped_channels_differ = False
    for r in rows:
        assert set(r._fields) == expected_fields
        i = int(r.id)
        cells = raw[i]
        assert r.partition_key == cells["partition_key"] == f"p_{i // 10}"
        # scalars: the stored value, with the Unischema's numpy type; a null cell gives None
        for name, dtype in _SCALAR_DTYPES.items():
            if name not in expected_fields:
                continue
            value = getattr(r, name)
            if cells[name] is None:
                assert value is None, (i, name, value)
                nulls[name] += 1
            else:
                assert value is not None, (i, name)
                assert np.asarray(value).dtype == dtype, (i, name, type(value))
                assert value == cells[name], (i, name, value, cells[name])
        assert int(r.id2) == i % 2
        if "id_float" in expected_fields:
            assert float(r.id_float) == float(i)
            assert bool(r.id_odd) == bool(i % 2)
        if "integer_nullable" in expected_fields:
            assert (r.integer_nullable is None) == bool(i % 2)
        # decimal: a Decimal equal to the stored decimal128(10, 9)
        assert isinstance(r.decimal, Decimal) and isinstance(cells["decimal"], Decimal)
        assert r.decimal == cells["decimal"], (i, r.decimal, cells["decimal"])
        # ndarray cells: what numpy.load makes of the stored npy bytes (same dtype, shape, values)
        for name in _NPY_FIELDS & expected_fields:
            value = getattr(r, name)
            if cells[name] is None:
                assert value is None, (i, name, value)
                nulls[name] += 1
                continue
            want = np.load(io.BytesIO(cells[name]), allow_pickle=False)
            assert isinstance(value, np.ndarray), (i, name, type(value))
            assert value.dtype == want.dtype and value.shape == want.shape, (i, name, value.dtype, want.dtype)
            np.testing.assert_array_equal(value, want, err_msg=f"row {i} field {name}")
        assert r.matrix.shape == (32, 16, 3) and r.matrix.dtype == np.float32
        assert r.sensor_name.shape == (1,)
        # PNG: the RGB array OpenCV decodes from the stored bytes (OpenCV gives BGR; the reader swaps it)
        bgr, rgb = _decode_png(cells["image_png"])
        assert r.image_png.dtype == np.uint8 and r.image_png.shape == (32, 16, 3)
        np.testing.assert_array_equal(r.image_png, rgb, err_msg=f"row {i} image_png")
        swapped_channels_differ |= not np.array_equal(bgr, rgb)
    assert swapped_channels_differ  # so the RGB comparison above tells RGB from BGR
    # null cells do occur (so the None path is tested) and match the stored null counts
    assert nulls == {name: sum(cells[name] is None for cells in raw.values()) for name in nulls}
    assert nulls["matrix_nullable"] == 100
    assert 0 < nulls["string_array_nullable"] < 100
    if "integer_nullable" in expected_fields:
        assert nulls["integer_nullable"] == 50
    # images decode to something other than a constant
    assert len({rows[0].image_png.tobytes(), rows[1].image_png.tobytes()}) == 2


@pytest.mark.parametrize("version", LEGACY_VERSIONS)
def test_legacy_dataset_reads_with_the_batch_reader(testdata_dir, version):
    with make_batch_reader(_legacy_url(testdata_dir, version), workers_count=2) as reader:
        batches = list(reader)
    ids = np.concatenate([b.id for b in batches])
    assert sorted(ids.tolist()) == list(range(100))
    matrices = np.concatenate([b.matrix for b in batches])
    assert matrices.shape == (100, 32, 16, 3)


def test_legacy_dataset_reads_without_pyspark(testdata_dir):
    code = f"""
import sys
sys.modules['pyspark'] = None  # import pyspark now fails
from petastorm import make_reader
for v in {LEGACY_VERSIONS!r}:
    with make_reader('file://{testdata_dir}/legacy/' + v, workers_count=1) as r:
        rows = list(r)
    assert len(rows) == 100, (v, len(rows))
    assert all(x.matrix.shape == (32, 16, 3) for x in rows)
with make_reader('file://{testdata_dir}/original-0.12.1/all_codecs_0.12.1', workers_count=1) as r:
    assert len(list(r)) == 60
assert 'pyspark.sql' not in sys.modules
print('OK')
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("OK")


def _all_codecs_url(testdata_dir):
    return "file://" + os.path.join(testdata_dir, "original-0.12.1", "all_codecs_0.12.1")


def test_original_0_12_1_dataset_matches_expected_arrays(testdata_dir):
    expected = np.load(os.path.join(testdata_dir, "original-0.12.1", "all_codecs_0.12.1.expected.npz"))
    with make_reader(_all_codecs_url(testdata_dir), workers_count=1, shuffle_row_groups=False) as reader:
        rows = sorted(reader, key=lambda r: r.id)
    assert len(rows) == 60
    ids = np.array([r.id for r in rows])
    np.testing.assert_array_equal(ids, expected["id"])
    np.testing.assert_array_equal(np.stack([r.matrix for r in rows]), expected["matrix"])
    np.testing.assert_array_equal(np.stack([r.png for r in rows]), expected["png"])
    np.testing.assert_array_equal(np.stack([r.gray for r in rows]), expected["gray"])
    np.testing.assert_array_equal(np.stack([r.znd for r in rows]), expected["znd"])
    jpeg = np.stack([r.jpeg for r in rows]).astype(np.int16)
    assert np.abs(jpeg - expected["png"]).mean() < 12  # lossy
    for r in rows:
        i = int(r.id)
        assert r.name == f"row_{i}"
        assert int(r.id32) == 2 * i
        assert int(r.id16) == i % 100
        assert float(r.f64) == pytest.approx(i / 3)
        assert bool(r.flag) == (i % 2 == 0)
        assert r.dec == Decimal(i) / Decimal(1000)
        assert (r.maybe is None) == (i % 3 == 0)
        assert (r.maybe_int is None) == (i % 5 == 0)
        assert r.var.dtype == np.int16 and r.var.shape[1] == 5
        assert r.partition.startswith("p_")


def test_original_0_12_1_dataset_reads_with_the_batch_reader(testdata_dir):
    with make_batch_reader(_all_codecs_url(testdata_dir), workers_count=2) as reader:
        batches = list(reader)
    ids = np.concatenate([b.id for b in batches])
    assert sorted(ids.tolist()) == list(range(60))
    assert np.concatenate([b.png for b in batches]).shape == (60, 32, 48, 3)
