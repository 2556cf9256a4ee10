"""Elastic resume of readers: a balanced job checkpointed at W1 ranks continues at W2 (and W3) ranks and,
over the job, reads every row of the epoch exactly once, the new ranks getting rows at most one apart."""
from collections import Counter

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from petastorm import merge_state_dicts
from petastorm.errors import PetastormStateError
from petastorm.reader_impl.elastic import deal_bounds, normalize_ranges, subtract_ranges, take_ranges

from ._elastic_sim import (
    checkpoint_readers,
    finish_readers,
    open_reader,
    read_all,
    read_steps,
    roundtrip,
)

# --- the range arithmetic ------------------------------------------------------------------------------------

def test_ranges_helpers():
    assert normalize_ranges([[5, 7], [0, 2], [2, 3], [6, 9], [4, 4]]) == [[0, 3], [5, 9]]
    assert subtract_ranges(10, [[0, 3], [5, 9]]) == [[3, 5], [9, 10]]
    assert take_ranges([[3, 5], [9, 12]], 1, 4) == [[4, 5], [9, 11]]
    assert [deal_bounds(10, 3, r) for r in range(3)] == [(0, 4), (4, 7), (7, 10)]  # contiguous, <= 1 apart
    # the next epoch's extra rows go to the ranks that had none: over both epochs still at most one apart
    assert [deal_bounds(11, 3, r, offset=1) for r in range(3)] == [(0, 3), (3, 7), (7, 11)]


# --- the property ------------------------------------------------------------------------------------------------

@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(files=st.integers(1, 3), groups=st.integers(1, 3), rows=st.integers(1, 6),
       w1=st.integers(1, 4), w2=st.integers(1, 4), w3=st.one_of(st.none(), st.integers(1, 4)),
       steps1=st.lists(st.integers(0, 12), min_size=4, max_size=4),
       steps2=st.lists(st.integers(0, 12), min_size=4, max_size=4),
       batched=st.booleans(), shuffle_row_groups=st.booleans(), drop_partitions=st.integers(1, 3),
       shuffle_rows=st.booleans(), shard_seed=st.integers(0, 3), seed=st.integers(0, 2 ** 40),
       remainder=st.sampled_from(["drop", "drop", "pad"]))
def test_every_row_once_and_balanced_after_elastic_resumes(datasets, files, groups, rows, w1, w2, w3, steps1,
                                                           steps2, batched, shuffle_row_groups, drop_partitions,
                                                           shuffle_rows, shard_seed, seed, remainder):
    url, n = datasets(files, groups, rows)
    assume(n >= max(w1, w2, w3 or 1))  # a balanced reader refuses more ranks than rows (NoDataAvailableError)
    options = dict(num_epochs=1, shuffle_row_groups=shuffle_row_groups, shuffle_row_drop_partitions=drop_partitions,
                   shuffle_rows=shuffle_rows, shard_seed=shard_seed, seed=seed, balanced_remainder=remainder)
    if remainder == "pad":
        # the padded epoch repeats some rows: the job reads what the uninterrupted W1 job reads
        expected = Counter(sum(finish_readers(url, w1, batched, None, **options), []))
    stages = [w1, w2] + ([w3] if w3 else [])
    seen, job, tail = [], None, 0
    for stage, (world, steps) in enumerate(zip(stages[:-1], (steps1, steps2))):
        try:
            ids, job = checkpoint_readers(url, world, batched, steps, resume_from=job, **options)
        except PetastormStateError as e:
            # the one refusal: a row reader stopped inside a permuted item
            assert shuffle_rows and not batched and "shuffle_rows=True" in str(e), e
            return
        seen += ids
        job = roundtrip(job)
        if stage == 0 and job["next_epoch"] == 1:
            # every rank read its whole range: the epoch ended as it would have uninterrupted, its 'drop'
            # tail (total % W1 rows) left out
            tail = n % w1
    per_rank = finish_readers(url, stages[-1], batched, job, **options)
    counts = Counter(seen + sum(per_rank, []))
    if remainder == "pad":
        assert counts == expected
    else:
        assert set(counts.values()) == {1}, "rows read twice"
        assert set(counts) <= set(range(n)) and n - len(counts) == tail, "rows lost"
    sizes = [len(r) for r in per_rank]
    assert max(sizes) - min(sizes) <= 1, sizes


# --- epochs, padding, same world size -------------------------------------------------------------------------------

def test_ranks_straddling_an_epoch_boundary_resume_both_epochs_exactly(datasets):
    url, n = datasets(3, 4, 5)  # 60 rows: normal epochs at 4 and 3 ranks drop nothing
    options = dict(num_epochs=2, shuffle_row_groups=True, shard_seed=1, seed=0)
    # ranks read 15 rows per epoch at W=4: rank 0 and 1 are into epoch 1, ranks 2 and 3 still in epoch 0
    seen, job = checkpoint_readers(url, 4, False, [17, 20, 9, 15], **options)
    assert sorted(job["epochs"]) == ["0", "1"]
    per_rank = finish_readers(url, 3, False, roundtrip(job), **options)
    counts = Counter(seen + sum(per_rank, []))
    assert sorted(counts) == list(range(n)) and set(counts.values()) == {2}
    assert sum(len(r) for r in per_rank) % 3  # the two dealt epochs do not divide evenly: the test has teeth
    sizes = [len(r) for r in per_rank]
    assert max(sizes) - min(sizes) <= 1


def test_pad_remainder_reads_what_the_uninterrupted_job_reads(datasets):
    url, n = datasets(1, 3, 7)  # 21 rows at 4 ranks: padded to 24
    options = dict(num_epochs=1, shuffle_row_groups=True, shard_seed=3, seed=0, balanced_remainder="pad")
    uninterrupted = Counter(sum(finish_readers(url, 4, False, None, **options), []))
    assert sum(uninterrupted.values()) == 24
    seen, job = checkpoint_readers(url, 4, False, [2, 6, 0, 3], **options)
    resumed = Counter(seen + sum(finish_readers(url, 2, False, roundtrip(job), **options), []))
    assert resumed == uninterrupted


def test_same_world_size_resume_of_a_rank_in_a_dealt_epoch_is_exact(datasets):
    url, n = datasets(2, 3, 5)
    options = dict(num_epochs=2, shuffle_row_groups=True, shard_seed=2, seed=5)
    _, job = checkpoint_readers(url, 3, True, [1, 2, 1], **options)
    reader = open_reader(url, 1, 2, True, resume_from=job, **options)
    head = read_steps(reader, 2)
    state = roundtrip(reader.state_dict())
    tail = read_all(reader)
    reader.stop()
    reader.join()
    again = open_reader(url, 1, 2, True, resume_from=state, **options)
    assert read_all(again) == tail and head
    again.stop()
    again.join()


def test_a_job_checkpointed_at_the_end_resumes_with_nothing_to_read(datasets):
    url, n = datasets(1, 2, 4)
    options = dict(num_epochs=1, shuffle_row_groups=False)
    seen, job = checkpoint_readers(url, 2, False, [100, 100], **options)
    assert len(seen) == n and job["next_epoch"] == 1 and job["epochs"] == {}
    assert finish_readers(url, 3, False, job, **options) == [[], [], []]


# --- refusals ------------------------------------------------------------------------------------------------------

def _states(url, world, batched, steps, **options):
    states = []
    for rank in range(world):
        reader = open_reader(url, rank, world, batched, **options)
        read_steps(reader, steps)
        states.append(reader.state_dict())
        reader.stop()
        reader.join()
    return states


def test_missing_or_repeated_ranks_are_refused(datasets):
    url, _ = datasets(1, 3, 4)
    states = _states(url, 3, False, 1, num_epochs=1)
    with pytest.raises(PetastormStateError, match=r"every rank 0\.\.2 exactly once.*missing ranks \[1\]"):
        merge_state_dicts([states[0], states[2]])
    with pytest.raises(PetastormStateError, match=r"more than once \[2\]"):
        merge_state_dicts([states[0], states[2], states[2]])
    with pytest.raises(PetastormStateError, match="got none"):
        merge_state_dicts([])


def test_states_of_other_options_or_modes_are_refused(datasets):
    url, _ = datasets(1, 3, 4)
    a = _states(url, 2, False, 1, num_epochs=1, seed=1)
    b = _states(url, 2, False, 1, num_epochs=1, seed=1, shuffle_row_groups=False)
    with pytest.raises(PetastormStateError, match="other reader options"):
        merge_state_dicts([a[0], b[1]])
    reader = make_original(url)
    with pytest.raises(PetastormStateError, match="shard_mode='balanced'"):
        merge_state_dicts([reader.state_dict()])
    reader.stop()
    reader.join()
    job = merge_state_dicts(a)
    with pytest.raises(PetastormStateError, match=r"different reader options.*shuffle_row_groups"):
        open_reader(url, 0, 3, False, resume_from=job, num_epochs=1, seed=1, shuffle_row_groups=False)
    with pytest.raises(PetastormStateError, match="shard_mode='balanced'"):
        make_original(url, resume_from=job)


def make_original(url, **kw):
    import warnings

    from petastorm import make_reader

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return make_reader(url, reader_pool_type="dummy", cur_shard=0, shard_count=1, num_epochs=1, **kw)


def test_row_reader_inside_a_permuted_item_is_refused_with_the_reason(datasets):
    url, _ = datasets(1, 2, 6)
    states = _states(url, 2, False, 2, num_epochs=1, shuffle_rows=True, seed=3)
    with pytest.raises(PetastormStateError, match="shuffle_rows=True.*make_batch_reader"):
        merge_state_dicts(states)


@pytest.mark.parametrize("batched", [False, True])
def test_saved_global_row_is_the_plans_offset_of_the_cursor(datasets, batched):
    import numpy as np

    from petastorm.reader_impl.plan import locate_global_row, make_epoch_plan

    url, n = datasets(2, 3, 5)
    reader = open_reader(url, 1, 3, batched, num_epochs=2, shuffle_row_drop_partitions=2, shard_seed=3, seed=0)
    options, rows = reader._p.plan_options, np.asarray(reader._p.plan_rows)
    for step in range(12):
        state = reader.state_dict()
        plan = make_epoch_plan(rows, options, state["epoch"])
        rows_into = state["rows_into_item"]
        if batched and rows_into:
            rows_into = plan[state["position"]].num_rows  # a batch is its whole item
        expected = locate_global_row(rows, options, state["epoch"], state["position"], rows_into, plan=plan)
        assert state["extra"]["global_row"] == expected, step
        read_steps(reader, 1)
    reader.stop()
    reader.join()
