"""The torch loaders used by a hostile or migrating user: the defects such use showed, each with its fix.

Expected values marked "recorded from 0.12.1" were recorded by running the original petastorm 0.12.1 (black
box, public API) on the same files.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from _fixtures.threads import no_new_prefetch_thread_within

from petastorm import make_batch_reader, make_reader
from petastorm.codecs import NdarrayCodec, ScalarCodec
from petastorm.errors import PetastormStateError, PetastormTypeError
from petastorm.etl.writer import write_dataset
from petastorm.pytorch import BatchedDataLoader, DataLoader, InMemBatchedDataLoader
from petastorm.spark_types import spark_type
from petastorm.unischema import Unischema, UnischemaField

pytestmark = pytest.mark.timeout(120)

N = 7


@pytest.fixture(scope="module")
def nulls_url(tmp_path_factory) -> str:
    """Plain Parquet, one row group of 7 rows: ``id`` int64, ``i`` int32 and ``f`` float32 with a null in row 1."""
    path = tmp_path_factory.mktemp("nulls")
    pq.write_table(pa.table({
        "id": pa.array(np.arange(N, dtype=np.int64)),
        "i": pa.array([None if k == 1 else k for k in range(N)], pa.int32()),
        "f": pa.array([None if k == 1 else float(k) for k in range(N)], pa.float32()),
    }), str(path / "part0.parquet"))
    return f"file://{path}"


@pytest.fixture(scope="module")
def varlen_url(tmp_path_factory) -> str:
    """Petastorm dataset: ``id`` and ``v`` float64 of shape (None,), 1 + id % 3 values per row."""
    schema = Unischema("VarLen", [
        UnischemaField("id", np.int64, (), ScalarCodec(spark_type("LongType")), False),
        UnischemaField("v", np.float64, (None,), NdarrayCodec(), False),
    ])
    url = f"file://{tmp_path_factory.mktemp('varlen')}/ds"
    write_dataset(url, schema, [{"id": np.int64(k), "v": np.arange(1 + k % 3, dtype=np.float64)} for k in range(N)],
                  workers_count=1, progress=False, num_files=1)
    return url


@pytest.fixture(scope="module")
def int_url(tmp_path_factory) -> str:
    """Petastorm dataset: ``id`` int64 and ``v`` int32, 7 rows."""
    schema = Unischema("Ints", [
        UnischemaField("id", np.int64, (), ScalarCodec(spark_type("LongType")), False),
        UnischemaField("v", np.int32, (), ScalarCodec(spark_type("IntegerType")), False),
    ])
    url = f"file://{tmp_path_factory.mktemp('ints')}/ds"
    write_dataset(url, schema, [{"id": np.int64(k), "v": np.int32(k * 10)} for k in range(N)], workers_count=1,
                  progress=False, num_files=1)
    return url


def _batch_reader(url: str):
    return make_batch_reader(url, reader_pool_type="dummy", num_epochs=1)


LOADERS = {
    "DataLoader": lambda r: DataLoader(r, batch_size=3),
    "DataLoader shuffled": lambda r: DataLoader(r, batch_size=3, shuffling_queue_capacity=4),
    "BatchedDataLoader": lambda r: BatchedDataLoader(r, batch_size=3),
    "BatchedDataLoader shuffled": lambda r: BatchedDataLoader(r, batch_size=3, shuffling_queue_capacity=4),
    "InMemBatchedDataLoader": lambda r: InMemBatchedDataLoader(r, batch_size=3),
    "InMemBatchedDataLoader shuffled": lambda r: InMemBatchedDataLoader(r, batch_size=3, shuffle=True),
}


@pytest.mark.parametrize("loader", list(LOADERS))
def test_a_nullable_number_column_has_one_dtype_in_every_batch(nulls_url, loader):
    # recorded from 0.12.1: every batch of every loader (shuffled or not) over this reader batch has `i` float64
    # and `f` float32, NaN for the null. Ours gave int32 / float32 in the batches without the null row, float64
    # only in the one holding it: the dtype changed from batch to batch.
    with LOADERS[loader](_batch_reader(nulls_url)) as batches:
        batches = list(batches)
    assert [b["i"].dtype for b in batches] == [torch.float64] * 3
    assert [b["f"].dtype for b in batches] == [torch.float32] * 3
    ids = torch.cat([b["id"] for b in batches])
    i = torch.cat([b["i"] for b in batches])
    assert sorted(ids.tolist()) == list(range(N))
    assert torch.isnan(i[ids == 1]).all() and i[ids != 1].tolist() == ids[ids != 1].double().tolist()


@pytest.mark.parametrize("cls", [BatchedDataLoader, InMemBatchedDataLoader])
def test_transform_fn_gets_a_nullable_number_column_as_floats_with_nan(nulls_url, cls):
    # recorded from 0.12.1: transform_fn gets `i` as a float64 array and `f` as a float32 array, NaN for the
    # null (a user function `lambda c: c.astype(np.float32)` works). Ours gave object arrays holding None.
    seen = {}

    def transform(col):
        seen.setdefault(len(seen), (col.dtype, col.tolist()))
        return col

    with cls(_batch_reader(nulls_url), batch_size=3, transform_fn=transform) as loader:
        batches = list(loader)
    assert [seen[k][0] for k in range(3)] == [np.dtype(np.int64), np.dtype(np.float64), np.dtype(np.float32)]
    assert np.isnan(seen[1][1][1]) and seen[1][1][2] == 2.0
    assert batches[0]["i"].dtype == torch.float64


def test_in_memory_loader_does_not_serve_an_empty_pass_after_a_failed_load(int_url):
    # list(loader) asks len() first and swallows its TypeError; the load that len() started had consumed the
    # reader, so the pass that followed served no row and raised nothing (the transform_fn's mistake was lost)
    loader = InMemBatchedDataLoader(make_reader(int_url, reader_pool_type="dummy", num_epochs=1), batch_size=3,
                                    transform_fn=lambda col: None)
    with loader, pytest.raises(PetastormTypeError, match="transform_fn returned a NoneType for field 'id'"):
        list(loader)
    assert no_new_prefetch_thread_within()


def test_in_memory_loader_raises_the_load_error_again_after_len(int_url):
    def bad(col):
        raise ZeroDivisionError("user bug")

    with InMemBatchedDataLoader(_batch_reader(int_url), batch_size=3, transform_fn=bad) as loader:
        with pytest.raises(ZeroDivisionError, match="user bug"):
            len(loader)
        with pytest.raises(ZeroDivisionError, match="user bug"):
            next(iter(loader))


def test_in_memory_loader_second_iterator_during_a_pass_gives_the_reuse_message(int_url):
    # recorded from 0.12.1: advancing a second iterator of an InMemBatchedDataLoader during a pass raises
    # RuntimeError("InMemBatchedDataLoader couldn't be used multiple times, please ..."); the first one goes on
    with InMemBatchedDataLoader(_batch_reader(int_url), batch_size=3) as loader:
        first = iter(loader)
        assert next(first)["id"].tolist() == [0, 1, 2]
        with pytest.raises(RuntimeError, match="InMemBatchedDataLoader couldn't be used multiple times"):
            next(iter(loader))
        assert [b["id"].tolist() for b in first] == [[3, 4, 5], [6]]


@pytest.mark.parametrize("batched", [False, True], ids=["make_reader", "make_batch_reader"])
@pytest.mark.parametrize("cls", [BatchedDataLoader, InMemBatchedDataLoader])
def test_cells_of_different_shapes_are_the_original_runtime_error(varlen_url, cls, batched):
    # recorded from 0.12.1 (make_reader): RuntimeError ("Sizes of tensors must match except in dimension 0...");
    # plain Parquet list columns of different lengths under make_batch_reader: RuntimeError too. Ours raised a
    # TypeError only, which `except RuntimeError` did not catch (DataLoader's error was already both).
    reader = (make_batch_reader if batched else make_reader)(varlen_url, reader_pool_type="dummy", num_epochs=1)
    with cls(reader, batch_size=3) as loader, pytest.raises(RuntimeError, match="field 'v' has cells of different"):
        list(loader)


@pytest.fixture(scope="module")
def null_array_url(tmp_path_factory) -> str:
    """Petastorm dataset: ``id`` and a nullable ``v`` float32 (2,) array field, None in row 1."""
    schema = Unischema("NullArray", [
        UnischemaField("id", np.int64, (), ScalarCodec(spark_type("LongType")), False),
        UnischemaField("v", np.float32, (2,), NdarrayCodec(), True),
    ])
    url = f"file://{tmp_path_factory.mktemp('null_array')}/ds"
    write_dataset(url, schema, [{"id": np.int64(k), "v": None if k == 1 else np.full(2, k, np.float32)}
                                for k in range(N)], workers_count=1, progress=False, num_files=1)
    return url


@pytest.mark.parametrize("loader", list(LOADERS))
def test_a_null_in_an_array_field_of_make_reader_is_the_nullable_type_error(null_array_url, loader):
    # recorded from 0.12.1: every loader over make_reader raises TypeError("Pytorch does not support nullable
    # fields. Found None in v"). Ours raised that, or - when the None row reached a shuffling buffer holding
    # (2,) cells - PetastormSchemaError("field 'v' has cells of shape (2,) after cells of shape ()..."), a
    # ValueError that did not mention the null, depending on where the row fell
    reader = make_reader(null_array_url, reader_pool_type="dummy", num_epochs=1)
    with LOADERS[loader](reader) as batches, \
            pytest.raises(TypeError, match="Pytorch does not support nullable fields. Found None in v"):
        list(batches)
    assert no_new_prefetch_thread_within()


def test_batched_loader_transform_fn_may_fill_the_nulls_of_make_reader_rows(null_array_url):
    # not in 0.12.1 (it refused the None before transform_fn): a transform_fn that fills the nulls is served
    def fill(col):
        return np.stack([np.zeros(2, np.float32) if v is None else v for v in col])

    reader = make_reader(null_array_url, reader_pool_type="dummy", num_epochs=1)
    with BatchedDataLoader(reader, batch_size=3, transform_fn=fill, shuffling_queue_capacity=4) as loader:
        batches = list(loader)
    ids = torch.cat([b["id"] for b in batches])
    v = torch.cat([b["v"] for b in batches])
    assert sorted(ids.tolist()) == list(range(N)) and v[ids == 1].tolist() == [[0.0, 0.0]]


@pytest.mark.parametrize("reader", [None, 3], ids=["None", "int"])
def test_dataloader_refuses_what_is_no_reader_when_made(reader):
    # was accepted, then a bare TypeError ("'NoneType' object is not iterable") at the first batch; 0.12.1 failed
    # with AttributeError ("'NoneType' object has no attribute 'stop'") on leaving the `with`
    with pytest.raises(PetastormTypeError, match="reader: DataLoader needs a petastorm reader"):
        DataLoader(reader, batch_size=2)


@pytest.fixture(scope="module")
def groups_url(tmp_path_factory) -> str:
    """Petastorm dataset: ``id`` int64 and ``v`` int32, 40 rows in 8 row groups of 5 (so the reader's shuffle
    of row groups matters)."""
    schema = Unischema("Groups", [
        UnischemaField("id", np.int64, (), ScalarCodec(spark_type("LongType")), False),
        UnischemaField("v", np.int32, (), ScalarCodec(spark_type("IntegerType")), False),
    ])
    url = f"file://{tmp_path_factory.mktemp('groups')}/ds"
    # ~0.0002 MiB per row group: 5 rows each (the writer's row_group_size_mb is measured on encoded data)
    write_dataset(url, schema, [{"id": np.int64(k), "v": np.int32(k)} for k in range(40)], workers_count=1,
                  progress=False, num_files=1, row_group_size_mb=5 * 12 / 2 ** 20)
    return url


@pytest.mark.parametrize("batched", [False, True], ids=["make_reader", "make_batch_reader"])
def test_in_memory_loader_resumes_exactly_over_a_reader_made_with_seed_none(groups_url, batched):
    # a reader with seed=None draws its seed (state_dict() records it) and shuffles its row groups by default:
    # the resumed loader loaded the rows in another order, so the rest of the epoch lost and repeated rows
    def make():
        factory = make_batch_reader if batched else make_reader
        return InMemBatchedDataLoader(factory(groups_url, reader_pool_type="thread", workers_count=2, num_epochs=1,
                                              seed=None, shuffle_rows=True), batch_size=4, num_epochs=2,
                                      rows_capacity=100)

    with make() as loader:
        it = iter(loader)
        seen = [next(it)["id"].tolist() for _ in range(3)]
        state = loader.state_dict()
    with make() as loader:
        loader.load_state_dict(state)
        rest = [b["id"].tolist() for b in loader]
    batches = seen + rest
    assert len(batches) == 20
    assert sorted(sum(batches[:10], [])) == list(range(40)) == sorted(sum(batches[10:], []))


def test_in_memory_loader_refuses_a_state_of_a_reader_with_other_options(groups_url):
    # was accepted (the rows in memory were those of the other reader: another order, other fields)
    def make(**options):
        reader = make_batch_reader(groups_url, reader_pool_type="dummy", num_epochs=1, seed=1, **options)
        return InMemBatchedDataLoader(reader, batch_size=4, rows_capacity=100)

    with make() as loader:
        next(iter(loader))
        state = loader.state_dict()
    with make(schema_fields=["id"]) as loader, pytest.raises(PetastormStateError, match="fields"):
        loader.load_state_dict(state)
    with make(shuffle_rows=True) as loader, pytest.raises(PetastormStateError, match="shuffle"):
        loader.load_state_dict(state)


@pytest.fixture(scope="module")
def null_list_url(tmp_path_factory) -> str:
    """Plain Parquet: ``id`` and a list<float64> column ``v`` of 2 values, null in row 1."""
    path = tmp_path_factory.mktemp("null_list")
    pq.write_table(pa.table({
        "id": pa.array(np.arange(N, dtype=np.int64)),
        "v": pa.array([None if k == 1 else [float(k), 1.0] for k in range(N)], pa.list_(pa.float64())),
    }), str(path / "part0.parquet"))
    return f"file://{path}"


@pytest.mark.parametrize("batch_size", [1, 3])
@pytest.mark.parametrize("loader", ["DataLoader", "BatchedDataLoader", "InMemBatchedDataLoader"])
def test_a_null_in_a_list_column_is_refused_whatever_batch_it_falls_in(null_list_url, loader, batch_size):
    # a batch holding only the null row gave `v` as a float64 NaN tensor of shape (1,) (the other batches (n, 2)),
    # silently; a batch holding it with other rows raised "arrays of string or object classes". 0.12.1 raised
    # AttributeError ('NoneType' object has no attribute 'shape') for every batch size: now always the nullable
    # TypeError naming the field
    cls = {"DataLoader": DataLoader, "BatchedDataLoader": BatchedDataLoader,
           "InMemBatchedDataLoader": InMemBatchedDataLoader}[loader]
    with cls(_batch_reader(null_list_url), batch_size=batch_size) as batches, \
            pytest.raises(TypeError, match="Pytorch does not support nullable fields. Found None in v"):
        list(batches)


@pytest.mark.parametrize("loader", ["DataLoader", "BatchedDataLoader", "InMemBatchedDataLoader"])
def test_a_batch_of_nulls_only_in_a_number_column_is_nan_of_the_column_dtype(nulls_url, loader):
    # recorded from 0.12.1 (batch_size=1 over this reader batch): `i` float64 and `f` float32 in every batch,
    # NaN in the batch of the null row
    cls = {"DataLoader": DataLoader, "BatchedDataLoader": BatchedDataLoader,
           "InMemBatchedDataLoader": InMemBatchedDataLoader}[loader]
    with cls(_batch_reader(nulls_url), batch_size=1) as batches:
        batches = list(batches)
    assert {b["i"].dtype for b in batches} == {torch.float64} and {b["f"].dtype for b in batches} == {torch.float32}
    assert torch.isnan(batches[1]["i"]).all() and batches[2]["i"].tolist() == [2.0]


def _workers() -> set:
    import threading

    return {t for t in threading.enumerate() if t.name.startswith("petastorm-worker") and t.is_alive()}


def test_in_memory_loader_stops_the_reader_when_len_fails(int_url):
    # len() loads the rows outside a pass: a transform_fn that raised there left the reader's workers running
    # (list(loader) calls len() first and lets a ValueError through)
    import time

    before = _workers()
    reader = make_batch_reader(int_url, reader_pool_type="thread", workers_count=2, num_epochs=1)

    def bad(col):
        raise ValueError("user bug")

    loader = InMemBatchedDataLoader(reader, batch_size=3, transform_fn=bad)
    with pytest.raises(ValueError, match="user bug"):
        list(loader)
    deadline = time.time() + 10
    while _workers() - before and time.time() < deadline:
        time.sleep(0.01)
    assert not _workers() - before


@pytest.mark.timeout(60)
@pytest.mark.parametrize("where", ["transform_fn", "TransformSpec dummy pool", "TransformSpec thread pool",
                                   "in-memory transform_fn"])
def test_state_dict_called_from_inside_the_loader_is_an_error_not_a_hang(int_url, where):
    # state_dict() waits for the prefetch thread to pause between two batches: called from that thread (a
    # transform_fn) or from a reader worker the thread waits on (a TransformSpec), it waited forever
    from petastorm import TransformSpec

    holder = {}

    def column_fn(col):
        holder["state"] = holder["loader"].state_dict()
        return col

    def frame_fn(df):
        holder["state"] = holder["loader"].state_dict()
        return df

    if where == "transform_fn":
        loader = BatchedDataLoader(_batch_reader(int_url), batch_size=3, transform_fn=column_fn)
    elif where == "in-memory transform_fn":
        loader = InMemBatchedDataLoader(_batch_reader(int_url), batch_size=3, transform_fn=column_fn)
    else:
        pool = "dummy" if "dummy" in where else "thread"
        reader = make_batch_reader(int_url, reader_pool_type=pool, workers_count=1, num_epochs=1,
                                   transform_spec=TransformSpec(frame_fn))
        loader = DataLoader(reader, batch_size=3)
    holder["loader"] = loader
    with loader, pytest.raises(PetastormStateError, match="state_dict|loading its rows"):
        list(loader)
    assert "state" not in holder
    assert no_new_prefetch_thread_within()
