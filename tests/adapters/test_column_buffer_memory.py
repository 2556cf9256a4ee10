"""The column shuffling buffer allocates its slots as rows arrive, not its whole capacity up front (found by the
adapters review: ``max(shuffling_queue_capacity, batch_size)`` rows were allocated whatever the data held)."""
import tracemalloc

import numpy as np
import pytest

from petastorm import make_batch_reader
from petastorm.adapters.column_buffer import ColumnShufflingBuffer
from petastorm.pytorch import BatchedDataLoader


def test_a_batch_size_larger_than_the_dataset_costs_no_memory_for_rows_that_do_not_exist(synthetic_dataset):
    # 100 rows of 2 columns, batch_size 2 * 10**6 with a 10-row shuffling buffer: one batch of 100 rows, but ~31 MiB
    # allocated (2 columns x 10**7 rows x 8 bytes + copies); batch_size 10**9 would ask for tens of GB. Full-batch
    # training (batch_size >= the rows) is what a user does on a small dataset
    with make_batch_reader(synthetic_dataset, schema_fields=["id", "value"], reader_pool_type="dummy") as reader:
        list(BatchedDataLoader(reader, batch_size=10, shuffling_queue_capacity=10, prefetch=0))  # imports done
        reader.reset()
        tracemalloc.start()
        try:
            loader = BatchedDataLoader(reader, batch_size=2 * 10 ** 6, shuffling_queue_capacity=10, prefetch=0)
            sizes = [len(batch["id"]) for batch in loader]
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert sizes == [100]
    assert peak < 4 * 2 ** 20, f"{peak / 2 ** 20:.0f} MiB allocated for 100 rows"


def test_a_huge_capacity_costs_only_the_rows_added():
    buffer = ColumnShufflingBuffer(10 ** 9, seed=1)
    tracemalloc.start()
    try:
        buffer.add({"id": np.arange(100), "x": np.ones((100, 3), np.float32)})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 ** 20
    assert buffer.size == 100 and buffer.free == 10 ** 9 - 100


@pytest.mark.parametrize("rounds", [1, 4])
def test_slots_that_grow_while_rows_come_and_go_lose_and_repeat_nothing(rounds):
    # rows added in uneven pieces, batches drawn in between (holes refilled, the arrays doubled several times,
    # a column widened on the way): every row comes out once, intact, and a state saved mid-way resumes exactly
    rng = np.random.default_rng(0)
    buffer = ColumnShufflingBuffer(20_000, seed=3, rounds=rounds)
    out, next_id, saved = [], 0, None
    while next_id < 60_000:
        n = min(int(rng.integers(1, 3000)), buffer.free, 60_000 - next_id)
        ids = np.arange(next_id, next_id + n)
        dtype = np.int32 if next_id < 30_000 else np.int64
        buffer.add({"id": ids.astype(dtype), "x": np.stack([ids, -ids], axis=1).astype(np.float64)})
        next_id += n
        if buffer.free < 5000:
            if saved is None and next_id > 25_000:  # the state just before a retrieve
                saved, served = buffer.state_dict(), len(out)
            out.append(buffer.retrieve(1024))
    while buffer.size:
        out.append(buffer.retrieve(1024))
    ids = np.concatenate([b["id"] for b in out])
    assert np.array_equal(np.sort(ids), np.arange(60_000))
    for batch in out:
        assert np.array_equal(batch["x"][:, 0], batch["id"]) and np.array_equal(batch["x"][:, 1], -batch["id"])
    resumed = ColumnShufflingBuffer(20_000, seed=99, rounds=rounds)
    resumed.load_state_dict(saved)
    first_after = out[served]
    assert np.array_equal(resumed.retrieve(1024)["id"], first_after["id"])
