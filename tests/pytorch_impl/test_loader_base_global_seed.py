"""The shuffling order of the torch loaders over a reader made without a ``seed``, and the global seeds a
training script sets for reproducibility.

Recorded from petastorm 0.12.1 (black box, public API), ``make_reader`` / ``make_batch_reader`` with
``seed=None``, ``shuffle_row_groups=False`` (the reader's order fixed), ``shuffling_queue_capacity=20``, batch 10,
over ``all_codecs_0.12.1`` (60 rows), each case run twice:

- ``DataLoader``: the order follows ``numpy.random.seed(...)`` - the same numpy seed gives the same order, another
  numpy seed another order; ``torch.manual_seed`` and ``random.seed`` do not change it.
- ``BatchedDataLoader``: the order follows ``torch.manual_seed(...)``; ``numpy.random.seed`` and ``random.seed``
  do not change it.

Ours drew a new seed from the OS for each reader made with ``seed=None``, so a script that sets
``torch.manual_seed(0)`` / ``numpy.random.seed(0)`` (or ``lightning.seed_everything``) for a reproducible run got
a different order on every run. Fixed in ``pytorch_impl/loader_base.py``: over a reader made without a seed
(and, for ``BatchedDataLoader``, no ``seed=`` of its own), the loader draws its shuffling seed once from the
global RNG the original used (numpy for ``DataLoader``, torch for ``BatchedDataLoader``) and keeps it in its
``state_dict()``, so a resumed run continues with the order of the uninterrupted one whatever the global seeds
of the new process. A reader made with a ``seed`` still fixes the order (ours; the original ignored it).
"""
from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch

from petastorm import make_batch_reader, make_reader
from petastorm.pytorch import BatchedDataLoader, DataLoader

pytestmark = pytest.mark.timeout(120)

_KW = dict(workers_count=1, reader_pool_type="dummy", shuffle_row_groups=False)


@pytest.fixture(scope="module")
def url(testdata_dir) -> str:
    return "file://" + os.path.join(testdata_dir, "original-0.12.1", "all_codecs_0.12.1")


def _make(url, kind, make, seed=None, num_epochs=1):
    reader = make(url, schema_fields=["id"], seed=seed, num_epochs=num_epochs, **_KW)
    if kind == "DataLoader":
        return DataLoader(reader, batch_size=10, shuffling_queue_capacity=20)
    return BatchedDataLoader(reader, batch_size=10, shuffling_queue_capacity=20)


def _order(url, kind, make, torch_seed, numpy_seed, random_seed=0, seed=None):
    torch.manual_seed(torch_seed)
    np.random.seed(numpy_seed)
    random.seed(random_seed)
    with _make(url, kind, make, seed) as loader:
        return torch.cat([b["id"] for b in loader]).tolist()


_MAKES = pytest.mark.parametrize("make", [make_reader, make_batch_reader], ids=["make_reader", "make_batch_reader"])


@_MAKES
@pytest.mark.parametrize("kind, counts", [("DataLoader", "numpy"), ("BatchedDataLoader", "torch")])
def test_loader_order_follows_one_global_seed(url, make, kind, counts):
    # recorded from 0.12.1: DataLoader's order follows numpy's global seed (np.random.seed), BatchedDataLoader's
    # torch's (torch.manual_seed); the same seed -> the same order, the other seeds (and random's) do not matter
    def order(seed, other_seed, random_seed=0):
        torch_seed, numpy_seed = (other_seed, seed) if counts == "numpy" else (seed, other_seed)
        return _order(url, kind, make, torch_seed, numpy_seed, random_seed=random_seed)

    first = order(1, 1)
    assert sorted(first) == list(range(60)) and first != list(range(60))
    assert order(1, 1) == first
    assert order(1, 2, random_seed=5) == first
    assert order(2, 1) != first


@pytest.mark.parametrize("kind", ["DataLoader", "BatchedDataLoader"])
def test_a_reader_seed_still_fixes_the_order_whatever_the_global_seeds(url, kind):
    assert _order(url, kind, make_reader, 1, 1, seed=7) == _order(url, kind, make_reader, 2, 2, seed=7)


@pytest.mark.parametrize("kind", ["DataLoader", "BatchedDataLoader"])
def test_the_drawn_seed_is_resumed_whatever_the_global_seeds_of_the_new_process(url, kind):
    torch.manual_seed(3)
    np.random.seed(3)
    with _make(url, kind, make_batch_reader) as loader:
        expected = [torch.cat([b["id"] for b in loader]).tolist() for _ in range(2)]  # two passes

    torch.manual_seed(3)
    np.random.seed(3)
    with _make(url, kind, make_batch_reader) as loader:
        it = iter(loader)
        seen = [next(it)["id"] for _ in range(2)]
        state = loader.state_dict()
    torch.manual_seed(99)  # the new process seeds otherwise (or not at all)
    np.random.seed(99)
    with _make(url, kind, make_batch_reader) as loader:
        loader.load_state_dict(state)
        seen += list(b["id"] for b in loader)
        second = torch.cat([b["id"] for b in loader]).tolist()
    assert torch.cat(seen).tolist() == expected[0]
    assert second == expected[1]


def test_a_state_with_a_malformed_shuffle_seed_is_refused(url):
    from petastorm.adapters.state_codec import with_digest
    from petastorm.errors import PetastormStateError

    with _make(url, "DataLoader", make_reader) as loader:
        it = iter(loader)
        next(it)
        state = dict(loader.state_dict())
    state.pop("digest")
    state["shuffle_seed"] = "x"
    with _make(url, "DataLoader", make_reader) as loader, \
            pytest.raises(PetastormStateError, match="shuffle_seed"):
        loader.load_state_dict(with_digest(state))


@pytest.mark.parametrize("kind", ["DataLoader", "BatchedDataLoader"])
def test_a_resume_over_a_reader_made_without_the_saved_seed_shuffles_its_later_passes_alike(url, kind):
    # the reader adopts the saved seed (make_reader(seed=None) resumes a seed=7 state); the loader's later passes
    # must shuffle as the uninterrupted run's, seeded by 7, not by a seed drawn now
    def make(seed):
        reader = make_batch_reader(url, schema_fields=["id"], seed=seed, num_epochs=1, **_KW)
        return (DataLoader if kind == "DataLoader" else BatchedDataLoader)(reader, batch_size=10,
                                                                          shuffling_queue_capacity=20)

    with make(7) as loader:
        expected = [torch.cat([b["id"] for b in loader]).tolist() for _ in range(2)]
    with make(7) as loader:
        it = iter(loader)
        seen = [next(it)["id"] for _ in range(2)]
        state = loader.state_dict()
    with make(None) as loader:
        loader.load_state_dict(state)
        seen += list(b["id"] for b in loader)
        second = torch.cat([b["id"] for b in loader]).tolist()
    assert torch.cat(seen).tolist() == expected[0]
    assert second == expected[1]
