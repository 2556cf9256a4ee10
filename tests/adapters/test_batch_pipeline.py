"""BatchPipeline over real readers: exact resume with prefetch and shuffling, errors reach the consumer, no
thread left behind, states from other settings or datasets refused with a message that names them."""
import gc
import os
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _fixtures.threads import new_prefetch_threads, no_new_prefetch_thread_within
from hypothesis import given, settings
from hypothesis import strategies as st

from petastorm import make_batch_reader, make_reader
from petastorm.adapters import BatchPipeline
from petastorm.errors import PetastormArgumentError, PetastormReaderError, PetastormStateError

from ._list_reader import ListReader, make_chunks

ROWS = 600


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A plain Parquet store: 600 rows in row groups of 70 (uneven), 2 files; id and a (n, 3) float column."""
    path = tmp_path_factory.mktemp("pipeline") / "store"
    os.makedirs(path)
    for f, (lo, hi) in enumerate([(0, 350), (350, ROWS)]):
        ids = np.arange(lo, hi, dtype=np.int64)
        table = pa.table({"id": ids, "x": (ids * 0.5).astype(np.float32)})
        pq.write_table(table, str(path / f"part-{f}.parquet"), row_group_size=70)
    return "file://" + str(path)


def _reader(url, **kw):
    kw.setdefault("seed", 7)
    kw.setdefault("workers_count", 2)
    return make_batch_reader(url, **kw)


def _ids(batches):
    return [b["id"].tolist() for b in batches]


@pytest.mark.parametrize("capacity,prefetch", [(0, 2), (0, 0), (50, 2), (200, 1)])
def test_resume_mid_epoch_yields_the_uninterrupted_sequence(store, capacity, prefetch):
    def pipeline(reader):
        return BatchPipeline(reader, 32, shuffling_queue_capacity=capacity, seed=3, prefetch=prefetch)

    with _reader(store, num_epochs=2) as r:
        full = _ids(pipeline(r))
    assert len(full) == 38 and sorted(i for b in full for i in b) == sorted(list(range(ROWS)) * 2)
    for cut in (1, 17, 25):
        with _reader(store, num_epochs=2) as r:
            p = pipeline(r)
            head = [next(p)["id"].tolist() for _ in range(cut)]
            time.sleep(0.05)  # let the prefetch thread run ahead: prefetched batches belong to the state
            state = p.state_dict()
            p.close()
        with _reader(store, num_epochs=2) as r:
            p = pipeline(r)
            p.load_state_dict(state)
            assert head + _ids(p) == full


def test_resume_over_make_reader_rows(synthetic_dataset):
    def run(state=None, cut=None):
        with make_reader(synthetic_dataset, schema_fields=["id", "matrix"], seed=1, workers_count=2) as r:
            p = BatchPipeline(r, 7, shuffling_queue_capacity=20, seed=5)
            if state is not None:
                p.load_state_dict(state)
            out = []
            for b in p:
                assert b["matrix"].shape == (len(b["id"]), 4, 3)
                out.append(b["id"].tolist())
                if cut is not None and len(out) == cut:
                    return out, p.state_dict()
            return out, None

    full, _ = run()
    assert sorted(i for b in full for i in b) == list(range(100))
    head, state = run(cut=6)
    rest, _ = run(state=state)
    assert head + rest == full


def test_a_state_from_other_settings_names_the_setting(store):
    with _reader(store) as r:
        p = BatchPipeline(r, 8)
        next(p)
        state = p.state_dict()
        p.close()
    with _reader(store) as r:
        with pytest.raises(PetastormStateError, match=r"batch_size \(saved 8, now 16\)"):
            BatchPipeline(r, 16).load_state_dict(state)
    with _reader(store) as r:
        with pytest.raises(PetastormStateError, match=r"shuffling_queue_capacity \(saved 0, now 10\)"):
            BatchPipeline(r, 8, shuffling_queue_capacity=10).load_state_dict(state)


def test_a_state_from_another_dataset_is_refused(store, synthetic_dataset):
    with _reader(store) as r:
        p = BatchPipeline(r, 8)
        next(p)
        state = p.state_dict()
        p.close()
    with make_batch_reader(synthetic_dataset, schema_fields=["id"]) as r:
        with pytest.raises(PetastormStateError, match="different dataset"):
            BatchPipeline(r, 8).load_state_dict(state)


@pytest.mark.parametrize("where", ["transform_fn", "convert"])
@pytest.mark.parametrize("prefetch", [0, 2])
def test_an_error_in_the_pipeline_reaches_the_consumer_and_stops_the_reader(store, where, prefetch):
    calls = []

    def boom(batch):
        calls.append(1)
        if len(calls) == 3:
            raise ZeroDivisionError("bad batch")
        return batch

    r = _reader(store)
    p = BatchPipeline(r, 16, prefetch=prefetch, **{where: boom})
    next(p), next(p)
    with pytest.raises(ZeroDivisionError, match="bad batch"):
        next(p)
    with pytest.raises(PetastormReaderError):  # the reader was stopped
        next(r)
    assert no_new_prefetch_thread_within()
    with pytest.raises(StopIteration):
        next(p)


def test_an_abandoned_pipeline_leaves_no_thread_once_collected(store):
    with _reader(store, num_epochs=None) as r:  # endless: the thread always has more to prefetch
        p = BatchPipeline(r, 16, prefetch=4)
        next(p)
        assert new_prefetch_threads()
        del p
        gc.collect()
        assert no_new_prefetch_thread_within()


def test_close_is_idempotent_and_iteration_after_close_raises(store):
    with _reader(store) as r:
        p = BatchPipeline(r, 16)
        next(p)
        p.close()
        p.close()
        with pytest.raises(PetastormReaderError, match="closed"):
            next(p)


@pytest.mark.parametrize("kwargs,name", [({"batch_size": 0}, "batch_size"), ({"batch_size": -3}, "batch_size"),
                                         ({"batch_size": 2, "prefetch": -1}, "prefetch"),
                                         ({"batch_size": 2, "shuffling_queue_capacity": -1},
                                          "shuffling_queue_capacity"),
                                         ({"batch_size": 2, "convert": 3}, "convert")])
def test_bad_arguments_are_named(store, kwargs, name):
    with _reader(store) as r:
        with pytest.raises(PetastormArgumentError, match=name):
            BatchPipeline(r, **kwargs)


def test_load_state_after_iterating_is_refused(store):
    with _reader(store) as r:
        p = BatchPipeline(r, 16)
        state = p.state_dict()
        next(p)
        with pytest.raises(PetastormReaderError, match="before the first batch"):
            p.load_state_dict(state)
        p.close()


def test_rows_held_counts_buffer_and_prefetched_rows(store):
    with _reader(store) as r:
        p = BatchPipeline(r, 10, shuffling_queue_capacity=100, prefetch=2)
        served = len(next(p)["id"])
        time.sleep(0.1)
        state = p.state_dict()
        assert state["rows_held"] == p.rows_held
        assert 100 - served <= state["rows_held"] <= ROWS - served
        p.close()


@settings(max_examples=40, deadline=None)
@given(sizes=st.lists(st.integers(1, 30), min_size=1, max_size=10), batch_size=st.integers(1, 25),
       capacity=st.sampled_from([0, 3, 40]), prefetch=st.integers(0, 3), cut=st.integers(0, 12),
       batched=st.booleans())
def test_any_checkpoint_with_a_running_prefetch_thread_resumes_exactly(sizes, batch_size, capacity, prefetch, cut,
                                                                       batched):
    chunks = make_chunks(sizes)

    def pipeline(seed=4):
        return BatchPipeline(ListReader(chunks, batched), batch_size, shuffling_queue_capacity=capacity, seed=seed,
                             prefetch=prefetch)

    full = [b["id"].tolist() for b in pipeline()]
    assert sorted(i for b in full for i in b) == list(range(sum(sizes)))
    first = pipeline()
    head = [b["id"].tolist() for _, b in zip(range(cut), first)]
    state = first.state_dict()
    first.close()
    resumed = pipeline(seed=None)
    resumed.load_state_dict(state)
    assert head + [b["id"].tolist() for b in resumed] == full
