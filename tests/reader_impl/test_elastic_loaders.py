"""Elastic resume of the loaders (petastorm.pytorch, petastorm.jax): the rows they held at the checkpoint
(shuffling buffer, partial batch, prefetched batches) are dealt to the new ranks, none lost or repeated."""
import io
from collections import Counter

import pytest
import torch
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st

from petastorm import merge_state_dicts
from petastorm.errors import PetastormStateError
from petastorm.jax import make_jax_iterator
from petastorm.pytorch import BatchedDataLoader, DataLoader, InMemBatchedDataLoader

from ._elastic_sim import ids_of, open_reader, roundtrip


def _rows_collate(rows):
    return {"id": [int(r["id"]) for r in rows]}


LOADERS = {
    "BatchedDataLoader": lambda reader, bs, cap, seed: BatchedDataLoader(
        reader, batch_size=bs, shuffling_queue_capacity=cap, seed=seed),
    "DataLoader": lambda reader, bs, cap, seed: DataLoader(reader, batch_size=bs, shuffling_queue_capacity=cap),
    "DataLoader-rows": lambda reader, bs, cap, seed: DataLoader(
        reader, batch_size=bs, shuffling_queue_capacity=cap, collate_fn=_rows_collate),
    "JaxIterator": lambda reader, bs, cap, seed: make_jax_iterator(
        reader, batch_size=bs, shuffling_queue_capacity=cap, seed=seed),
}


def _close(loader, reader):
    close = getattr(loader, "close", None)
    if close is not None:
        close()
    else:
        loader.__exit__(None, None, None)
    reader.stop()
    reader.join()


def _checkpoint(url, kind, world, batched, steps, bs, cap, job, options):
    seen, states = [], []
    for rank in range(world):
        reader = open_reader(url, rank, world, batched, **options)
        loader = LOADERS[kind](reader, bs, cap, 7)
        if job is not None:
            loader.load_state_dict(job)
        it = iter(loader)
        for _ in range(steps[rank]):
            try:
                seen += ids_of(next(it))
            except StopIteration:
                break
        states.append(roundtrip(loader.state_dict()))
        _close(loader, reader)
    return seen, merge_state_dicts(states)


def _finish(url, kind, world, batched, bs, cap, job, options):
    per_rank = []
    for rank in range(world):
        reader = open_reader(url, rank, world, batched, **options)
        loader = LOADERS[kind](reader, bs, cap, 7)
        loader.load_state_dict(job)
        got = []
        for batch in loader:
            got += ids_of(batch)
        per_rank.append(got)
        _close(loader, reader)
    return per_rank


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow], phases=[Phase.generate])
@given(kind=st.sampled_from(sorted(LOADERS)), batched=st.booleans(), files=st.integers(1, 3),
       rows=st.integers(2, 8), w1=st.integers(1, 4), w2=st.integers(1, 4), w3=st.one_of(st.none(), st.integers(1, 3)),
       steps1=st.lists(st.integers(0, 5), min_size=4, max_size=4),
       steps2=st.lists(st.integers(0, 5), min_size=4, max_size=4),
       batch_size=st.integers(1, 5), capacity=st.sampled_from([0, 4, 11]), shuffle_row_groups=st.booleans(),
       drop_partitions=st.integers(1, 2), shuffle_rows=st.booleans())
def test_loaders_every_row_once_and_balanced(datasets, kind, batched, files, rows, w1, w2, w3, steps1, steps2,
                                              batch_size, capacity, shuffle_row_groups, drop_partitions, shuffle_rows):
    url, n = datasets(files, 2, rows)
    assume(n >= max(w1, w2, w3 or 1))
    assume(batched or not shuffle_rows)  # row readers inside a permuted item are refused (test_elastic_resume)
    options = dict(num_epochs=1, shuffle_row_groups=shuffle_row_groups, shuffle_row_drop_partitions=drop_partitions,
                   shard_seed=1, seed=3, shuffle_rows=shuffle_rows)
    stages = [w1, w2] + ([w3] if w3 else [])
    seen, job, tail = [], None, 0
    for stage, (world, steps) in enumerate(zip(stages[:-1], (steps1, steps2))):
        ids, job = _checkpoint(url, kind, world, batched, steps, batch_size, capacity, job, options)
        seen += ids
        job = roundtrip(job)
        if stage == 0 and job["reader"]["next_epoch"] == 1:
            # every rank's reader read its whole range: the epoch ended as it would have uninterrupted, its
            # 'drop' tail (total % W1 rows) left out; only rows held by the loaders are left
            tail = n % w1
        if not job["in_pass"] and job["passes_done"]:
            per_rank = [[]]  # every loader ended its pass: iterating again would start the next pass
            break
    else:
        per_rank = _finish(url, kind, stages[-1], batched, batch_size, capacity, job, options)
    counts = Counter(seen + sum(per_rank, []))
    assert set(counts.values()) == {1}, "rows read twice"
    assert set(counts) <= set(range(n)) and n - len(counts) == tail, "rows lost"
    sizes = [len(r) for r in per_rank]
    assert max(sizes) - min(sizes) <= 1, sizes


def test_merged_loader_state_survives_torch_save_with_weights_only(datasets):
    url, n = datasets(2, 2, 6)
    options = dict(num_epochs=1, shard_seed=2, seed=1)
    seen, job = _checkpoint(url, "BatchedDataLoader", 3, True, [1, 2, 1], 2, 5, None, options)
    assert job["held_rows"] > 0
    buf = io.BytesIO()
    torch.save({"loader": job}, buf)
    buf.seek(0)
    job = torch.load(buf, weights_only=True)["loader"]
    per_rank = _finish(url, "BatchedDataLoader", 2, True, 2, 5, job, options)
    assert sorted(seen + sum(per_rank, [])) == list(range(n))


def test_loader_job_state_is_refused_by_another_loader_or_settings(datasets):
    url, _ = datasets(1, 2, 6)
    options = dict(num_epochs=1)
    _, job = _checkpoint(url, "BatchedDataLoader", 2, True, [1, 1], 2, 0, None, options)
    reader = open_reader(url, 0, 2, True, **options)
    with pytest.raises(PetastormStateError, match="merged from BatchedDataLoader states, this is a DataLoader"):
        DataLoader(reader, batch_size=2).load_state_dict(job)
    with pytest.raises(PetastormStateError, match="batch_size"):
        BatchedDataLoader(reader, batch_size=3).load_state_dict(job)
    reader.stop()
    reader.join()


def _two_rank_states(url, make_loader, advance):
    """The ``state_dict()`` of a loader (``make_loader(reader)``) on each rank of a world of 2, taken after
    ``advance(rank, loader)``; each rank's reader stopped and joined."""
    states = []
    for rank in range(2):
        reader = open_reader(url, rank, 2, True, num_epochs=1)
        loader = make_loader(reader)
        advance(rank, loader)
        states.append(loader.state_dict())
        reader.stop()
        reader.join()
    return states


def test_in_memory_loader_states_are_refused(datasets):
    url, _ = datasets(1, 2, 6)
    states = _two_rank_states(url, lambda reader: InMemBatchedDataLoader(reader, batch_size=2, num_epochs=1),
                              lambda rank, loader: next(iter(loader)))
    with pytest.raises(PetastormStateError, match="InMemBatchedDataLoader.*another world size"):
        merge_state_dicts(states)


def test_loader_states_of_different_steps_are_refused(datasets):
    url, _ = datasets(1, 2, 6)

    def passes(rank, loader):  # rank 1 two passes ahead
        for _ in range(2 * rank):
            list(loader)

    states = _two_rank_states(url, lambda reader: BatchedDataLoader(reader, batch_size=2), passes)
    with pytest.raises(PetastormStateError, match="passes_done"):
        merge_state_dicts(states)


def test_a_loader_job_state_is_refused_by_a_bare_reader(datasets):
    url, _ = datasets(1, 2, 6)
    _, job = _checkpoint(url, "BatchedDataLoader", 2, True, [1, 1], 2, 4, None, dict(num_epochs=1))
    with pytest.raises(PetastormStateError, match="merged from BatchedDataLoader states.*load_state_dict"):
        open_reader(url, 0, 3, True, resume_from=job, num_epochs=1)


@pytest.mark.parametrize("kind", ["BatchedDataLoader", "DataLoader", "DataLoader-rows", "JaxIterator"])
def test_loaders_straddling_an_epoch_boundary_resume_both_epochs_exactly(datasets, kind):
    url, n = datasets(3, 2, 10)  # 60 rows: normal epochs at 3 and 2 ranks drop nothing
    options = dict(num_epochs=2, shuffle_row_groups=True, shard_seed=4, seed=2)
    # 20 rows per rank and epoch at W=3; with a buffer of 11 rows, rank 0's reader is into epoch 1
    seen, job = _checkpoint(url, kind, 3, True, [5, 2, 4], 4, 11, None, options)
    assert "1" in job["reader"]["epochs"]  # readers are into epoch 1 (their loaders hold epoch-0 rows)
    per_rank = _finish(url, kind, 2, True, 4, 11, roundtrip(job), options)
    counts = Counter(seen + sum(per_rank, []))
    assert sorted(counts) == list(range(n)) and set(counts.values()) == {2}
    sizes = [len(r) for r in per_rank]
    assert max(sizes) - min(sizes) <= 1


def test_a_rank_resumed_elastically_resumes_exactly_from_its_own_state(datasets):
    url, _ = datasets(2, 2, 9)
    options = dict(num_epochs=2, shard_seed=5, seed=4)
    _, job = _checkpoint(url, "BatchedDataLoader", 3, True, [2, 1, 2], 3, 8, None, options)

    def loader_at(state):
        reader = open_reader(url, 1, 2, True, **options)
        loader = LOADERS["BatchedDataLoader"](reader, 3, 8, 7)
        loader.load_state_dict(state)
        return loader, reader

    loader, reader = loader_at(job)
    it = iter(loader)
    head = [ids_of(next(it)) for _ in range(3)]
    state = roundtrip(loader.state_dict())
    tail = [ids_of(b) for b in it]
    _close(loader, reader)
    again, reader = loader_at(state)
    assert [ids_of(b) for b in again] == tail and head  # same batches, same order
    _close(again, reader)


@pytest.mark.parametrize("shuffle_rows", [False, True])
def test_rows_left_in_a_reader_batch_go_back_as_positions_or_travel_as_rows(datasets, shuffle_rows):
    url, n = datasets(1, 2, 6)  # 12 rows, items of 6 rows
    options = dict(num_epochs=1, shuffle_row_groups=False, shuffle_rows=shuffle_rows, seed=2)
    seen, states = [], []
    for rank in range(2):  # each rank serves 2 rows of its first 6-row reader batch: 4 rows wait in the loader
        reader = open_reader(url, rank, 2, True, **options)
        loader = BatchedDataLoader(reader, batch_size=2, prefetch=0)  # no batch prefetched: rows wait pending
        it = iter(loader)
        seen += ids_of(next(it))
        states.append(loader.state_dict())
        _close(loader, reader)
    job = merge_state_dicts(states)
    # in reader order they are the last positions read: given back to the job; permuted: carried as rows
    assert job["held_rows"] == (8 if shuffle_rows else 0)
    per_rank = []
    for rank in range(3):
        reader = open_reader(url, rank, 3, True, **options)
        loader = BatchedDataLoader(reader, batch_size=2, prefetch=0)
        loader.load_state_dict(roundtrip(job))
        per_rank.append([i for b in loader for i in ids_of(b)])
        _close(loader, reader)
    assert sorted(seen + sum(per_rank, [])) == list(range(n))
    assert sorted(len(r) for r in per_rank) == [2, 3, 3]
