"""A pass left early (``break``, ``next(iter(loader))``) cannot be followed by a new pass of the same loader:
the reader's ``NotImplementedError``, as in 0.12.1, also where the loader had read the reader to its end ahead
of the batches it served (a small dataset).

Recorded from petastorm 0.12.1 (black box, torch 2.13): over 10 rows in row groups of 4, ``DataLoader`` and
``BatchedDataLoader`` with ``batch_size=4`` left after their first batch raise ``NotImplementedError: Currently
do not support resetting a reader while in the middle of iteration`` at the next pass, over ``make_reader`` and
``make_batch_reader``. Ours read ahead to the reader's end and served a new pass.
"""
from __future__ import annotations

import gc

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from petastorm import make_batch_reader, make_reader
from petastorm.codecs import ScalarCodec
from petastorm.etl.writer import write_dataset
from petastorm.pytorch import BatchedDataLoader, DataLoader
from petastorm.spark_types import spark_type
from petastorm.test_util.reader_mock import ReaderMock, schema_data_generator_example
from petastorm.unischema import Unischema, UnischemaField

pytestmark = pytest.mark.timeout(120)

_KW = dict(reader_pool_type="dummy", shuffle_row_groups=False)
_RESET_ERROR = "Currently do not support resetting a reader while in the middle of iteration"
Ids = Unischema("Ids", [UnischemaField("id", np.int64, (), ScalarCodec(spark_type("LongType")), False)])


@pytest.fixture(scope="module")
def urls(tmp_path_factory) -> dict:
    """10 rows of ``id`` in row groups (files) of 4: a Petastorm dataset and plain Parquet."""
    base = tmp_path_factory.mktemp("left_early")
    petastorm_url = f"file://{base}/petastorm"
    write_dataset(petastorm_url, Ids, [{"id": i} for i in range(10)], workers_count=1, progress=False,
                  rows_per_file=4)
    (base / "plain").mkdir()
    pq.write_table(pa.table({"id": np.arange(10, dtype=np.int64)}), str(base / "plain" / "part0.parquet"),
                   row_group_size=4)
    return {make_reader: petastorm_url, make_batch_reader: f"file://{base}/plain"}


@pytest.mark.parametrize("make", [make_reader, make_batch_reader], ids=["make_reader", "make_batch_reader"])
@pytest.mark.parametrize("loader_class", [DataLoader, BatchedDataLoader])
@pytest.mark.parametrize("leave", ["break", "next"])
def test_a_new_pass_after_one_left_with_rows_unserved_is_the_readers_error(urls, make, loader_class, leave):
    with make(urls[make], **_KW) as reader:
        loader = loader_class(reader, batch_size=4)
        if leave == "break":
            for _ in loader:
                break
        else:
            assert len(next(iter(loader))["id"]) == 4
        gc.collect()
        for _ in range(2):  # and again: the reader is still in the middle of its pass
            with pytest.raises(NotImplementedError, match=_RESET_ERROR):
                list(loader)


@pytest.mark.parametrize("make", [make_reader, make_batch_reader], ids=["make_reader", "make_batch_reader"])
@pytest.mark.parametrize("loader_class", [DataLoader, BatchedDataLoader])
@pytest.mark.parametrize("capacity, new_pass", [(4, False), (8, False), (10, True), (100, True)])
def test_a_new_pass_follows_one_left_early_whose_buffer_held_the_dataset(urls, make, loader_class, capacity,
                                                                          new_pass):
    """Recorded from 0.12.1 over the 10 rows, ``batch_size=4``, left after one batch: with a capacity of 10 or
    more its buffer had read the reader to its end and a new pass read every row again; with 8 or less the new
    pass was the reader's error."""
    with make(urls[make], **_KW) as reader:
        loader = loader_class(reader, batch_size=4, shuffling_queue_capacity=capacity)
        for _ in loader:
            break
        gc.collect()
        if new_pass:
            assert sorted(i for b in loader for i in b["id"].tolist()) == list(range(10))
        else:
            with pytest.raises(NotImplementedError, match=_RESET_ERROR):
                list(loader)


@pytest.mark.parametrize("loader_class", [DataLoader, BatchedDataLoader])
def test_a_pass_run_to_its_end_may_be_followed_by_another(urls, loader_class):
    with make_batch_reader(urls[make_batch_reader], **_KW) as reader:
        loader = loader_class(reader, batch_size=4)
        assert [len(b["id"]) for b in loader] == [4, 4, 2]
        assert sorted(i for b in loader for i in b["id"].tolist()) == list(range(10))


@pytest.mark.parametrize("loader_class", [DataLoader, BatchedDataLoader])
def test_a_reader_mock_left_early_serves_a_new_pass(loader_class):
    """The mock never ends and its reset() does nothing (as the original's): a new pass follows a break."""
    with ReaderMock(Ids, schema_data_generator_example) as reader:
        loader = loader_class(reader, batch_size=4)
        for _ in loader:
            break
        batch = next(iter(loader))
    assert batch["id"].tolist() == [0, 0, 0, 0]
