"""Property tests of the pure planning stage (petastorm.reader_impl.plan): no files, no threads."""
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from petastorm.errors import NoDataAvailableError, PetastormArgumentError
from petastorm.reader_impl.plan import (
    PlanOptions,
    balanced_shard_bounds,
    locate_global_row,
    make_epoch_plan,
    plan_row_offsets,
    shard_row_groups,
)
from petastorm.reader_impl.work_item import WorkItem

PROPS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

rows_lists = st.lists(st.integers(0, 40), min_size=0, max_size=30)
seeds = st.one_of(st.integers(-2 ** 70, 2 ** 70), st.integers(0, 10))
shard_seeds = st.one_of(st.none(), st.integers(-1000, 2 ** 40))
epochs = st.integers(0, 1000)


def _rows(plan):
    """Every (row_group, row) the plan reads, in plan order (rows inside an item in file order)."""
    return [(it.row_group, r) for it in plan for r in range(it.row_start, it.row_stop)]


def _all_rows(rows_per_group):
    return [(g, r) for g, n in enumerate(rows_per_group) for r in range(n)]


@st.composite
def plan_options(draw, sharded=None, mode=None):
    shard = draw(st.booleans()) if sharded is None else sharded
    shard_count = draw(st.integers(1, 6)) if shard else None
    cur_shard = draw(st.integers(0, shard_count - 1)) if shard else None
    return PlanOptions(
        seed=draw(seeds),
        shuffle_row_groups=draw(st.booleans()),
        shuffle_rows=draw(st.booleans()),
        shuffle_row_drop_partitions=draw(st.integers(1, 5)),
        cur_shard=cur_shard, shard_count=shard_count, shard_seed=draw(shard_seeds),
        shard_mode=mode or draw(st.sampled_from(["original", "balanced"])),
        balanced_remainder=draw(st.sampled_from(["drop", "pad"])))


def _plan_or_none(rows, options, epoch):
    try:
        return make_epoch_plan(rows, options, epoch)
    except NoDataAvailableError:
        return None


@PROPS
@given(rows_lists, plan_options(), epochs)
def test_plan_is_a_pure_function_of_its_inputs(rows, options, epoch):
    first = _plan_or_none(rows, options, epoch)
    again = _plan_or_none(np.array(rows, dtype=np.int32), PlanOptions(**vars(options)), epoch)
    assert first == again
    if first is not None:
        assert [it.position for it in first] == list(range(len(first)))
        assert all(it.epoch == epoch and it.row_stop > it.row_start >= 0 for it in first)
        assert plan_row_offsets(first).tolist() == [0] + np.cumsum([it.num_rows for it in first]).tolist()


@PROPS
@given(rows_lists, plan_options(sharded=False), epochs)
def test_unsharded_epoch_reads_every_row_exactly_once(rows, options, epoch):
    plan = make_epoch_plan(rows, options, epoch)
    assert sorted(_rows(plan)) == _all_rows(rows)
    assert all(isinstance(it, WorkItem) for it in plan)


@PROPS
@given(rows_lists, plan_options(sharded=False), epochs)
def test_without_shuffling_rows_come_in_dataset_order(rows, options, epoch):
    options = PlanOptions(**{**vars(options), "shuffle_row_groups": False, "shuffle_rows": False})
    plan = make_epoch_plan(rows, options, epoch)
    assert _rows(plan) == _all_rows(rows)
    assert all(it.row_seed is None for it in plan)


@PROPS
@given(st.lists(st.integers(0, 40), min_size=1, max_size=30), st.integers(1, 6), shard_seeds,
       plan_options(sharded=False), epochs)
def test_original_shards_partition_the_row_groups(rows, shard_count, shard_seed, base, epoch):
    if len(rows) < shard_count:
        with pytest.raises(NoDataAvailableError, match="shard"):
            make_epoch_plan(rows, PlanOptions(**{**vars(base), "cur_shard": 0, "shard_count": shard_count,
                                                 "shard_mode": "original"}), epoch)
        return
    groups, all_rows = [], []
    for k in range(shard_count):
        options = PlanOptions(**{**vars(base), "cur_shard": k, "shard_count": shard_count,
                                 "shard_seed": shard_seed, "shard_mode": "original"})
        mine = shard_row_groups(len(rows), k, shard_count, shard_seed)
        assert len(mine) >= 1
        groups.extend(mine.tolist())
        plan = make_epoch_plan(rows, options, epoch)
        assert {it.row_group for it in plan} <= set(mine.tolist())
        assert sorted(_rows(plan)) == [(g, r) for g in sorted(mine.tolist()) for r in range(rows[g])]
        all_rows.extend(_rows(plan))
    assert sorted(groups) == list(range(len(rows)))  # disjoint and complete
    assert sorted(all_rows) == _all_rows(rows)


@PROPS
@given(st.integers(1, 60), st.integers(1, 6), shard_seeds)
def test_original_assignment_is_every_nth_row_group_whatever_the_shard_seed(n, shard_count, shard_seed):
    assume(n >= shard_count)
    for k in range(shard_count):
        mine = shard_row_groups(n, k, shard_count, shard_seed).tolist()
        assert sorted(mine) == list(range(k, n, shard_count))
        if not shard_seed:
            assert mine == list(range(k, n, shard_count))


# What the original petastorm 0.12.1 reads per shard of a 10-row-group dataset with
# shuffle_row_groups=False and the dummy pool (tools_compat/original_errors.json, "sharding").
ORIGINAL_SHARDS = {
    (3, None): [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]],
    (3, 0): [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]],
    (3, 7): [[3, 0, 9, 6], [1, 4, 7], [8, 2, 5]],
    (3, 1): [[6, 9, 3, 0], [7, 4, 1], [8, 5, 2]],
    (3, 42): [[3, 6, 9, 0], [7, 4, 1], [2, 8, 5]],
    (4, None): [[0, 4, 8], [1, 5, 9], [2, 6], [3, 7]],
    (4, 7): [[8, 4, 0], [1, 9, 5], [6, 2], [3, 7]],
    (4, 1): [[8, 0, 4], [9, 5, 1], [6, 2], [7, 3]],
    (4, 42): [[8, 4, 0], [5, 9, 1], [2, 6], [7, 3]],
}


@pytest.mark.parametrize("shard_count, shard_seed", sorted(ORIGINAL_SHARDS, key=str))
def test_original_mode_reads_what_the_original_reads_per_shard(shard_count, shard_seed):
    expected = ORIGINAL_SHARDS[(shard_count, shard_seed)]
    for k in range(shard_count):
        assert shard_row_groups(10, k, shard_count, shard_seed).tolist() == expected[k]
        plan = make_epoch_plan([5] * 10, PlanOptions(seed=123, shuffle_row_groups=False, cur_shard=k,
                                                     shard_count=shard_count, shard_seed=shard_seed), 0)
        assert [it.row_group for it in plan] == expected[k]


@PROPS
@given(st.lists(st.integers(1, 40), min_size=6, max_size=30), plan_options(sharded=True, mode="original"),
       epochs, epochs)
def test_original_shard_reads_the_same_row_groups_every_epoch(rows, options, epoch_a, epoch_b):
    a = make_epoch_plan(rows, options, epoch_a)
    b = make_epoch_plan(rows, options, epoch_b)
    assert sorted(_rows(a)) == sorted(_rows(b))


@PROPS
@given(rows_lists, st.integers(1, 6), shard_seeds, st.sampled_from(["drop", "pad"]),
       plan_options(sharded=False), epochs, st.lists(seeds, min_size=6, max_size=6))
def test_balanced_shards_get_equal_rows_and_cover_the_dataset(rows, shard_count, shard_seed, remainder, base,
                                                              epoch, rank_seeds):
    total = sum(rows)
    per = total // shard_count if remainder == "drop" else -(-total // shard_count)
    plans = []
    for k in range(shard_count):
        # every rank may have its own seed (seed=None resolves per process): the deal must not change
        options = PlanOptions(**{**vars(base), "seed": rank_seeds[k], "cur_shard": k,
                                 "shard_count": shard_count, "shard_seed": shard_seed,
                                 "shard_mode": "balanced", "balanced_remainder": remainder})
        if per == 0:
            with pytest.raises(NoDataAvailableError, match="empty"):
                make_epoch_plan(rows, options, epoch)
            return
        plans.append(make_epoch_plan(rows, options, epoch))
    counts = Counter(r for plan in plans for r in _rows(plan))
    assert [len(_rows(p)) for p in plans] == [per] * shard_count
    assert set(counts) <= set(_all_rows(rows))
    if remainder == "drop":
        assert max(counts.values(), default=1) == 1
        assert len(counts) == shard_count * per  # only the remainder (< shard_count rows) is dropped
        assert total - len(counts) < shard_count
    else:
        assert set(counts) == set(_all_rows(rows))
        assert sum(counts.values()) - total == shard_count * per - total  # the padding is all repeats


@PROPS
@given(st.lists(st.integers(0, 40), min_size=1, max_size=30), st.integers(1, 6), st.integers(1, 4))
def test_balanced_without_shuffle_deals_contiguous_ranges_in_dataset_order(rows, shard_count, parts):
    total = sum(rows)
    assume(total >= shard_count)
    sequence = _all_rows(rows)
    for k in range(shard_count):
        options = PlanOptions(seed=0, shuffle_row_groups=False, shuffle_row_drop_partitions=parts,
                              cur_shard=k, shard_count=shard_count, shard_mode="balanced")
        start, stop = balanced_shard_bounds(total, shard_count, k)
        assert _rows(make_epoch_plan(rows, options, 3)) == sequence[start:stop]


@PROPS
@given(st.lists(st.integers(1, 40), min_size=1, max_size=20), st.integers(1, 6), shard_seeds,
       st.sampled_from(["drop", "pad"]), st.booleans(), epochs)
def test_balanced_position_maps_to_a_global_row_offset(rows, shard_count, shard_seed, remainder, shuffle,
                                                       epoch):
    total = sum(rows)
    assume(total >= shard_count)
    offsets = []
    for k in range(shard_count):
        options = PlanOptions(seed=k, shuffle_row_groups=shuffle, cur_shard=k, shard_count=shard_count,
                              shard_seed=shard_seed, shard_mode="balanced", balanced_remainder=remainder)
        plan = make_epoch_plan(rows, options, epoch)
        for pos, item in enumerate(plan):
            for r in range(item.num_rows):
                offsets.append(locate_global_row(rows, options, epoch, pos, r, plan=plan))
        end = locate_global_row(rows, options, epoch, len(plan))
        assert end == balanced_shard_bounds(total, shard_count, k, remainder)[1]
    per = len(offsets) // shard_count
    assert sorted(offsets) == list(range(shard_count * per))


@PROPS
@given(st.lists(st.integers(1, 40), min_size=10, max_size=30), plan_options(sharded=False), epochs)
def test_shuffled_epochs_come_in_different_orders(rows, options, epoch):
    options = PlanOptions(**{**vars(options), "shuffle_row_groups": True})
    a = make_epoch_plan(rows, options, epoch)
    b = make_epoch_plan(rows, options, epoch + 1)
    assert [(it.row_group, it.row_start) for it in a] != [(it.row_group, it.row_start) for it in b]
    other_seed = PlanOptions(**{**vars(options), "seed": options.seed + 1})
    c = make_epoch_plan(rows, other_seed, epoch)
    assert [(it.row_group, it.row_start) for it in a] != [(it.row_group, it.row_start) for it in c]


@PROPS
@given(rows_lists, st.integers(1, 8), st.booleans(), seeds, epochs)
def test_drop_partitions_cut_every_row_group_into_contiguous_slices(rows, parts, shuffle, seed, epoch):
    plan = make_epoch_plan(rows, PlanOptions(seed=seed, shuffle_row_groups=shuffle,
                                             shuffle_row_drop_partitions=parts), epoch)
    for g, n in enumerate(rows):
        slices = sorted((it.row_start, it.row_stop) for it in plan if it.row_group == g)
        assert len(slices) == min(parts, n)
        bounds = [s for s, _ in slices] + [slices[-1][1]] if slices else [0]
        assert bounds[0] == 0 and bounds[-1] == n
        assert all(stop == nxt for (_, stop), (nxt, _) in zip(slices, slices[1:]))
        sizes = [e - s for s, e in slices]
        assert not sizes or max(sizes) - min(sizes) <= 1  # as even as possible


@PROPS
@given(st.lists(st.integers(2, 40), min_size=1, max_size=20), plan_options(), epochs)
def test_row_seeds_are_set_only_when_shuffling_rows_and_change_per_epoch(rows, options, epoch):
    plan = _plan_or_none(rows, options, epoch)
    assume(plan is not None)
    if not options.shuffle_rows:
        assert all(it.row_seed is None for it in plan)
        return
    assert all(isinstance(it.row_seed, int) and 0 <= it.row_seed < 2 ** 63 for it in plan)
    keyed = {(it.row_group, it.row_start): it.row_seed for it in plan}
    assert len(set(keyed.values())) == len(keyed)  # distinct items, distinct seeds
    nxt = {(it.row_group, it.row_start): it.row_seed for it in make_epoch_plan(rows, options, epoch + 1)}
    common = set(keyed) & set(nxt)
    assert all(keyed[k] != nxt[k] for k in common)


def test_a_plan_of_thousands_of_row_groups_covers_every_row_once():
    # 50,000 row groups cut in 2 drop partitions (its speed is a benchmark's business, not a test's)
    rows = np.full(50_000, 1000)
    plan = make_epoch_plan(rows, PlanOptions(seed=7, shuffle_rows=True, shuffle_row_drop_partitions=2), 0)
    assert len(plan) == 100_000 and sum(it.num_rows for it in plan) == 50_000_000
    assert sorted((it.row_group, it.row_start, it.row_stop) for it in plan) == [
        (g, start, start + 500) for g in range(50_000) for start in (0, 500)]


@pytest.mark.parametrize("kwargs, match", [
    (dict(cur_shard=0), "^partition and num_partitions must be ints and both specified to use "
                        "partitioning: cur_shard=0 was given without shard_count"),
    (dict(shard_count=2), "^partition and num_partitions must be ints.*shard_count=2.*without cur_shard"),
    (dict(cur_shard="0", shard_count=2), "^partition and num_partitions must be ints.*cur_shard='0'"),
    (dict(cur_shard=2, shard_count=2), r"cur_shard.*\[0, 2\).*2"),
    (dict(cur_shard=-1, shard_count=2), "cur_shard.*-1"),
    (dict(cur_shard=0, shard_count=0), "^partition and num_partitions must be ints.*shard_count=0"),
    (dict(shuffle_row_drop_partitions=0), "shuffle_row_drop_partitions.*0"),
    (dict(shuffle_row_drop_partitions=1.5), "shuffle_row_drop_partitions"),
    (dict(shard_mode="even"), "shard_mode.*'even'"),
    (dict(balanced_remainder="wrap"), "balanced_remainder.*'wrap'"),
    (dict(seed="abc"), "seed"),
    (dict(cur_shard=0, shard_count=2, shard_seed="x"), "shard_seed"),
])
def test_bad_options_are_refused_naming_the_argument(kwargs, match):
    options = PlanOptions(**{"seed": 1, **kwargs})
    with pytest.raises(PetastormArgumentError, match=match):
        options.validate()
    with pytest.raises(ValueError, match=match):  # users' `except ValueError` keeps working
        make_epoch_plan([10, 10, 10], options, 0)


@pytest.mark.parametrize("rows, epoch, match", [
    ([[1, 2]], 0, "1-D"),
    ([1, -2], 0, r"rows_per_group\[1\].*-2"),
    ([1.5], 0, "integers"),
    ([1, 2], -1, "epoch.*-1"),
])
def test_bad_row_counts_or_epoch_are_refused(rows, epoch, match):
    with pytest.raises(PetastormArgumentError, match=match):
        make_epoch_plan(rows, PlanOptions(seed=0), epoch)


def test_more_shards_than_row_groups_is_no_data_on_every_shard():
    for k in range(5):
        with pytest.raises(NoDataAvailableError, match=r"^Number of row-groups in the dataset must be greater "
                           r"or equal to the number of requested shards\. Otherwise, some of the shards will "
                           r"end up being empty\. .*3 row group.*shard_count is 5"):
            make_epoch_plan([10, 10, 10], PlanOptions(seed=0, cur_shard=k, shard_count=5), 0)
    # balanced mode spreads 30 rows over 5 shards instead
    plans = [make_epoch_plan([10, 10, 10], PlanOptions(seed=0, cur_shard=k, shard_count=5,
                                                       shard_mode="balanced"), 0) for k in range(5)]
    assert [len(_rows(p)) for p in plans] == [6] * 5


def test_balanced_fewer_rows_than_shards_drop_is_empty_pad_repeats():
    with pytest.raises(NoDataAvailableError, match="balanced_remainder='pad'"):
        make_epoch_plan([2], PlanOptions(seed=0, cur_shard=0, shard_count=3, shard_mode="balanced"), 0)
    plans = [make_epoch_plan([2], PlanOptions(seed=0, cur_shard=k, shard_count=3, shard_mode="balanced",
                                              balanced_remainder="pad"), 0) for k in range(3)]
    assert [_rows(p) for p in plans] == [[(0, 0)], [(0, 1)], [(0, 0)]]
    with pytest.raises(NoDataAvailableError):
        make_epoch_plan([0, 0], PlanOptions(seed=0, cur_shard=0, shard_count=2, shard_mode="balanced",
                                            balanced_remainder="pad"), 0)


def test_empty_dataset_unsharded_gives_an_empty_plan():
    assert make_epoch_plan([], PlanOptions(seed=0), 0) == []
    assert make_epoch_plan([0, 0], PlanOptions(seed=0), 0) == []


def test_locate_global_row_refuses_original_sharding_and_bad_cursors():
    with pytest.raises(PetastormArgumentError, match="balanced"):
        locate_global_row([5, 5], PlanOptions(seed=0, cur_shard=0, shard_count=2), 0, 0)
    with pytest.raises(PetastormArgumentError, match="position 3"):
        locate_global_row([5, 5], PlanOptions(seed=0), 0, 3)
    with pytest.raises(PetastormArgumentError, match="rows_into_item=6"):
        locate_global_row([5, 5], PlanOptions(seed=0), 0, 0, 6)
    assert locate_global_row([5, 5], PlanOptions(seed=0, shuffle_row_groups=False), 0, 1, 2) == 7


def test_numpy_integer_options_plan_like_python_ints():
    as_numpy = PlanOptions(seed=np.int64(3), shuffle_row_drop_partitions=np.int32(2), cur_shard=np.int64(1),
                           shard_count=np.int64(3), shard_seed=np.int64(9), shuffle_rows=True)
    as_python = PlanOptions(seed=3, shuffle_row_drop_partitions=2, cur_shard=1, shard_count=3, shard_seed=9,
                            shuffle_rows=True)
    rows = np.arange(1, 12)
    assert make_epoch_plan(rows, as_numpy, np.int64(4)) == make_epoch_plan(rows, as_python, 4)
