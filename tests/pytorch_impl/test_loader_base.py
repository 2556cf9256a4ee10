"""petastorm.pytorch_impl.loader_base: the seeds every torch loader gives its shuffling buffer per pass, and the
checks of a saved state (changed, cut or malformed states are PetastormStateErrors naming what is wrong)."""
import copy

import pytest

from petastorm import make_batch_reader, make_reader
from petastorm.adapters.buffer_quality import pass_seed
from petastorm.errors import PetastormStateError
from petastorm.pytorch import BatchedDataLoader, DataLoader, InMemBatchedDataLoader
from petastorm.pytorch_impl.loader_base import reader_seed


def test_pass_seed_keeps_every_bit_of_the_seed_and_the_pass():
    assert pass_seed(None, 3) is None
    assert pass_seed(5, 0) == [5, 0] and pass_seed(5, 1) == [5, 1]
    # seeds that differ above bit 63 (or by sign) are different seeds (the rows path kept 63 bits: they collided)
    assert pass_seed(-1, 0) != pass_seed((1 << 63) - 1, 0)
    assert pass_seed(7 + (1 << 64), 0) != pass_seed(7, 0)
    assert all(v >= 0 for v in pass_seed(-(1 << 100), 2))  # numpy's SeedSequence refuses negative entropy


def test_reader_seed_is_the_seed_the_reader_plans_with(synthetic_dataset):
    with make_reader(synthetic_dataset, seed=11, reader_pool_type="dummy") as r:
        assert reader_seed(r) == 11
    with make_reader(synthetic_dataset, reader_pool_type="dummy") as r:  # seed=None: the seed it drew
        assert isinstance(reader_seed(r), int)
    assert reader_seed(object()) is None


def _orders(loader, passes=2):
    return [[int(i) for b in loader for i in (b["id"] if isinstance(b, dict) else [row["id"] for row in b])]
            for _ in range(passes)]


@pytest.mark.parametrize("make_loader", [
    lambda r: DataLoader(r, batch_size=7, shuffling_queue_capacity=40),
    lambda r: DataLoader(r, batch_size=7, shuffling_queue_capacity=40, collate_fn=list),
    lambda r: BatchedDataLoader(r, batch_size=7, shuffling_queue_capacity=40),
], ids=["DataLoader", "DataLoader-collate_fn", "BatchedDataLoader"])
def test_each_pass_reshuffles_and_a_seeded_reader_repeats_every_pass(synthetic_dataset, make_loader):
    def run():
        with make_batch_reader(synthetic_dataset, schema_fields=["id"], seed=3, reader_pool_type="dummy",
                               shuffle_row_groups=False) as r:
            return _orders(make_loader(r))

    first, second = run()
    assert sorted(first) == sorted(second) == list(range(100))
    assert first != second                 # the buffer is seeded per pass
    assert run() == [first, second]        # and the same on every run with the same reader seed


# --- states changed, cut or malformed ----------------------------------------------------------------------------

LOADERS = {
    "DataLoader": lambda r: DataLoader(r, batch_size=3, shuffling_queue_capacity=8),
    "DataLoader-collate_fn": lambda r: DataLoader(r, batch_size=3, shuffling_queue_capacity=8, collate_fn=list),
    "BatchedDataLoader": lambda r: BatchedDataLoader(r, batch_size=3, shuffling_queue_capacity=8),
    "InMemBatchedDataLoader": lambda r: InMemBatchedDataLoader(r, batch_size=3, num_epochs=2, shuffle=True),
}


def _reader(url):
    return make_batch_reader(url, schema_fields=["id", "value"], seed=1, reader_pool_type="dummy")


def _state_after_two_batches(url, kind):
    with _reader(url) as r:
        loader = LOADERS[kind](r)
        it = iter(loader)
        next(it), next(it)
        state = loader.state_dict()
        del it
    return state


def _load(url, kind, state):
    with _reader(url) as r:
        loader = LOADERS[kind](r)
        loader.load_state_dict(state)
        return [b for b in loader]


def _leaves(obj, path=()):
    if isinstance(obj, dict) and obj:
        for k, v in obj.items():
            yield from _leaves(v, path + (k,))
    elif isinstance(obj, list) and obj:
        for i, v in enumerate(obj):
            yield from _leaves(v, path + (i,))
    else:
        yield path


@pytest.mark.parametrize("kind", list(LOADERS))
def test_a_state_changed_or_cut_after_state_dict_is_refused(synthetic_dataset, kind):
    # before: a buffered row or a prefetched batch dropped from the state resumed with those rows lost, an edited
    # count or RNG word resumed elsewhere, and other edits failed with KeyError/TypeError/IndexError
    state = _state_after_two_batches(synthetic_dataset, kind)
    leaves = [p for p in _leaves(state) if p and p[0] == "body"]
    for path in leaves[::max(1, len(leaves) // 12)] + [leaves[-1]]:
        changed = copy.deepcopy(state)
        parent = changed
        for key in path[:-1]:
            parent = parent[key]
        del parent[path[-1]]
        with pytest.raises(PetastormStateError, match=r"state was changed or cut after state_dict\(\)"):
            _load(synthetic_dataset, kind, changed)
    assert _load(synthetic_dataset, kind, copy.deepcopy(state))  # unchanged: resumes


@pytest.mark.parametrize("kind", list(LOADERS))
@pytest.mark.parametrize("key, value, words", [
    ("passes_done", None, "'passes_done' must be an integer >= 0, got None"),
    ("passes_done", -1, "'passes_done' must be an integer >= 0, got -1"),
    ("in_pass", "yes", "'in_pass' must be True or False, got 'yes'"),
    ("body", None, "'body' must be a dict of the running pass, got NoneType"),
])
def test_a_malformed_state_with_a_new_digest_names_what_is_wrong(synthetic_dataset, kind, key, value, words):
    # a state edited by hand and digested again: each malformed part is a PetastormStateError naming it
    from petastorm.adapters.state_codec import with_digest

    state = _state_after_two_batches(synthetic_dataset, kind)
    state[key] = value
    state = with_digest(state)
    with pytest.raises(PetastormStateError, match=f"malformed {kind.split('-')[0]} state: {words}"):
        _load(synthetic_dataset, kind, state)


@pytest.mark.parametrize("kind, path", [
    ("DataLoader", ("body", "pipeline", "batcher")),
    ("DataLoader", ("body", "pipeline", "ready")),
    ("BatchedDataLoader", ("body", "pipeline", "batches_served")),
    ("DataLoader-collate_fn", ("body", "buffer")),
    ("DataLoader-collate_fn", ("body", "partial_batch")),
    ("InMemBatchedDataLoader", ("body", "epoch")),
    ("InMemBatchedDataLoader", ("body", "batch")),
])
def test_malformed_parts_of_a_pass_state_are_state_errors(synthetic_dataset, kind, path):
    from petastorm.adapters.state_codec import with_digest

    for value in ["garbage", -7]:
        state = _state_after_two_batches(synthetic_dataset, kind)
        del state["digest"]
        parent = state
        for key in path[:-1]:
            parent = parent[key]
        parent[path[-1]] = value
        with pytest.raises(PetastormStateError, match="malformed"):
            _load(synthetic_dataset, kind, with_digest(state))


def test_a_make_jax_iterator_state_is_named_when_given_to_a_torch_loader(synthetic_dataset):
    from petastorm.jax import make_jax_iterator

    with _reader(synthetic_dataset) as r, make_jax_iterator(r, batch_size=3) as batches:
        next(batches)
        state = batches.state_dict()
    with pytest.raises(PetastormStateError, match="the state was saved from make_jax_iterator, this is a DataLoader"):
        _load(synthetic_dataset, "DataLoader", state)


# --- state_dict() after leaving a pass early -----------------------------------------------------------------------

def _ids(batch):
    return [int(i) for i in batch["id"]]


LEFT_EARLY = {
    "DataLoader": lambda r: DataLoader(r, batch_size=3, shuffling_queue_capacity=8),
    "DataLoader-collate_fn": lambda r: DataLoader(r, batch_size=3, shuffling_queue_capacity=8,
                                                  collate_fn=lambda rows: {"id": [row["id"] for row in rows]}),
    "BatchedDataLoader": lambda r: BatchedDataLoader(r, batch_size=3, shuffling_queue_capacity=8),
    "InMemBatchedDataLoader": lambda r: InMemBatchedDataLoader(r, batch_size=3, num_epochs=2, shuffle=True),
}


@pytest.mark.parametrize("kind", list(LEFT_EARLY))
@pytest.mark.parametrize("leave", ["break", "close", "context manager"])
def test_a_state_taken_after_leaving_the_loop_resumes_exactly(synthetic_dataset, kind, leave):
    # the usual "train N steps, break, checkpoint": before, the state of a pass left early said "between passes"
    # with the reader's position, so the rows in the shuffling buffer and the prefetched batches were lost at the
    # resume (9 + 5 of 23 rows seen); the InMemBatchedDataLoader resumed with nothing
    make = LEFT_EARLY[kind]
    with _reader(synthetic_dataset) as r:
        full = [i for b in make(r) for i in _ids(b)]
    with _reader(synthetic_dataset) as r:
        loader = make(r)
        head = []
        if leave == "break":
            for step, batch in enumerate(loader):
                head += _ids(batch)
                if step == 4:
                    break
        else:
            it = iter(loader)
            head += [i for _ in range(5) for i in _ids(next(it))]
            if leave == "close":
                it.close()
            else:
                loader.__exit__(None, None, None)  # leaving `with loader:` in the middle of a pass
        state = loader.state_dict()
    assert state["in_pass"] is True
    with _reader(synthetic_dataset) as r:
        loader = make(r)
        loader.load_state_dict(state)
        tail = [i for b in loader for i in _ids(b)]
    assert head + tail == full


def test_a_state_after_a_failed_pass_is_refused_instead_of_losing_rows(synthetic_dataset):
    calls = []

    def collate(rows):
        calls.append(1)
        if len(calls) == 3:
            raise ValueError("bad batch")
        return {"id": [row["id"] for row in rows]}

    with _reader(synthetic_dataset) as r:
        loader = DataLoader(r, batch_size=3, collate_fn=collate)
        with pytest.raises(ValueError, match="bad batch"):
            list(loader)
        with pytest.raises(PetastormStateError, match=r"the last pass failed with ValueError\('bad batch'\)"):
            loader.state_dict()


def test_a_state_taken_after_ctrl_c_in_the_collate_fn_resumes_exactly(synthetic_dataset):
    # Ctrl-C lands in the collate_fn (it runs in the training loop's thread): before, the rows handed to it were
    # gone from the state saved on KeyboardInterrupt (a batch lost at the resume)
    def collate(rows):
        return {"id": [row["id"] for row in rows]}

    calls = []

    def interrupted(rows):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return collate(rows)

    with _reader(synthetic_dataset) as r:
        full = [i for b in DataLoader(r, batch_size=3, shuffling_queue_capacity=8, collate_fn=collate)
                for i in _ids(b)]
    with _reader(synthetic_dataset) as r:
        loader = DataLoader(r, batch_size=3, shuffling_queue_capacity=8, collate_fn=interrupted)
        head = []
        with pytest.raises(KeyboardInterrupt):
            for batch in loader:
                head += _ids(batch)
        state = loader.state_dict()
    with _reader(synthetic_dataset) as r:
        loader = DataLoader(r, batch_size=3, shuffling_queue_capacity=8, collate_fn=interrupted)
        loader.load_state_dict(state)
        tail = [i for b in loader for i in _ids(b)]
    assert len(head) == 6 and head + tail == full
