"""Shuffle quality: the metric's anchors (dataset order 0, uniform permutation 1), the plan formula against the
exact value on materialised sequences (the loaders' buffer simulation: tests/adapters/test_buffer_quality.py)."""
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from petastorm.errors import PetastormArgumentError
from petastorm.reader_impl.plan import PlanOptions, make_epoch_plan
from petastorm.reader_impl.shuffle_quality import (
    UNIFORM_SPREAD,
    ShuffleQuality,
    block_shuffle,
    plan_quality,
    plan_row_sequence,
    sequence_quality,
)

ROWS = np.full(50, 200, dtype=np.int64)  # 50 row groups of 200 rows: 10,000 rows


def _plan(**options):
    return make_epoch_plan(ROWS, PlanOptions(seed=7, **options), 0)


def test_dataset_order_has_no_displacement_and_keeps_row_groups_together():
    q = plan_quality(_plan(shuffle_row_groups=False))
    assert q.rows == 10_000
    assert q.displacement_mean == 0 and q.displacement_spread == 0
    assert q.same_group_fraction == pytest.approx((10_000 - 50) / 9_999)
    assert q.same_group_uniform == pytest.approx(50 * 200 * 199 / (10_000 * 9_999))
    assert q.mixing < 0.01  # only the 49 boundaries between row groups mix


def test_a_uniform_permutation_scores_one():
    seq = np.random.default_rng(0).permutation(10_000)
    q = sequence_quality(seq, rows_per_group=ROWS)
    assert q.displacement_mean == pytest.approx(1.0, abs=0.03)
    assert q.displacement_spread == pytest.approx(UNIFORM_SPREAD, abs=0.03)
    assert q.same_group_fraction == pytest.approx(q.same_group_uniform, abs=0.01)
    assert q.mixing == pytest.approx(1.0, abs=0.02)


def test_a_reversal_moves_rows_far_but_is_not_mixed():
    q = sequence_quality(np.arange(10_000)[::-1].copy(), rows_per_group=ROWS)
    assert q.displacement_mean == pytest.approx(1.5, abs=0.001)
    assert q.mixing < 0.01


def test_shuffling_row_groups_moves_rows_but_does_not_mix_them():
    q = plan_quality(_plan(shuffle_row_groups=True, shuffle_rows=True))
    assert 0.7 < q.displacement_mean < 1.3
    assert q.same_group_fraction > 0.99  # every batch holds one or two row groups
    finer = plan_quality(_plan(shuffle_row_groups=True, shuffle_rows=True, shuffle_row_drop_partitions=10))
    assert finer.same_group_fraction < q.same_group_fraction


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(groups=st.lists(st.integers(0, 40), min_size=1, max_size=30), shuffle_row_groups=st.booleans(),
       shuffle_rows=st.booleans(), drop=st.integers(1, 4), seed=st.integers(0, 2**32),
       shards=st.one_of(st.none(), st.tuples(st.integers(1, 3), st.sampled_from(["original", "balanced"]))))
def test_plan_formula_matches_the_exact_value_of_the_sequence_read(groups, shuffle_row_groups, shuffle_rows, drop,
                                                                   seed, shards):
    rows = np.asarray(groups, dtype=np.int64)
    sharding = {}
    if shards is not None:
        count, mode = shards
        sharding = dict(cur_shard=count - 1, shard_count=count, shard_mode=mode)
    try:
        plan = make_epoch_plan(rows, PlanOptions(seed=seed, shuffle_row_groups=shuffle_row_groups,
                                                 shuffle_rows=shuffle_rows, shuffle_row_drop_partitions=drop,
                                                 **sharding), 0)
    except Exception:  # a shard that would be empty: not a quality question
        return
    q = plan_quality(plan)
    seq = plan_row_sequence(plan, rows)
    exact = sequence_quality(seq, rows_per_group=rows)
    assert q.rows == exact.rows == len(seq)
    assert q.same_group_fraction == pytest.approx(exact.same_group_fraction)
    assert q.same_group_uniform == pytest.approx(exact.same_group_uniform)
    if not shuffle_rows:  # no in-item permutation: the formula is exact
        assert q.adjacent_fraction == pytest.approx(exact.adjacent_fraction)
        assert q.displacement_mean == pytest.approx(exact.displacement_mean, abs=1e-9)
        assert q.displacement_spread == pytest.approx(exact.displacement_spread, abs=1e-9)


def test_shuffle_rows_separates_dataset_neighbours_but_not_row_groups():
    plain = plan_quality(_plan(shuffle_row_groups=True))
    rows = plan_quality(_plan(shuffle_row_groups=True, shuffle_rows=True))
    assert plain.adjacent_fraction == pytest.approx(plain.same_group_fraction)  # file order inside row groups
    assert rows.adjacent_fraction == pytest.approx(1 / 200, rel=0.05)  # ~1 / rows per item
    assert rows.same_group_fraction == plain.same_group_fraction


def test_plan_formula_is_the_expectation_over_in_item_permutations():
    rows = np.full(4, 500, dtype=np.int64)
    plan = make_epoch_plan(rows, PlanOptions(seed=1, shuffle_row_groups=True, shuffle_rows=True), 0)
    expected = plan_quality(plan)
    realised = []
    for s in range(20):  # other row seeds: other realisations of the in-item permutations
        reseeded = [it._replace(row_seed=s * 1000 + i) for i, it in enumerate(plan)]
        realised.append(sequence_quality(plan_row_sequence(reseeded, rows), rows_per_group=rows))
    assert np.mean([r.displacement_mean for r in realised]) == pytest.approx(expected.displacement_mean, rel=0.01)
    assert np.mean([r.adjacent_fraction for r in realised]) == pytest.approx(expected.adjacent_fraction, abs=0.001)


def test_plan_quality_handles_row_counts_too_large_to_materialise():
    huge = np.full(100, 1 << 40, dtype=np.int64)
    plan = make_epoch_plan(huge, PlanOptions(seed=3, shuffle_row_groups=True, shuffle_rows=True), 0)
    q = plan_quality(plan)
    assert q.rows == 100 << 40
    assert math.isfinite(q.displacement_mean) and 0.5 < q.displacement_mean < 1.5
    with pytest.raises(PetastormArgumentError, match="max_rows"):
        plan_row_sequence(plan, huge)


def test_plan_row_sequence_orders_rows_as_the_worker_does():
    rows = np.array([3, 4], dtype=np.int64)
    plan = make_epoch_plan(rows, PlanOptions(seed=5, shuffle_row_groups=False, shuffle_rows=True), 0)
    seq = plan_row_sequence(plan, rows)
    assert sorted(seq.tolist()) == list(range(7))
    first = np.random.default_rng(plan[0].row_seed).permutation(3)
    assert seq[:3].tolist() == first.tolist()


def test_block_shuffle_mixes_each_block_uniformly():
    plan = _plan(shuffle_row_groups=True)
    seq = block_shuffle(plan, ROWS, block_items=10, seed=0)
    assert np.array_equal(np.sort(seq), np.arange(10_000))
    q = sequence_quality(seq, rows_per_group=ROWS)
    assert q.same_group_fraction == pytest.approx(0.1, abs=0.02)  # 10 row groups mixed per block


def test_to_dict_and_str_name_the_numbers():
    q = plan_quality(_plan())
    d = q.to_dict()
    assert set(d) >= {"rows", "displacement_mean", "displacement_spread", "same_group_fraction",
                      "same_group_uniform", "adjacent_fraction", "mixing", "method"}
    assert "displacement" in str(q) and "10,000 rows" in str(q)
    assert isinstance(q, ShuffleQuality)


def test_short_sequences_and_bad_arguments():
    assert sequence_quality(np.array([5]), rows_per_group=[10]).displacement_mean == 0
    assert plan_quality([]).rows == 0
    with pytest.raises(PetastormArgumentError, match="group_of_row"):
        sequence_quality(np.arange(3))
    with pytest.raises(PetastormArgumentError, match="block_items"):
        block_shuffle([], ROWS, 0)
