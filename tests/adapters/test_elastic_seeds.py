"""petastorm.adapters.elastic (merge_state_dicts): ranks that drew different shuffling seeds (readers made with
``seed=None``, each process's global RNG seeded differently) resume at another world size in one recorded order:
the job keeps rank 0's seeds, whatever the order of the states, instead of drawing new ones."""
import numpy as np
import pytest
import torch

from petastorm import merge_state_dicts
from petastorm.pytorch import BatchedDataLoader, DataLoader
from tests.reader_impl._elastic_sim import open_reader, write_ids_dataset


@pytest.fixture(scope="module")
def ids_url(tmp_path_factory):
    url, _ = write_ids_dataset(str(tmp_path_factory.mktemp("seeds") / "d"), 4, 2, 25)
    return url


def _loader(cls, url, rank, world):
    reader = open_reader(url, rank, world, True, num_epochs=1, shard_seed=7)
    return cls(reader, batch_size=5, shuffling_queue_capacity=20)


def _rank_states(cls, url, world=2, steps=3):
    """Each rank's loader state after ``steps`` batches, every rank's global RNGs seeded differently."""
    states = []
    for rank in range(world):
        np.random.seed(100 + rank)
        torch.manual_seed(100 + rank)
        with _loader(cls, url, rank, world) as loader:
            batches = iter(loader)
            for _ in range(steps):
                next(batches)
            states.append(loader.state_dict())
    return states


def _resumed_ids(cls, url, job, world, global_seed):
    """The ids every new rank serves after ``load_state_dict(job)``, its process's RNGs seeded ``global_seed``."""
    out = []
    for rank in range(world):
        np.random.seed(global_seed + rank)
        torch.manual_seed(global_seed + rank)
        with _loader(cls, url, rank, world) as loader:
            loader.load_state_dict(job)
            out.append([i for batch in loader for i in batch["id"].tolist()])
    return out


@pytest.mark.parametrize("cls", [BatchedDataLoader, DataLoader])
def test_ranks_with_different_seeds_resume_at_another_world_size_in_one_reproducible_order(cls, ids_url):
    states = _rank_states(cls, ids_url)
    assert states[0]["shuffle_seed"] != states[1]["shuffle_seed"]  # the ranks drew different seeds
    job = merge_state_dicts(states)
    assert job["shuffle_seed"] == states[0]["shuffle_seed"]  # rank 0's, recorded in the job
    first = _resumed_ids(cls, ids_url, job, 3, global_seed=1)
    again = _resumed_ids(cls, ids_url, job, 3, global_seed=50)  # other processes, other global RNG states
    assert first == again
    served = sorted(i for rank in first for i in rank)
    assert len(served) == len(set(served))  # still no row twice


@pytest.mark.parametrize("cls", [BatchedDataLoader, DataLoader])
def test_the_merged_job_does_not_depend_on_the_order_of_the_states(cls, ids_url):
    states = _rank_states(cls, ids_url)
    job = merge_state_dicts(states)
    backwards = merge_state_dicts(states[::-1])
    assert backwards["shuffle_seed"] == job["shuffle_seed"]
    assert backwards["reader"]["seed"] == job["reader"]["seed"]  # rank 0's reader seed, not states[0]'s
    assert _resumed_ids(cls, ids_url, backwards, 3, 7) == _resumed_ids(cls, ids_url, job, 3, 9)


def test_reader_states_merged_in_any_order_keep_rank_0s_seed(ids_url):
    states = []
    for rank in range(2):
        reader = open_reader(ids_url, rank, 2, True, num_epochs=1)  # seed=None: each rank draws its own
        next(iter(reader))
        states.append(reader.state_dict())
        reader.stop()
        reader.join()
    assert states[0]["seed"] != states[1]["seed"]
    assert merge_state_dicts(states)["seed"] == merge_state_dicts(states[::-1])["seed"] == states[0]["seed"]
