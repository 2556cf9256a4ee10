"""Elastic resume over several epochs, checked on random cases (the driver of
tests/adapters/test_loaders_resume_property.py): a job checkpointed while its ranks straddle an epoch boundary,
resumed at another world size, checkpointed again and resumed again, must serve every row ``num_epochs`` times
over the whole job."""
import os
import random
import time
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from petastorm import make_batch_reader, merge_state_dicts
from petastorm.pytorch import BatchedDataLoader

from .test_loaders_resume_property import (
    _leave,
    _take,
    close,
    make_loader,
    open_reader,
    random_case,
    run_elastic,
    trip,
)


def _write_multiple_of_12(path, seed):
    """Rows a multiple of 12 (no balanced epoch at 1..4 ranks leaves a row out), uneven row groups."""
    rng = np.random.default_rng(seed)
    total = 12 * int(rng.integers(3, 12))
    sizes = []
    while sum(sizes) < total:
        sizes.append(int(min(rng.integers(1, 30), total - sum(sizes))))
    schema = pa.schema([("id", pa.int64()), ("x", pa.float64()), ("z", pa.int32())])
    os.makedirs(path, exist_ok=True)
    n = 0
    for f, groups in enumerate(np.array_split(np.array(sizes), int(rng.integers(1, 4)))):
        with pq.ParquetWriter(os.path.join(path, f"part-{f}.parquet"), schema) as writer:
            for size in groups:
                ids = np.arange(n, n + size, dtype=np.int64)
                n += int(size)
                writer.write_table(pa.table({"id": ids, "x": ids + 0.5, "z": (-ids).astype(np.int32)}, schema=schema))
    return "file://" + path, n


@pytest.fixture(scope="module")
def datasets12(tmp_path_factory):
    root = tmp_path_factory.mktemp("multiple_of_12")
    return {"small": [_write_multiple_of_12(str(root / f"d{i}"), i) for i in range(4)]}


def test_elastic_resume_over_two_epochs_serves_every_row_twice(datasets12):
    # one checkpoint: W1 ranks, some into the second epoch, resumed at W2
    run_elastic(datasets12, range(0, 40), epochs=(2,), n_stages=(2,))



def test_a_job_resumed_and_checkpointed_again_before_the_next_epoch_repeats_no_row(tmp_path):
    ids = np.arange(60, dtype=np.int64)
    pq.write_table(pa.table({"id": ids}), os.path.join(str(tmp_path), "p.parquet"), row_group_size=10)
    url = "file://" + str(tmp_path)
    options = dict(reader_pool_type="dummy", shard_mode="balanced", num_epochs=2, shuffle_row_groups=False,
                   seed=1, shard_seed=1)

    def reader(rank, world, job=None):
        return make_batch_reader(url, cur_shard=rank, shard_count=world, resume_from=job, **options)

    seen, states = [], []
    for rank, steps in enumerate([0, 4, 3]):  # 20 rows (2 row groups) per rank and epoch: ranks 1, 2 in epoch 1
        with reader(rank, 3) as r:
            it = iter(r)
            for _ in range(steps):
                seen += next(it).id.tolist()
            states.append(r.state_dict())
    job = merge_state_dicts(states)
    states = []
    for rank in range(3):  # resumed, and checkpointed again before reading anything
        with reader(rank, 3, job) as r:
            states.append(r.state_dict())
    job = merge_state_dicts(states)
    for rank in range(3):
        with reader(rank, 3, job) as r:
            seen += [i for batch in r for i in batch.id.tolist()]
    counts = Counter(seen)
    assert sorted(k for k, v in counts.items() if v > 2) == []   # was: 30 rows of epoch 1 served again
    assert counts == Counter(list(range(60)) * 2)


@pytest.mark.slow
def test_elastic_resume_over_two_epochs_checkpointed_twice_serves_every_row_twice(datasets12):
    run_elastic(datasets12, range(100, 220), epochs=(2,), n_stages=(3,))  # seed 154 repeats rows


@pytest.mark.parametrize("world2", [1, 3])
def test_a_rank_whose_reader_prefetched_epochs_ahead_is_merged_and_resumed_exactly(tmp_path, world2):
    # 12 rows per rank and epoch, batches of 8: a loader prefetching 2 batches has its reader 2 epochs ahead of
    # the batches it served; merge_state_dicts refused the synchronised checkpoint ("more than one epoch ahead")
    ids = np.arange(24, dtype=np.int64)
    pq.write_table(pa.table({"id": ids}), os.path.join(str(tmp_path), "p.parquet"), row_group_size=6)
    url = "file://" + str(tmp_path)

    def reader(rank, world):
        return make_batch_reader(url, cur_shard=rank, shard_count=world, shard_mode="balanced", num_epochs=8,
                                 reader_pool_type="dummy", shuffle_row_groups=False)

    seen, states = [], []
    for rank, prefetch in enumerate([0, 2]):  # prefetch is not a loader setting: ranks may differ
        with reader(rank, 2) as r:
            loader = BatchedDataLoader(r, batch_size=8, prefetch=prefetch)
            it = iter(loader)
            seen += [i for _ in range(3) for i in next(it)["id"].tolist()]
            deadline = time.time() + 30
            while prefetch and loader.state_dict()["body"]["rows_held"] < 16 and time.time() < deadline:
                time.sleep(0.01)  # the prefetch thread reads its 2 batches
            states.append(loader.state_dict())
            it.close()
    job = merge_state_dicts(states)
    per_rank = []
    for rank in range(world2):
        with reader(rank, world2) as r:
            loader = BatchedDataLoader(r, batch_size=8)
            loader.load_state_dict(job)
            per_rank.append([i for b in loader for i in b["id"].tolist()])
    assert Counter(seen + sum(per_rank, [])) == Counter(list(range(24)) * 8)
    assert max(map(len, per_rank)) - min(map(len, per_rank)) <= 1


def _ids_dataset(path, rows, group):
    os.makedirs(path, exist_ok=True)
    ids = np.arange(rows, dtype=np.int64)
    pq.write_table(pa.table({"id": ids, "x": ids + 0.5, "z": (-ids).astype(np.int32)}),
                   os.path.join(path, "p.parquet"), row_group_size=group)
    return "file://" + path, rows


@pytest.mark.slow
def test_synchronised_jobs_with_short_epochs_and_prefetch_resume_exactly(tmp_path):
    # every rank takes the same number of steps; rank 0 does not prefetch, the others do (their readers run
    # epochs ahead); W1 -> W2 over 3..8 epochs: every row served num_epochs times over the job
    sets = [_ids_dataset(str(tmp_path / f"d{i}"), rows, group)
            for i, (rows, group) in enumerate([(24, 6), (36, 5), (48, 7), (12, 12)])]
    for seed in range(0, 60):
        rng = random.Random(seed)
        url, n = sets[seed % 4]
        c = random_case(rng, n, kinds=["batched2", "dl_batch", "dl_custom", "jax", "dl_row"])
        c.update(epochs=rng.randint(3, 8), passes=1, vary=False, transform=False, drop_last=False, min_after=None,
                 batch_size=rng.choice([2, 3, 5, 8, 11, 16]), cap=rng.choice([0, 0, 5, 13]))
        if not c["batched_reader"]:
            c["shuffle_rows"] = False
        stages, steps = [rng.randint(1, 4), rng.randint(1, 4)], rng.randint(0, 12)
        seen, job = [], None
        for stage, world in enumerate(stages):
            states = []
            for rank in range(world):
                cr = dict(c, cur_shard=rank, shard_count=world, jax_prefetch=0 if rank == 0 else 2)
                if c["kind"] == "batched2" and rank == 0:
                    cr["kind"] = "batched0"
                reader = open_reader(url, cr)
                loader = make_loader(reader, cr)
                try:
                    if job is not None:
                        loader.load_state_dict(job)
                    got = []
                    _, it = _take(loader, cr, got, steps if stage == 0 else None, 0)
                    if stage == 0:
                        time.sleep(0.02 if rank else 0)
                        states.append(trip(loader.state_dict(), c["trip"]))
                    _leave(it)
                finally:
                    close(loader, reader)
                seen += [i for b in got for i in b]
            if stage == 0:
                job = trip(merge_state_dicts(states), c["trip"])
                if not job["in_pass"] and job["passes_done"]:
                    break
        counts, want = Counter(seen), Counter(list(range(n)) * c["epochs"])
        assert counts == want, (f"seed {seed}: case {c}, stages {stages}, steps {steps}: lost "
                                f"{sorted((want - counts).elements())[:20]}, repeated {sorted((counts - want).elements())[:20]}")
