"""Datasets written by old versions of the original library read with make_reader and make_batch_reader."""
import os
import subprocess
import sys
from decimal import Decimal

import numpy as np
import pytest

from petastorm import make_batch_reader, make_reader

LEGACY_VERSIONS = ["0.4.0", "0.4.3", "0.5.1", "0.6.0", "0.7.0", "0.7.6"]


def _legacy_url(testdata_dir, version):
    return "file://" + os.path.join(testdata_dir, "legacy", version)


@pytest.mark.parametrize("version", LEGACY_VERSIONS)
def test_legacy_dataset_reads_100_rows_with_the_right_values(testdata_dir, version):
    with make_reader(_legacy_url(testdata_dir, version), workers_count=1) as reader:
        rows = list(reader)
    assert len(rows) == 100
    rows.sort(key=lambda r: r.id)
    assert [int(r.id) for r in rows] == list(range(100))
    for r in rows:
        assert r.matrix.shape == (32, 16, 3) and r.matrix.dtype == np.float32
        assert r.image_png.shape == (32, 16, 3) and r.image_png.dtype == np.uint8
        assert r.partition_key == f"p_{int(r.id) // 10}"
        assert int(r.id2) == int(r.id) % 2
        assert isinstance(r.decimal, Decimal)
        assert r.sensor_name.shape == (1,)
        if hasattr(r, "id_float"):
            assert float(r.id_float) == float(r.id)
        if hasattr(r, "id_odd"):
            assert bool(r.id_odd) == bool(int(r.id) % 2)
        if hasattr(r, "integer_nullable"):
            assert (r.integer_nullable is None) == bool(int(r.id) % 2)
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
