"""Batcher: reader output re-cut to batch_size rows (plain or through the column shuffling buffer), and its
exact resume: every row exactly once, for random reader batch sizes, batch sizes, capacities and checkpoints."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from petastorm.adapters import Batcher, ColumnShufflingBuffer, ReaderSource, rows_to_columns
from petastorm.adapters.batcher import shuffle_buffer_layout
from petastorm.errors import PetastormStateError
from petastorm.reader_impl.shuffle_quality import sequence_quality

from ._list_reader import ListReader, make_chunks


def _drain(batcher, limit=None):
    out = []
    while limit is None or len(out) < limit:
        b = batcher.next_batch()
        if b is None:
            break
        assert np.array_equal(b["vec"][:, 0], b["id"] * 2)  # rows keep their own cells
        out.append(b["id"].tolist())
    return out


@settings(max_examples=120, deadline=None)
@given(sizes=st.lists(st.integers(1, 40), max_size=12), batch_size=st.integers(1, 50),
       capacity=st.sampled_from([0, 0, 1, 5, 17, 64, 200]), drop_last=st.booleans(), batched=st.booleans(),
       seed=st.integers(0, 100))
def test_every_row_exactly_once_in_batches_of_batch_size(sizes, batch_size, capacity, drop_last, batched, seed):
    batches = _drain(Batcher(ReaderSource(ListReader(make_chunks(sizes), batched)), batch_size, capacity,
                             seed=seed, drop_last=drop_last))
    total = sum(sizes)
    assert all(len(b) == batch_size for b in batches[:-1])
    ids = [i for b in batches for i in b]
    if drop_last:
        assert len(ids) == total - total % batch_size
        assert all(len(b) == batch_size for b in batches)
        if capacity == 0:
            assert ids == list(range(len(ids)))
    else:
        assert sorted(ids) == list(range(total))
        if capacity == 0:
            assert ids == list(range(total))


@settings(max_examples=120, deadline=None)
@given(sizes=st.lists(st.integers(1, 40), min_size=1, max_size=12), batch_size=st.integers(1, 50),
       capacity=st.sampled_from([0, 1, 5, 17, 64, 200]), cut=st.integers(0, 30), batched=st.booleans(),
       seed=st.integers(0, 100))
def test_resume_at_any_batch_continues_the_uninterrupted_sequence(sizes, batch_size, capacity, cut, batched,
                                                                   seed):
    chunks = make_chunks(sizes)
    full = _drain(Batcher(ReaderSource(ListReader(chunks, batched)), batch_size, capacity, seed=seed))
    first = Batcher(ReaderSource(ListReader(chunks, batched)), batch_size, capacity, seed=seed)
    head = _drain(first, limit=cut)
    state = first.state_dict()
    resumed = Batcher(ReaderSource(ListReader(chunks, batched)), batch_size, capacity, seed=999)
    resumed.load_state_dict(state)
    assert head + _drain(resumed) == full


def test_min_after_retrieve_keeps_rows_behind_while_the_reader_has_more():
    b = Batcher(ReaderSource(ListReader(make_chunks([10] * 10))), 4, 20, min_after_retrieve=30, seed=0)
    b.next_batch()
    assert b.rows_held == 36  # buffer of 34 rows filled from 4 reader batches, 4 retrieved; 6 rows wait


def test_chunk_fn_runs_on_each_reader_batch_before_batching():
    seen = []

    def double(cols):
        seen.append(len(cols["id"]))
        return {k: v * 2 for k, v in cols.items()}

    b = Batcher(ReaderSource(ListReader(make_chunks([7, 7]))), 5, chunk_fn=double)
    batches = []
    while (x := b.next_batch()) is not None:
        batches.append(x["id"].tolist())
    assert seen == [7, 7]
    assert [i for x in batches for i in x] == [2 * i for i in range(14)]


def test_rows_to_columns_stacks_arrays_and_keeps_ragged_cells_as_objects():
    rows = [(1, np.zeros(2), np.zeros(i)) for i in range(1, 4)]
    cols = rows_to_columns(rows, ["a", "b", "c"])
    assert cols["a"].dtype == np.int64 and cols["b"].shape == (3, 2) and cols["c"].dtype == object


def test_a_state_with_a_buffer_refused_by_a_batcher_without_one():
    chunks = make_chunks([10])
    shuffled = Batcher(ReaderSource(ListReader(chunks)), 4, 8, seed=0)
    shuffled.next_batch()
    with pytest.raises(PetastormStateError, match="shuffling_queue_capacity differs"):
        Batcher(ReaderSource(ListReader(chunks)), 4, 0).load_state_dict(shuffled.state_dict())


def test_a_state_saves_where_to_re_read_the_last_reader_batch_not_its_rows():
    chunks = make_chunks([1000, 1000])
    b = Batcher(ReaderSource(ListReader(chunks)), 10)
    for _ in range(3):
        b.next_batch()
    state = b.state_dict()
    assert state["pending"] == {}  # 970 rows wait, none of them copied into the state
    assert state["replay"]["skip"] == 30 and state["replay"]["reader"] == {"position": 0, "items": 2}
    resumed = Batcher(ReaderSource(ListReader(chunks)), 10)
    resumed.load_state_dict(state)
    assert resumed.next_batch()["id"].tolist() == list(range(30, 40))


def test_a_non_deterministic_chunk_fn_is_caught_on_resume():
    chunks = make_chunks([50, 50])
    calls = []

    def drop_rows_on_later_calls(cols):
        calls.append(1)
        n = 50 if len(calls) == 1 else 20
        return {k: v[:n] for k, v in cols.items()}

    b = Batcher(ReaderSource(ListReader(chunks)), 10, chunk_fn=drop_rows_on_later_calls)
    b.next_batch()
    state = b.state_dict()
    resumed = Batcher(ReaderSource(ListReader(chunks)), 10, chunk_fn=drop_rows_on_later_calls)
    with pytest.raises(PetastormStateError, match="got 20 rows instead of 50"):
        resumed.load_state_dict(state)


def test_the_shuffling_buffer_draws_rounds_of_batches_within_an_eighth_of_its_rows():
    # default min_after_retrieve: rounds of up to 8 batches, (R - 1) * batch_size / 2 rows more
    assert shuffle_buffer_layout(100_000, 1024) == (100_000 + 7 * 512, 8)
    assert shuffle_buffer_layout(20_000, 1024) == (20_000 + 512, 2)
    assert shuffle_buffer_layout(10_000, 1024) == (10_000, 1)
    assert shuffle_buffer_layout(5, 8) == (8, 1)
    # an explicit min_after_retrieve bounds the round: it stays behind
    assert shuffle_buffer_layout(100_000, 1024, 100_000 - 1024) == (100_000, 1)
    assert shuffle_buffer_layout(100_000, 1024, 96_000) == (100_000, 3)
    assert shuffle_buffer_layout(20, 4, 30) == (34, 1)


def _one_batch_at_a_time(seq, capacity, batch_size, seed):
    """The order of a buffer of ``capacity`` rows refilled before every batch and drawing one batch at a time."""
    buf, out, fed = ColumnShufflingBuffer(capacity, seed), [], 0
    while fed < len(seq) or buf.size:
        if fed < len(seq) and buf.free:
            n = min(buf.free, len(seq) - fed)
            buf.add({"id": seq[fed:fed + n]})
            fed += n
        out.append(buf.retrieve(batch_size)["id"])
    return np.concatenate(out)


def test_rounds_mix_as_well_as_one_batch_at_a_time():
    # the shuffle-quality metric of the loaders' order (rounds of 8 batches) against the buffer drawing one
    # batch at a time, 262k rows in 64 row groups, a 16k-row buffer, batch 128
    groups, rows, capacity, batch_size = 64, 4096, 16384, 128
    seq = np.arange(groups * rows)
    reader_batches = [(seq[g * rows:(g + 1) * rows],) for g in range(groups)]
    new, old = [], []
    for seed in range(4):
        reader = ListReader([make_chunks([1])[0]._make((ids, np.zeros((rows, 2), np.float32)))
                             for (ids,) in reader_batches])
        b = Batcher(ReaderSource(reader), batch_size, capacity, seed=seed)
        out = []
        while (batch := b.next_batch()) is not None:
            out.append(batch["id"])
        new.append(sequence_quality(np.concatenate(out), rows_per_group=np.full(groups, rows)))
        old.append(sequence_quality(_one_batch_at_a_time(seq, capacity, batch_size, seed),
                                    rows_per_group=np.full(groups, rows)))
    assert b._buffer._rounds == 8
    for attr in ("mixing", "displacement_mean", "displacement_spread"):
        a, o = np.mean([getattr(q, attr) for q in new]), np.mean([getattr(q, attr) for q in old])
        assert abs(a - o) < 0.003, (attr, a, o)
