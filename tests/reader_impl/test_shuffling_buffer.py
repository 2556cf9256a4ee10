"""Shuffling buffers: capacity rules of the original, seeded determinism, state save and restore."""
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from petastorm.errors import PetastormStateError
from petastorm.reader_impl.shuffling_buffer import NoopShufflingBuffer, RandomShufflingBuffer


def _seeded(capacity, min_after_retrieve, seed=None):
    """A random buffer with no hard limit above ``capacity`` (``extra_capacity=None``)."""
    return RandomShufflingBuffer(capacity, min_after_retrieve, extra_capacity=None, random_seed=seed)


def _drain(buf, items, chunk):
    """Feed ``items`` in chunks, retrieving whenever allowed; return the order retrieved."""
    out = []
    pos = 0
    while pos < len(items):
        while buf.can_add() and pos < len(items):
            buf.add_many(items[pos:pos + chunk])
            pos += chunk
        while buf.can_retrieve() and not buf.can_add():
            out.append(buf.retrieve())
    buf.finish()
    while buf.can_retrieve():
        out.append(buf.retrieve())
    return out


def test_noop_buffer_is_fifo():
    buf = NoopShufflingBuffer()
    assert buf.can_add() and not buf.can_retrieve()
    buf.add_many([1, 2, 3])
    assert buf.size == 3 and [buf.retrieve() for _ in range(3)] == [1, 2, 3]
    buf.finish()
    assert buf.can_add() and not buf.can_retrieve()
    with pytest.raises(RuntimeError, match="empty"):
        buf.retrieve()


def test_capacity_and_min_after_retrieve_rules_match_the_original():
    buf = RandomShufflingBuffer(5, 2, extra_capacity=3, random_seed=0)
    assert (buf.can_add(), buf.can_retrieve(), buf.size) == (True, False, 0)
    buf.add_many([1])
    assert not buf.can_retrieve()
    with pytest.raises(RuntimeError, match="Can not dequeue"):
        buf.retrieve()
    buf.add_many([2])
    assert (buf.can_add(), buf.can_retrieve()) == (True, True)
    buf.add_many([3, 4, 5, 6, 7])  # one add_many may go past capacity, up to capacity + extra_capacity
    assert (buf.can_add(), buf.can_retrieve(), buf.size) == (False, True, 7)
    with pytest.raises(RuntimeError, match="Can not enqueue"):
        buf.add_many([8])


def test_hard_limit_of_capacity_plus_extra():
    buf = RandomShufflingBuffer(5, 2, extra_capacity=3)
    buf.add_many([1, 2, 3, 4])
    with pytest.raises(RuntimeError, match="Current size: 4, new size 9, maximum allowed: 8"):
        buf.add_many([5, 6, 7, 8, 9])
    assert buf.size == 4


def test_finish_allows_draining_below_min_after_retrieve():
    buf = RandomShufflingBuffer(5, 3, random_seed=1)
    buf.add_many([1, 2])
    assert not buf.can_retrieve()
    buf.finish()
    assert not buf.can_add()
    with pytest.raises(RuntimeError, match="after done_adding"):
        buf.add_many([3])
    assert sorted([buf.retrieve(), buf.retrieve()]) == [1, 2]
    assert not buf.can_retrieve() and buf.size == 0


def test_empty_buffer_never_claims_it_can_retrieve():
    buf = RandomShufflingBuffer(5, 0)
    assert not buf.can_retrieve()


def test_random_buffer_without_extra_capacity_has_no_hard_limit():
    buf = _seeded(10, 5, seed=3)
    buf.add_many(range(10_000))  # one big row group
    assert buf.size == 10_000 and not buf.can_add()


def test_same_seed_same_order_and_different_seed_differs():
    items = list(range(500))
    a = _drain(_seeded(100, 50, seed=7), items, 30)
    b = _drain(_seeded(100, 50, seed=7), items, 30)
    c = _drain(_seeded(100, 50, seed=8), items, 30)
    assert a == b and a != c
    assert sorted(a) == items, "every item comes out exactly once"
    assert a != items


def test_shuffle_mixes_items_across_the_window():
    items = list(range(2000))
    out = _drain(_seeded(500, 400, seed=0), items, 100)
    displacement = np.abs(np.asarray(out) - np.arange(len(out)))
    assert displacement.mean() > 50
    # the first items out come from the whole first window, not just its head
    assert max(out[:50]) > 250


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 300), st.integers(1, 50), st.integers(0, 50), st.integers(1, 40), st.integers(0, 2 ** 32))
def test_every_item_comes_out_once(n, capacity, min_after, chunk, seed):
    min_after = min(min_after, capacity)
    items = list(range(n))
    out = _drain(_seeded(capacity, min_after, seed=seed), items, chunk)
    assert sorted(out) == items


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 200), st.integers(0, 2 ** 16))
def test_resuming_from_a_state_continues_the_same_sequence(stop_after, seed):
    items = list(range(300))
    full = _drain(_seeded(40, 20, seed=seed), items, 7)

    buf = _seeded(40, 20, seed=seed)
    out, pos = [], 0
    state = None
    while len(out) < stop_after:
        while buf.can_add() and pos < len(items):
            buf.add_many(items[pos:pos + 7])
            pos += 7
        while buf.can_retrieve() and not buf.can_add() and len(out) < stop_after:
            out.append(buf.retrieve())
    state = json.loads(json.dumps(buf.state_dict()))  # JSON-safe when the items are

    resumed = _seeded(40, 20, seed=12345)  # the seed comes from the state
    resumed.load_state_dict(state)
    rest = []
    while pos < len(items):
        while resumed.can_add() and pos < len(items):
            resumed.add_many(items[pos:pos + 7])
            pos += 7
        while resumed.can_retrieve() and not resumed.can_add():
            rest.append(resumed.retrieve())
    resumed.finish()
    while resumed.can_retrieve():
        rest.append(resumed.retrieve())
    assert out + rest == full


def test_state_from_another_configuration_is_refused():
    state = _seeded(40, 20, seed=1).state_dict()
    with pytest.raises(PetastormStateError, match="capacity 40.*resume with the same shuffling options"):
        _seeded(50, 20).load_state_dict(state)
    with pytest.raises(PetastormStateError, match="missing"):
        _seeded(40, 20).load_state_dict({"items": []})


def test_noop_state_round_trip():
    buf = NoopShufflingBuffer()
    buf.add_many([1, 2, 3])
    buf.retrieve()
    other = NoopShufflingBuffer()
    other.load_state_dict(buf.state_dict())
    assert [other.retrieve(), other.retrieve()] == [2, 3]


def test_argument_validation():
    with pytest.raises(ValueError, match="shuffling_buffer_capacity"):
        RandomShufflingBuffer(0, 0)
    with pytest.raises(ValueError, match="min_after_retrieve"):
        _seeded(5, -1)
