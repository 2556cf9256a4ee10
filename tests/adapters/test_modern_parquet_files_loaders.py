"""Parquet files of today's writers, read by make_batch_reader, through the framework loaders: torch's
``BatchedDataLoader`` and ``DataLoader``, ``make_petastorm_dataset`` (TF, eager) and ``make_jax_iterator``. Numbers
in today's encodings and types arrive with the values written; what a framework cannot hold (bytes, uuids,
columns of nulls of a string field) is refused naming the field; a store whose files disagree on a column's type
gives the reader's ``PetastormSchemaError`` (naming field and file) through every loader.

How the reader itself reads these files: ``tests/reader_impl/test_modern_parquet_files.py``.
"""
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tensorflow as tf
import torch

from petastorm import make_batch_reader
from petastorm.errors import PetastormSchemaError
from petastorm.jax import make_jax_iterator
from petastorm.pytorch import BatchedDataLoader, DataLoader
from petastorm.tf_utils import make_petastorm_dataset

_N = 10


def _expected():
    """Column name -> the values written, as numpy (what every loader must give back)."""
    return {
        "id": np.arange(_N, dtype=np.int32) * 3,
        "f": np.linspace(-1, 1, _N).astype(np.float32),
        "h": (np.arange(_N) / 8).astype(np.float16),
        "lv": np.stack([np.arange(_N, dtype=np.int16), -np.arange(_N, dtype=np.int16)], axis=1),
        "fl": np.arange(2 * _N, dtype=np.float32).reshape(_N, 2),
        "d": np.array([5, 6, 5, 5, 7, 6, 5, 7, 7, 5], dtype=np.int32),
    }


@pytest.fixture(scope="module")
def number_store(tmp_path_factory):
    """One file in row groups of 4 rows: numbers in today's encodings and types (delta, byte stream split,
    float16, a list view, a fixed-size list, a dictionary of ints), data page v2, zstd."""
    root = tmp_path_factory.mktemp("numbers")
    e = _expected()
    table = pa.table({
        "id": pa.array(e["id"]), "f": pa.array(e["f"]), "h": pa.array(e["h"]),
        "lv": pa.array(e["lv"].tolist(), pa.list_view(pa.int16())),
        "fl": pa.array(e["fl"].tolist(), pa.list_(pa.float32(), 2)),
        "d": pa.array(e["d"]).dictionary_encode(),
    })
    pq.write_table(table, root / "numbers.parquet", row_group_size=4, data_page_version="2.0", compression="zstd",
                   column_encoding={"id": "DELTA_BINARY_PACKED", "f": "BYTE_STREAM_SPLIT"},
                   use_dictionary=["d"])
    return "file://" + str(root)


def _reader(url, **kwargs):
    return make_batch_reader(url, workers_count=2, shuffle_row_groups=False, **kwargs)


def _columns(batches):
    """Loader batches (dicts or namedtuples of tensors/arrays) -> name -> one numpy array."""
    dicts = [b if isinstance(b, dict) else b._asdict() for b in batches]
    return {k: np.concatenate([np.asarray(d[k]) for d in dicts]) for k in dicts[0]}


def _torch_batched(url):
    with _reader(url) as reader:
        return _columns([{k: v.numpy() for k, v in b.items()} for b in BatchedDataLoader(reader, batch_size=3)])


def _torch_rows(url):
    with _reader(url) as reader:
        return _columns([{k: v.numpy() for k, v in b.items()} for b in DataLoader(reader, batch_size=3)])


def _tf(url):
    with _reader(url) as reader:
        return _columns([{k: v.numpy() for k, v in b._asdict().items()} for b in make_petastorm_dataset(reader)])


def _jax(url):
    with _reader(url) as reader:
        return _columns(list(make_jax_iterator(reader, batch_size=3)))


_LOADERS = {"torch_batched": _torch_batched, "torch_rows": _torch_rows, "tf": _tf, "jax": _jax}


@pytest.mark.parametrize("loader", sorted(_LOADERS))
def test_numbers_in_todays_encodings_and_types_reach_every_framework_with_their_values(number_store, loader):
    cols = _LOADERS[loader](number_store)
    for name, want in _expected().items():
        assert cols[name].shape == want.shape, name
        np.testing.assert_array_equal(cols[name].astype(want.dtype), want, err_msg=name)
    assert cols["h"].dtype == np.float16 and cols["f"].dtype == np.float32
    assert cols["lv"].dtype in (np.int16, np.int32, np.int64)


@pytest.fixture()
def bytes_store(tmp_path):
    uuids = [bytes([i]) * 16 for i in range(4)]
    pq.write_table(pa.table({"id": [0, 1, 2, 3], "u": pa.array(uuids, pa.uuid()),
                             "bv": pa.array([b"a", b"bb", b"", b"d"], pa.binary_view())}), tmp_path / "b.parquet")
    return "file://" + str(tmp_path), uuids


def test_uuid_and_binary_view_columns_reach_torch_rows_and_tf_as_their_bytes(bytes_store):
    url, uuids = bytes_store
    with _reader(url) as reader:
        rows = list(DataLoader(reader, batch_size=4))
    assert rows[0]["u"] == uuids and rows[0]["bv"] == [b"a", b"bb", b"", b"d"]
    cols = _tf(url)
    assert cols["u"].tolist() == uuids and cols["bv"].tolist() == [b"a", b"bb", b"", b"d"]


@pytest.mark.parametrize("field", ["u", "bv"])
def test_uuid_and_binary_view_columns_are_refused_by_whole_column_tensors_naming_the_field(bytes_store, field):
    """They were dropped from every batch with an 'unsupported type' warning."""
    url, _ = bytes_store
    with _reader(url, schema_fields=["id", field]) as reader:
        with pytest.raises(TypeError, match=rf"\b{field}\b"):
            next(iter(BatchedDataLoader(reader, batch_size=2)))
    with _reader(url, schema_fields=["id", field]) as reader:
        with pytest.raises(TypeError, match=rf"'{field}' holds bytes"):
            next(iter(make_jax_iterator(reader, batch_size=2)))


@pytest.fixture()
def null_strings_store(tmp_path):
    """A string column whose first row group holds only nulls (another writer's file: no Petastorm metadata)."""
    pq.write_table(pa.table({"id": list(range(6)), "s": pa.array([None, None, None, "x", None, "y"], pa.string())}),
                   tmp_path / "s.parquet", row_group_size=3)
    return "file://" + str(tmp_path)


@pytest.mark.parametrize("loader_class", [BatchedDataLoader, DataLoader], ids=["batched", "rows"])
def test_a_batch_of_only_nulls_of_a_string_field_is_refused_by_torch_naming_it(null_strings_store, loader_class):
    """It became a float64 NaN tensor (as a nullable integer field's nulls do), passing strings off as numbers."""
    with _reader(null_strings_store) as reader:
        with pytest.raises(TypeError, match=r"nullable fields. Found None in s\b"):
            next(iter(loader_class(reader, batch_size=3)))
    with _reader(null_strings_store, schema_fields=["id"]) as reader:
        batch = next(iter(loader_class(reader, batch_size=3)))
    assert batch["id"].tolist() == [0, 1, 2]


def test_a_batch_of_only_nulls_of_an_integer_field_still_reaches_torch_as_nan(tmp_path):
    """As 0.12.1's batch reader gave it (pandas), one reader batch (row group) at a time: float64 with NaN for the
    row group of nulls, int64 for the one without."""
    pq.write_table(pa.table({"n": pa.array([None, None, 3, 4], pa.int64())}), tmp_path / "n.parquet",
                   row_group_size=2)
    with _reader("file://" + str(tmp_path)) as reader:
        batches = list(BatchedDataLoader(reader, batch_size=2))
    assert [b["n"].dtype for b in batches] == [torch.float64, torch.int64]
    assert torch.isnan(batches[0]["n"]).all() and batches[1]["n"].tolist() == [3, 4]


@pytest.fixture()
def disagreeing_store(tmp_path):
    """Two files: ``v`` is int32 in the first (the reader's schema) and int64 beyond int32 in the second."""
    pq.write_table(pa.table({"v": pa.array([1, 2], pa.int32())}), tmp_path / "a.parquet")
    pq.write_table(pa.table({"v": pa.array([2**40, 3], pa.int64())}), tmp_path / "b.parquet")
    return "file://" + str(tmp_path)


@pytest.mark.parametrize("loader", ["torch_batched", "torch_rows", "jax"])
def test_files_that_disagree_on_a_type_give_the_readers_error_through_the_loaders(disagreeing_store, loader):
    """2**40 read as int32 wrapped to 0 silently, in every framework."""
    with pytest.raises(PetastormSchemaError, match=r"field 'v' is int32.*1099511627776.*b\.parquet"):
        _LOADERS[loader](disagreeing_store)


def test_files_that_disagree_on_a_type_give_the_readers_error_through_tf(disagreeing_store):
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"PetastormSchemaError: field 'v' is int32.*b\.parquet"):
        _tf(disagreeing_store)
