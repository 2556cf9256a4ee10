"""ColumnShufflingBuffer: row-major blocks, batches by random slots, emptied slots refilled by the next add."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from petastorm.adapters import ColumnShufflingBuffer
from petastorm.errors import PetastormArgumentError, PetastormSchemaError, PetastormStateError


def _cols(start, n):
    ids = np.arange(start, start + n, dtype=np.int64)
    # "id" and "triple" share a row-major block (same dtype and cell), "pair" and "name" have their own
    return {"id": ids, "pair": np.stack([ids, -ids], axis=1), "name": np.array([f"r{i}" for i in ids]),
            "triple": 3 * ids}


def _check_rows_intact(batch):
    assert np.array_equal(batch["triple"], 3 * batch["id"])
    assert np.array_equal(batch["pair"][:, 0], batch["id"])
    assert np.array_equal(batch["pair"][:, 1], -batch["id"])
    assert [str(s) for s in batch["name"]] == [f"r{i}" for i in batch["id"]]


@settings(max_examples=150, deadline=None)
@given(capacity=st.integers(1, 60), ops=st.lists(st.tuples(st.booleans(), st.integers(1, 70)), max_size=40),
       seed=st.integers(0, 2 ** 32), rounds=st.integers(1, 4))
def test_every_row_added_comes_out_exactly_once_with_its_own_cells(capacity, ops, seed, rounds):
    buf = ColumnShufflingBuffer(capacity, seed, rounds)
    added, out = 0, []
    for is_add, n in ops:
        if is_add:
            n = min(n, buf.free)
            buf.add(_cols(added, n))
            added += n
        else:
            before = buf.size
            batch = buf.retrieve(n)
            if added == 0:  # nothing ever added: no column known yet
                assert batch == {}
                continue
            assert len(batch["id"]) == min(n, before) and buf.size == before - len(batch["id"])
            _check_rows_intact(batch)
            out.append(batch["id"])
        assert 0 <= buf.free <= capacity and buf.size >= capacity - buf.free
    if added:
        out.append(buf.retrieve(buf.size)["id"])
    ids = np.concatenate(out) if out else np.array([])
    assert sorted(ids.tolist()) == list(range(added))


@settings(max_examples=80, deadline=None)
@given(capacity=st.integers(1, 40), sizes=st.lists(st.integers(1, 50), min_size=1, max_size=20),
       batch=st.integers(1, 45), cut=st.integers(0, 30), seed=st.integers(0, 1000), rounds=st.integers(1, 4))
def test_a_restored_buffer_continues_with_the_same_rows_in_the_same_order(capacity, sizes, batch, cut, seed, rounds):
    def run(restore_at):
        buf = ColumnShufflingBuffer(capacity, seed, rounds)
        added, out, step = 0, [], 0
        for n in sizes:
            while n:
                if step == restore_at:
                    state = buf.state_dict()
                    buf = ColumnShufflingBuffer(capacity, seed=12345, rounds=rounds)  # the state's RNG wins
                    buf.load_state_dict(state)
                step += 1
                k = min(n, buf.free)
                buf.add(_cols(added, k))
                added, n = added + k, n - k
                if not buf.free:
                    out.extend(buf.retrieve(batch)["id"].tolist())
        while buf.size:
            out.extend(buf.retrieve(batch)["id"].tolist())
        return out

    assert run(cut) == run(-1)


def test_order_is_shuffled_and_seeded():
    def order(seed):
        buf = ColumnShufflingBuffer(1000, seed)
        buf.add(_cols(0, 1000))
        return np.concatenate([buf.retrieve(100)["id"] for _ in range(10)]).tolist()

    assert order(1) == order(1)
    assert order(1) != order(2)
    assert order(1) != list(range(1000))


def test_retrieved_batches_are_new_arrays_the_buffer_never_writes_again():
    buf = ColumnShufflingBuffer(10, 0)
    buf.add(_cols(0, 10))
    first = buf.retrieve(5)
    kept = {k: v.copy() for k, v in first.items()}
    buf.add(_cols(10, 5))
    buf.retrieve(10)
    for k in kept:
        assert np.array_equal(first[k], kept[k])


def test_longer_strings_later_widen_the_column():
    buf = ColumnShufflingBuffer(4, 0)
    buf.add({"s": np.array(["a", "b"])})
    buf.add({"s": np.array(["longer", "longest"])})
    assert sorted(buf.retrieve(4)["s"].tolist()) == ["a", "b", "longer", "longest"]


def test_bad_input_is_named():
    with pytest.raises(PetastormArgumentError, match="capacity"):
        ColumnShufflingBuffer(0)
    buf = ColumnShufflingBuffer(3)
    with pytest.raises(PetastormArgumentError, match="only 3 of 3 are free"):
        buf.add(_cols(0, 4))
    buf.add({"a": np.zeros((2, 3))})
    with pytest.raises(PetastormSchemaError, match="field 'a' has cells of shape"):
        buf.add({"a": np.zeros((1, 4))})
    big = ColumnShufflingBuffer(10, 0)
    big.add(_cols(0, 10))
    with pytest.raises(PetastormStateError, match="more than this buffer's capacity 3"):
        ColumnShufflingBuffer(3).load_state_dict(big.state_dict())


def test_grow_keeps_the_rows():
    buf = ColumnShufflingBuffer(3, 0)
    buf.add(_cols(0, 3))
    buf.grow(8)
    buf.add(_cols(3, 5))
    assert sorted(buf.retrieve(8)["id"].tolist()) == list(range(8))


def test_batches_keep_the_column_order_of_the_input():
    buf = ColumnShufflingBuffer(4, 0)
    buf.add({"a": np.zeros(4, np.int64), "b": np.zeros(4, np.float32), "c": np.zeros(4, np.int64),
             "d": np.array(["x"] * 4)})
    assert list(buf.retrieve(2)) == ["a", "b", "c", "d"]
    assert list(buf.state_dict()["rows"]) == ["a", "b", "c", "d"]


def test_rows_refilled_into_the_slots_a_batch_emptied_are_drawn_as_often_as_the_others():
    # fed as fast as drained (add 2, retrieve 2 of 8): every row leaves at each retrieve with probability 1/4,
    # whether it was written into a slot just emptied or is older: its age at exit is geometric, mean 4
    buf = ColumnShufflingBuffer(8, 7)
    buf.add({"id": np.arange(8), "born": np.zeros(8, np.int64)})
    ages, added = [], 8
    for step in range(1, 20001):
        out = buf.retrieve(2)
        ages.extend((step - out["born"]).tolist())
        buf.add({"id": np.arange(added, added + 2), "born": np.full(2, step, np.int64)})
        added += 2
    ages = np.array(ages[1000:])
    assert abs(ages.mean() - 4.0) < 0.15
    assert abs(np.mean(ages == 1) - 0.25) < 0.015 and abs(np.mean(ages == 2) - 0.1875) < 0.015


@pytest.mark.parametrize("cell, columns", [((), 3), ((125,), 2), ((600,), 2)])
def test_refilled_rows_keep_their_cells_for_small_staged_and_large_rows(cell, columns):
    # (125,) float32 x 2 columns: 1,000-byte rows, staged 262 rows at a time; (600,): 4,800-byte rows, per column
    def batch(start, n):
        ids = np.arange(start, start + n)
        base = ids.reshape((n,) + (1,) * len(cell)) + np.zeros(cell)
        return {f"c{j}": (base * (j + 1)).astype(np.float32) for j in range(columns)}

    buf = ColumnShufflingBuffer(1000, 3)
    buf.add(batch(0, 1000))
    seen, added = [], 1000
    for _ in range(6):
        out = buf.retrieve(700)
        for j in range(columns):
            assert np.array_equal(out[f"c{j}"], out["c0"] * (j + 1))
            assert out[f"c{j}"].flags.c_contiguous
        seen.extend(out["c0"].reshape(700, -1)[:, 0].astype(int).tolist())
        buf.add(batch(added, 700))
        added += 700
    seen.extend(buf.retrieve(1000)["c0"].reshape(1000, -1)[:, 0].astype(int).tolist())
    assert sorted(seen) == list(range(added))


def test_a_state_with_empty_slots_resumes_exactly_in_a_buffer_of_smaller_capacity():
    # the batched RandomShufflingBuffer grows its buffer by doubling: a resumed one starts smaller
    def run(resume):
        buf = ColumnShufflingBuffer(20, 5)
        buf.add(_cols(0, 20))
        out = buf.retrieve(6)["id"].tolist()
        if resume:
            state = buf.state_dict()
            assert state["rows"]["id"].shape == (14,) and len(state["empty_slots"]) == 6
            buf = ColumnShufflingBuffer(16, 0)
            buf.load_state_dict(state)
            assert buf.size == 14 and buf.capacity == 20
        buf.add(_cols(20, 6))
        while buf.size:
            batch = buf.retrieve(4)
            _check_rows_intact(batch)
            out.extend(batch["id"].tolist())
        return out

    assert run(True) == run(False)
    assert sorted(run(True)) == list(range(26))


def test_a_state_without_empty_slots_loads_and_bad_empty_slots_are_refused():
    buf = ColumnShufflingBuffer(10, 0)
    buf.add(_cols(0, 10))
    state = buf.state_dict()
    del state["empty_slots"]  # a state saved before empty slots were kept
    restored = ColumnShufflingBuffer(10, 1)
    restored.load_state_dict(state)
    assert restored.retrieve(10)["id"].tolist() == buf.retrieve(10)["id"].tolist()
    buf.add(_cols(10, 10))
    buf.retrieve(3)
    state = buf.state_dict()
    state["empty_slots"] = np.array([0, 0, 1])
    with pytest.raises(PetastormStateError, match="empty_slots"):
        ColumnShufflingBuffer(10).load_state_dict(state)


def test_take_copies_rows_by_index_or_slice_and_leaves_them_in_place():
    buf = ColumnShufflingBuffer(10, 0)
    buf.add(_cols(0, 10))
    by_index = buf.take(np.array([7, 2, 2]))
    _check_rows_intact(by_index)
    assert by_index["id"].tolist() == [7, 2, 2] and buf.size == 10
    by_slice = buf.take(slice(8, 20))
    assert by_slice["id"].tolist() == [8, 9]
    for batch in (by_index, by_slice):
        for col in batch.values():
            col[...] = col[0]  # writing to a taken batch leaves the buffer's rows alone
    assert sorted(buf.retrieve(10)["id"].tolist()) == list(range(10))


def test_a_round_draws_the_rows_of_several_batches_at_once_and_serves_them_as_views():
    buf = ColumnShufflingBuffer(64, 3, rounds=4)
    buf.add(_cols(0, 64))
    first = buf.retrieve(4)
    assert buf.free == 16 and buf.size == 60  # the whole round left the slots; 12 of its rows wait
    buf.add(_cols(64, 16))  # refilled at once
    batches = [first] + [buf.retrieve(4) for _ in range(3)]
    ids = np.concatenate([b["id"] for b in batches])
    assert len(set(ids.tolist())) == 16 and ids.max() < 64  # the round came from the 64 rows held when drawn
    for batch in batches:
        _check_rows_intact(batch)
        assert all(col.flags.c_contiguous for col in batch.values())
        assert np.shares_memory(batch["id"], first["id"].base)  # views of the round's arrays
    assert buf.size == 64 and buf.free == 0
    assert not np.isin(buf.retrieve(4)["id"], ids).any()  # the next round is drawn from the refilled buffer


def test_round_batches_reach_torch_without_a_copy():
    import torch

    buf = ColumnShufflingBuffer(1000, 0, rounds=8)
    buf.add({"x": np.arange(1000, dtype=np.float32), "y": np.arange(1000, dtype=np.float32)})
    buf.retrieve(32)
    batch = buf.retrieve(32)  # the second batch of the round: a slice
    for col in batch.values():
        assert torch.from_numpy(col).data_ptr() == col.ctypes.data


def test_a_state_taken_inside_a_round_resumes_exactly_even_with_every_slot_empty():
    only_round = []

    def run(cut):
        buf = ColumnShufflingBuffer(24, 11, rounds=3)
        out, added = [], 0
        for step in range(15):
            if step == cut:
                state = buf.state_dict()
                if state["round_rows"] and state["round_rows"] == len(state["rows"]["id"]):
                    only_round.append(cut)
                buf = ColumnShufflingBuffer(24, 0, rounds=3)
                buf.load_state_dict(state)
            if added < 60 and buf.free:
                k = min(buf.free, 60 - added)
                buf.add(_cols(added, k))
                added += k
            batch = buf.retrieve(4)
            _check_rows_intact(batch)
            out.extend(batch["id"].tolist())
        return out

    full = run(-1)
    assert sorted(full) == list(range(60))
    for cut in range(15):
        assert run(cut) == full, cut
    assert only_round  # some state held rows of a round only (the reader ended, the slots emptied)


def test_a_state_with_a_round_keeps_its_rows_in_rows_and_bad_round_counts_are_refused():
    buf = ColumnShufflingBuffer(40, 2, rounds=4)
    buf.add(_cols(0, 40))
    served = buf.retrieve(5)["id"].tolist()
    state = buf.state_dict()
    # every row held is in "rows" (elastic resumes read them there): the 25 in the slots, then the round's 15
    assert state["round_rows"] == 15 and sorted(state["rows"]["id"].tolist() + served) == list(range(40))
    for bad in (-1, 41, 2.5, True):
        with pytest.raises(PetastormStateError, match="round_rows"):
            ColumnShufflingBuffer(40, rounds=4).load_state_dict({**state, "round_rows": bad})
