"""The datasets written by old releases of the original (``PETASTORM_TESTDATA``) through every torch loader,
against 0.12.1.

Recorded from petastorm 0.12.1 (black box, public API) on ``original-0.12.1/all_codecs_0.12.1`` (60 rows, 16
row groups; the legacy 0.4.0-0.7.6 datasets cannot be read by 0.12.1 with pyspark 3.5 installed: its unpickler
fails on ``pyspark.serializers._restore``, so only ours is checked on them):

- ``strings`` (``NdarrayCodec`` bytes, shape ``(None,)``): ``DataLoader`` (default collate),
  ``BatchedDataLoader`` and ``InMemBatchedDataLoader`` over ``make_reader`` and over ``make_batch_reader`` all
  raise ``TypeError: Pytorch does not support arrays of string or object classes. Found in field strings.``
  Over ``make_batch_reader`` ours raised ``PetastormSchemaError: field 'strings' has cells of different shapes
  [(), (2,)]`` (every cell has shape (2,): the reader gives a batch whose cells have one length as a 2-D ``S``
  array and one with ``S2`` and ``S3`` cells as an object array of arrays, and the loaders tried to
  concatenate the two). Fixed: every loader refuses a column of string arrays per reader batch, before
  batching, naming the field.
- Numeric fields, images, ndarrays over ``make_reader``: same keys, dtypes, shapes and values in every loader
  (compared batch by batch on the first two batches of 7 rows).
"""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from petastorm import make_batch_reader, make_reader
from petastorm.pytorch import BatchedDataLoader, DataLoader, InMemBatchedDataLoader

pytestmark = pytest.mark.timeout(120)

_KW = dict(workers_count=1, reader_pool_type="dummy", shuffle_row_groups=False, num_epochs=1)
_LEGACY = ("0.4.0", "0.4.3", "0.5.1", "0.6.0", "0.7.0", "0.7.6")


@pytest.fixture(scope="module")
def all_codecs(testdata_dir) -> str:
    return "file://" + os.path.join(testdata_dir, "original-0.12.1", "all_codecs_0.12.1")


def _loader(kind: str, reader, **kw):
    if kind == "DataLoader":
        return DataLoader(reader, batch_size=7, **kw)
    if kind == "BatchedDataLoader":
        return BatchedDataLoader(reader, batch_size=7, **kw)
    return InMemBatchedDataLoader(reader, batch_size=7, rows_capacity=1000)


_LOADERS = ("DataLoader", "BatchedDataLoader", "InMemBatchedDataLoader")


@pytest.mark.parametrize("make", [make_reader, make_batch_reader], ids=["make_reader", "make_batch_reader"])
@pytest.mark.parametrize("kind", _LOADERS)
def test_a_field_of_string_arrays_is_the_originals_type_error_naming_it(all_codecs, make, kind):
    # recorded from 0.12.1: TypeError("Pytorch does not support arrays of string or object classes. Found in
    # field strings."), for all six combinations
    reader = make(all_codecs, schema_fields=["id", "strings"], **_KW)
    with pytest.raises(TypeError, match="Pytorch does not support arrays of string or object classes. "
                                        "Found in field strings."):
        with _loader(kind, reader) as loader:
            list(loader)


@pytest.mark.parametrize("kind", ["DataLoader", "BatchedDataLoader"])
def test_a_field_of_string_arrays_is_refused_with_a_shuffling_buffer_too(all_codecs, kind):
    reader = make_batch_reader(all_codecs, schema_fields=["id", "strings"], **_KW)
    with pytest.raises(TypeError, match="Found in field strings"):
        with _loader(kind, reader, shuffling_queue_capacity=20) as loader:
            list(loader)


def test_a_transform_fn_may_still_turn_string_arrays_into_numbers(all_codecs):
    # BatchedDataLoader's transform_fn runs before the check: a column it makes numeric is served
    def lengths(col):
        if col.dtype.kind in "SO":
            return np.array([sum(len(s) for s in cell) for cell in col], dtype=np.int64)
        return col

    reader = make_batch_reader(all_codecs, schema_fields=["id", "strings"], **_KW)
    with BatchedDataLoader(reader, batch_size=60, transform_fn=lengths) as loader:
        (batch,) = list(loader)
    # the cells are [b'a<id>', b'bb']
    expected = torch.tensor([len(f"a{i}") + 2 for i in batch["id"].tolist()])
    assert torch.equal(batch["strings"], expected)


def test_a_user_collate_fn_still_gets_the_string_arrays(all_codecs):
    reader = make_batch_reader(all_codecs, schema_fields=["id", "strings"], **_KW)
    with DataLoader(reader, batch_size=60, collate_fn=lambda rows: rows) as loader:
        (rows,) = list(loader)
    assert sorted(int(r["id"]) for r in rows) == list(range(60))
    assert all(list(r["strings"]) == [f"a{int(r['id'])}".encode(), b"bb"] for r in rows)


@pytest.mark.parametrize("make", [make_reader, make_batch_reader], ids=["make_reader", "make_batch_reader"])
@pytest.mark.parametrize("kind", _LOADERS)
def test_numbers_images_and_ndarrays_of_the_0_12_1_dataset(all_codecs, testdata_dir, make, kind):
    # recorded from 0.12.1 over make_reader (its batch reader gave the encoded cells, which its loaders refused):
    # id int64, f64 float64, flag uint8 (bool promoted), png uint8 (32, 48, 3), gray uint8 (20, 30),
    # matrix float32 (8, 4, 3), znd float64 (6, 6); ids of the first batch [0, 4, 8, 12, 16, 20, 24]
    expected = np.load(os.path.join(testdata_dir, "original-0.12.1", "all_codecs_0.12.1.expected.npz"))
    reader = make(all_codecs, schema_fields=["id", "f64", "flag", "png", "gray", "matrix", "znd"], **_KW)
    with _loader(kind, reader) as loader:
        batches = list(loader)
    first = batches[0]
    assert first["id"].tolist() == [0, 4, 8, 12, 16, 20, 24]
    dtypes = {k: v.dtype for k, v in first.items()}
    assert dtypes == {"id": torch.int64, "f64": torch.float64, "flag": torch.uint8, "png": torch.uint8,
                      "gray": torch.uint8, "matrix": torch.float32, "znd": torch.float64}
    ids = torch.cat([b["id"] for b in batches]).numpy()
    assert sorted(ids.tolist()) == list(range(60))
    order = np.argsort(ids)
    for name in ("matrix", "png", "gray", "znd"):
        got = torch.cat([b[name] for b in batches]).numpy()[order]
        assert np.array_equal(got, expected[name]), name
    flag = torch.cat([b["flag"] for b in batches]).numpy()[order]
    assert flag.tolist() == [int(i % 2 == 0) for i in range(60)]


@pytest.mark.parametrize("make", [make_reader, make_batch_reader], ids=["make_reader", "make_batch_reader"])
@pytest.mark.parametrize("version", _LEGACY)
@pytest.mark.parametrize("kind", _LOADERS)
def test_legacy_datasets_numeric_fields_through_every_loader(testdata_dir, version, kind, make):
    # ours only (0.12.1 cannot read these with pyspark 3.5 installed; its batch reader refused codec fields)
    url = "file://" + os.path.join(testdata_dir, "legacy", version)
    reader = make(url, schema_fields=["id", "id2", "matrix", "image_png", "matrix_uint16"], **_KW)
    with _loader(kind, reader) as loader:
        batches = list(loader)
    assert sorted(torch.cat([b["id"] for b in batches]).tolist()) == list(range(100))
    assert batches[0]["matrix"].shape == (7, 32, 16, 3) and batches[0]["matrix"].dtype == torch.float32
    assert batches[0]["image_png"].shape == (7, 32, 16, 3) and batches[0]["image_png"].dtype == torch.uint8
    assert batches[0]["matrix_uint16"].dtype == torch.int32  # the original's uint16 -> int32 promotion
    assert batches[0]["id2"].dtype == torch.int32  # the field's own type (stored as Spark ShortType)


@pytest.mark.parametrize("version", ["0.4.0", "0.7.6"])
@pytest.mark.parametrize("kind", _LOADERS)
def test_legacy_datasets_string_array_field_is_refused_naming_it(testdata_dir, version, kind):
    url = "file://" + os.path.join(testdata_dir, "legacy", version)
    reader = make_batch_reader(url, schema_fields=["id", "matrix_string"], **_KW)
    with pytest.raises(TypeError, match="Found in field matrix_string"):
        with _loader(kind, reader) as loader:
            list(loader)
