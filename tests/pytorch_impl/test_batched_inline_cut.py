"""BatchedDataLoader cuts plain CPU batches of a pooled reader in ``next()`` (no prefetch thread: the reader's
workers read ahead already); with a shuffling buffer, a ``transform_fn`` or a ``dummy`` pool the thread is kept.
Either way the batches, the state and its resume are the same."""
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from _fixtures.threads import new_prefetch_threads, no_new_prefetch_thread_within

from petastorm import make_batch_reader
from petastorm.pytorch import BatchedDataLoader


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """1000 rows in row groups of 97: id (int64) and x = id / 2 (float32)."""
    path = tmp_path_factory.mktemp("inline") / "store"
    os.makedirs(path)
    ids = np.arange(1000, dtype=np.int64)
    pq.write_table(pa.table({"id": ids, "x": ids.astype(np.float32) * 0.5}), str(path / "a.parquet"),
                   row_group_size=97)
    return "file://" + str(path)


def _reader(url, pool="thread"):
    return make_batch_reader(url, shuffle_row_groups=False, workers_count=2, reader_pool_type=pool)


@pytest.mark.parametrize("pool, kw, threaded", [
    ("thread", {}, False),
    ("process", {}, False),
    ("dummy", {}, True),
    ("thread", {"shuffling_queue_capacity": 64, "seed": 1}, True),
    ("thread", {"transform_fn": lambda col: col}, True),
])
def test_a_prefetch_thread_only_where_it_overlaps_work(store, pool, kw, threaded):
    with _reader(store, pool) as reader:
        loader = BatchedDataLoader(reader, batch_size=8, **kw)
        it = iter(loader)
        first = next(it)
        assert bool(new_prefetch_threads()) == threaded
        rest = list(it)
    ids = torch.cat([first["id"]] + [b["id"] for b in rest]).tolist()
    assert sorted(ids) == list(range(1000)) and (ids == list(range(1000))) == ("shuffling_queue_capacity" not in kw)
    assert all(torch.equal(b["x"], b["id"].float() * 0.5) for b in [first] + rest)
    assert no_new_prefetch_thread_within()


def test_cut_in_next_the_state_resumes_exactly_and_prefetch_0_gives_the_same_batches(store):
    with _reader(store) as reader:
        loader = BatchedDataLoader(reader, batch_size=10)
        it = iter(loader)
        head = [next(it) for _ in range(23)]  # inside the third row group
        state = loader.state_dict()
        tail = list(it)
    with _reader(store) as reader:
        resumed = BatchedDataLoader(reader, batch_size=10)
        resumed.load_state_dict(state)
        again = list(resumed)
    with _reader(store) as reader:
        plain = list(BatchedDataLoader(reader, batch_size=10, prefetch=0))
    assert [b["id"].tolist() for b in again] == [b["id"].tolist() for b in tail]
    assert [b["id"].tolist() for b in head + tail] == [b["id"].tolist() for b in plain]
    assert sum(len(b["id"]) for b in head + tail) == 1000
