"""The loaders' shuffling buffer run on row ids (petastorm.adapters.buffer_quality): the simulated order is the
loaders' own, and with the loader's seed the very order it serves, so explain() reports what a loader does."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from petastorm import make_reader
from petastorm.adapters import Batcher, BatchPipeline, ReaderSource
from petastorm.adapters.buffer_quality import loader_buffer, pass_seed, through_shuffling_buffer
from petastorm.errors import PetastormArgumentError
from petastorm.reader_impl.explain import explain_reader
from petastorm.reader_impl.plan import PlanOptions, make_epoch_plan
from petastorm.reader_impl.shuffle_quality import plan_row_sequence, sequence_quality

from ._list_reader import ListReader, make_chunks

ROWS = np.full(50, 200, dtype=np.int64)  # 50 row groups of 200 rows: 10,000 rows


def _sequence():
    return plan_row_sequence(make_epoch_plan(ROWS, PlanOptions(seed=7, shuffle_row_groups=True), 0), ROWS)


def test_the_loader_buffer_serves_every_row_once_and_mixes_more_as_it_grows():
    seq = _sequence()
    assert np.array_equal(through_shuffling_buffer(seq, 0, 32), seq)
    mixing = []
    for capacity in (100, 1_000, 5_000):
        out = through_shuffling_buffer(seq, capacity, batch_size=32, seed=1)
        assert np.array_equal(np.sort(out), np.arange(10_000))
        mixing.append(sequence_quality(out, rows_per_group=ROWS).mixing)
    assert mixing[0] < mixing[1] < mixing[2]
    same = through_shuffling_buffer(seq, 1_000, batch_size=32, seed=1)
    assert np.array_equal(same, through_shuffling_buffer(seq, 1_000, batch_size=32, seed=1))


def test_min_after_retrieve_sizes_the_simulated_buffer_as_the_loaders_do():
    seq = _sequence()
    small = through_shuffling_buffer(seq, 100, batch_size=10, seed=2)
    larger = through_shuffling_buffer(seq, 100, batch_size=10, seed=2, min_after_retrieve=2_000)  # holds 2,010
    assert np.array_equal(np.sort(larger), np.arange(10_000))
    assert sequence_quality(larger, rows_per_group=ROWS).mixing > sequence_quality(small, rows_per_group=ROWS).mixing


def test_bad_arguments_name_the_argument():
    with pytest.raises(PetastormArgumentError, match="capacity"):
        through_shuffling_buffer(np.arange(3), -1)
    with pytest.raises(PetastormArgumentError, match="batch_size"):
        through_shuffling_buffer(np.arange(3), 2, batch_size=0)
    with pytest.raises(PetastormArgumentError, match="min_after_retrieve"):
        through_shuffling_buffer(np.arange(30), 10, min_after_retrieve=-1)
    with pytest.raises(PetastormArgumentError, match="shuffling_queue_capacity"):
        loader_buffer(0)
    with pytest.raises(PetastormArgumentError, match="batch_size"):
        loader_buffer(10, True)
    with pytest.raises(PetastormArgumentError, match="min_after_retrieve"):
        loader_buffer(10, 2, min_after_retrieve=-3)


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(1, 300), min_size=1, max_size=12), capacity=st.integers(1, 400),
       batch_size=st.integers(1, 40), min_after=st.one_of(st.none(), st.integers(0, 300)), seed=st.integers(0, 99))
def test_the_simulated_order_is_the_loaders_batching_of_the_reader_batches(sizes, capacity, batch_size, min_after,
                                                                          seed):
    # the loaders' Batcher over reader batches of any sizes (as row groups come) serves the rows in exactly the
    # order the simulation gives for the same seed: explain() reports the quality of the loaders' own buffer
    batcher = Batcher(ReaderSource(ListReader(make_chunks(sizes))), batch_size, capacity,
                      min_after_retrieve=min_after, seed=seed)
    served = []
    while (batch := batcher.next_batch()) is not None:
        served.append(batch["id"])
    simulated = through_shuffling_buffer(np.arange(sum(sizes)), capacity, batch_size, seed=seed,
                                         min_after_retrieve=min_after)
    assert np.array_equal(np.concatenate(served), simulated)


def test_explain_with_the_loaders_seed_measures_the_order_the_pipeline_serves(synthetic_dataset):
    # synthetic_dataset: ids 0..99 in dataset order (the row ids of the simulation), 10 row groups of 10 rows
    seed = pass_seed(3, 0)  # a BatchedDataLoader's first pass over a reader made with seed=3
    with make_reader(synthetic_dataset, schema_fields=["id"], seed=3, shuffle_row_groups=True,
                     workers_count=1) as reader:
        plan = explain_reader(reader, buffer_order=loader_buffer(24, 4, seed=seed))
        assert plan == reader.explain(shuffling_queue_capacity=24, batch_size=4)  # its shortcut, same seed
        with BatchPipeline(reader, 4, shuffling_queue_capacity=24, seed=seed) as pipeline:
            served = np.concatenate([b["id"] for b in pipeline])
    assert sorted(served.tolist()) == list(range(100))
    assert plan.buffered_quality == sequence_quality(served, served // 10).to_dict()  # exactly the served order
    other = explain_reader(make_reader(synthetic_dataset, schema_fields=["id"], seed=3, shuffle_row_groups=True,
                                       reader_pool_type="dummy"), buffer_order=loader_buffer(24, 4, seed=[3, 1]))
    assert other.buffered_quality != plan.buffered_quality  # another pass, another order
    assert other.shuffle_quality == plan.shuffle_quality  # the reader's order is the same


def test_explain_takes_a_buffer_or_a_capacity_not_both(synthetic_dataset):
    with make_reader(synthetic_dataset, reader_pool_type="dummy") as reader:
        with pytest.raises(PetastormArgumentError, match="not both"):
            explain_reader(reader, shuffling_queue_capacity=5, buffer_order=loader_buffer(5))
        with pytest.raises(PetastormArgumentError, match="buffer_order"):
            explain_reader(reader, buffer_order=5)
        assert explain_reader(reader).buffered_quality is None
