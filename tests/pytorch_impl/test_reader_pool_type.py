"""``Reader.reader_pool_type`` (public, read-only) and the BatchedDataLoader's use of it: the prefetch thread
is skipped only where a batch reader's own thread or process pool already reads ahead."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from _fixtures.threads import new_prefetch_threads

from petastorm import make_batch_reader, make_reader
from petastorm.codecs import NdarrayCodec, ScalarCodec
from petastorm.pytorch import BatchedDataLoader
from petastorm.spark_types import spark_type
from petastorm.test_util.reader_mock import ReaderMock, schema_data_generator_example
from petastorm.unischema import Unischema, UnischemaField

pytestmark = pytest.mark.timeout(120)

POOL_TYPES = ("thread", "process", "dummy")


@pytest.fixture(scope="module")
def plain_url(tmp_path_factory) -> str:
    """Plain Parquet, 40 rows in 4 row groups: ``id`` int64 and ``x`` float32."""
    path = tmp_path_factory.mktemp("pool_type")
    ids = np.arange(40, dtype=np.int64)
    pq.write_table(pa.table({"id": ids, "x": ids.astype(np.float32) / 2}), str(path / "part0.parquet"),
                   row_group_size=10)
    return f"file://{path}"


@pytest.mark.parametrize("pool_type", POOL_TYPES)
def test_reader_tells_the_pool_type_it_was_made_with(synthetic_dataset, plain_url, pool_type):
    with make_reader(synthetic_dataset, reader_pool_type=pool_type, workers_count=2) as reader:
        assert reader.reader_pool_type == pool_type
    with make_batch_reader(plain_url, reader_pool_type=pool_type, workers_count=2) as reader:
        assert reader.reader_pool_type == pool_type


def test_reader_pool_type_is_read_only(plain_url):
    with make_batch_reader(plain_url, reader_pool_type="dummy") as reader:
        with pytest.raises(AttributeError):
            reader.reader_pool_type = "thread"
        assert reader.reader_pool_type == "dummy"


def _batches_and_prefetch_threads(reader) -> tuple:
    """All ids of one pass of a BatchedDataLoader(batch_size=8) and whether it ran a prefetch thread."""
    loader = BatchedDataLoader(reader, batch_size=8)
    it = iter(loader)
    ids = [next(it)["id"]]
    threaded = bool(new_prefetch_threads())
    ids.extend(batch["id"] for batch in it)
    return torch.cat(ids).tolist(), threaded


@pytest.mark.parametrize("pool_type, threaded", [("thread", False), ("process", False), ("dummy", True)])
def test_batch_reader_prefetch_thread_only_over_a_dummy_pool(plain_url, pool_type, threaded):
    """A thread/process pool reads ahead already (no thread to wake per batch); a dummy pool reads in the
    iterating thread, so the prefetch thread overlaps the reading. The batches are the same either way."""
    with make_batch_reader(plain_url, reader_pool_type=pool_type, workers_count=2, shuffle_row_groups=False) as r:
        ids, ran_thread = _batches_and_prefetch_threads(r)
    assert ids == list(range(40))
    assert ran_thread is threaded


@pytest.mark.parametrize("pool_type", POOL_TYPES)
def test_row_reader_keeps_its_prefetch_thread_with_every_pool(synthetic_dataset, pool_type):
    """A row reader's rows are gathered into columns on the thread: it stays whatever the pool."""
    with make_reader(synthetic_dataset, reader_pool_type=pool_type, workers_count=2,
                     shuffle_row_groups=False, schema_fields=["id"]) as r:
        ids, ran_thread = _batches_and_prefetch_threads(r)
    assert ids == list(range(100))
    assert ran_thread


MockSchema = Unischema("MockSchema", [
    UnischemaField("id", np.int64, (), ScalarCodec(spark_type("LongType")), False),
    UnischemaField("m", np.float32, (2, 3), NdarrayCodec(), False),
])


def test_reader_mock_is_batched_like_a_dummy_pool_reader():
    """The ReaderMock (no pool) makes its rows in the iterating thread: batched as over a dummy pool."""
    with ReaderMock(MockSchema, schema_data_generator_example) as reader:
        it = iter(BatchedDataLoader(reader, batch_size=4))
        batches = [next(it) for _ in range(3)]
        assert new_prefetch_threads()
    assert [b["m"].shape for b in batches] == [(4, 2, 3)] * 3
    assert all(b["id"].dtype == torch.int64 and not b["id"].any() for b in batches)


def test_reader_mock_tells_a_dummy_pool_type():
    with ReaderMock(MockSchema, schema_data_generator_example) as reader:
        assert reader.reader_pool_type == "dummy"
