"""A job state merged (``petastorm.merge_state_dicts``) from JAX iterator states saved after every rank's loop had
ended (``StopIteration`` seen) must resume as BatchedDataLoader's job state does (recorded side by side below): the
new ranks serve the next pass in full, at the same or another world size. Before, the merged state took the ranks
as inside their pass and the resumed iterators yielded nothing, silently."""
import numpy as np
import pytest

from petastorm import merge_state_dicts
from petastorm.adapters.state_codec import with_digest
from petastorm.errors import PetastormStateError
from petastorm.jax import make_jax_iterator
from petastorm.pytorch import BatchedDataLoader
from tests.reader_impl._elastic_sim import ids_of, open_reader, roundtrip, write_ids_dataset

BATCH = 16


@pytest.fixture(scope="module")
def ids_dataset(tmp_path_factory):
    return write_ids_dataset(str(tmp_path_factory.mktemp("pass_ended") / "ds"), files=2, groups=4, rows_per_group=25)


def _jax(reader):
    return make_jax_iterator(reader, batch_size=BATCH)


def _torch(reader):
    return BatchedDataLoader(reader, batch_size=BATCH)


def _close(loader, reader):
    if hasattr(loader, "close"):
        loader.close()
    reader.stop()
    reader.join()


def _checkpoint(url, make, world):
    """Every rank runs its loop to the end (StopIteration seen) and saves its state; (ids, merged job)."""
    seen, states = [], []
    for rank in range(world):
        reader = open_reader(url, rank, world, True, num_epochs=1, seed=3)
        loader = make(reader)
        try:
            for batch in loader:
                seen += ids_of(batch)
            states.append(roundtrip(loader.state_dict()))
        finally:
            _close(loader, reader)
    return seen, merge_state_dicts(states)


def _resumed(url, make, job, world):
    """The ids each new rank serves after ``load_state_dict(job)``."""
    out = []
    for rank in range(world):
        reader = open_reader(url, rank, world, True, num_epochs=1, seed=3)
        loader = make(reader)
        try:
            loader.load_state_dict(job)
            out.append([i for batch in loader for i in ids_of(batch)])
        finally:
            _close(loader, reader)
    return out


@pytest.mark.parametrize("new_world", [2, 3])
def test_a_job_saved_after_every_rank_ended_its_loop_resumes_with_the_next_pass_as_batched_data_loader(
        ids_dataset, new_world):
    url, n = ids_dataset
    first, job = _checkpoint(url, _jax, 2)
    assert sorted(first) == list(range(n))
    assert (job["in_pass"], job["passes_done"]) == (False, 1)
    got = _resumed(url, _jax, job, new_world)
    torch_first, torch_job = _checkpoint(url, _torch, 2)
    assert (torch_job["in_pass"], torch_job["passes_done"]) == (False, 1)
    expected = _resumed(url, _torch, torch_job, new_world)
    assert got == expected  # the same rows per new rank, in the same order
    rows = [i for part in got for i in part]
    assert len(rows) == len(set(rows))
    # the next epoch at world 3 drops the 2 rows past 3 * 66 (shard_mode='balanced', remainder 'drop')
    assert len(rows) == (n if n % new_world == 0 else n - n % new_world)


def test_a_job_with_a_rank_saved_before_it_saw_the_end_resumes_an_empty_pass_as_batched_data_loader(ids_dataset):
    url, _ = ids_dataset

    def jax_ranks(after_loop):
        # rank 1 took every batch (100 rows: 7 batches) without seeing StopIteration
        seen, states = [], []
        for rank in range(2):
            reader = open_reader(url, rank, 2, True, num_epochs=1, seed=3)
            it = _jax(reader)
            try:
                if after_loop[rank]:
                    seen += [i for b in it for i in ids_of(b)]
                else:
                    seen += [i for _ in range(7) for i in ids_of(next(it))]
                states.append(roundtrip(it.state_dict()))
            finally:
                _close(it, reader)
        return seen, merge_state_dicts(states)

    seen, job = jax_ranks((True, False))
    assert len(seen) == 200
    assert (job["in_pass"], job["passes_done"]) == (True, 0)
    assert _resumed(url, _jax, job, 2) == [[], []]


def test_a_rank_state_with_a_malformed_pass_ended_is_refused_naming_it(ids_dataset):
    url, _ = ids_dataset
    states = []
    for rank in range(2):
        reader = open_reader(url, rank, 2, True, num_epochs=1, seed=3)
        it = _jax(reader)
        try:
            list(it)
            states.append(it.state_dict())
        finally:
            _close(it, reader)
    bad = dict(states[1], pass_ended="yes")
    bad.pop("digest")
    bad = with_digest(bad)  # a hand-made state: its digest fits, its pass_ended does not
    with pytest.raises(PetastormStateError, match="pass_ended"):
        merge_state_dicts([states[0], bad])


def test_the_resumed_next_pass_holds_every_row_once_with_values_intact(ids_dataset):
    url, n = ids_dataset
    _, job = _checkpoint(url, _jax, 2)
    reader = open_reader(url, 0, 1, True, num_epochs=1, seed=3)
    it = _jax(reader)
    try:
        it.load_state_dict(job)
        batches = list(it)
    finally:
        _close(it, reader)
    assert [np.asarray(b["id"]).shape for b in batches[:-1]] == [(BATCH,)] * (len(batches) - 1)
    assert sorted(i for b in batches for i in ids_of(b)) == list(range(n))
