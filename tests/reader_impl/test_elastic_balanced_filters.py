"""shard_mode='balanced' (the sharding elastic resume builds on) with row filters or a predicate on stored fields:
the shards are dealt the rows that pass (counted at plan time), so every rank gets the same number of rows
(+-1) and together every passing row once; exact resume and elastic resume to another number of ranks still
hold. Before, rows were dealt before the filters dropped some: shards of 41/66/41 rows below (the reader
warned)."""
import warnings

import numpy as np
import pytest

from petastorm import make_batch_reader
from petastorm.errors import NoDataAvailableError
from petastorm.predicates import in_lambda

from ._elastic_sim import (
    checkpoint_readers,
    finish_readers,
    open_reader,
    read_all,
    read_steps,
    roundtrip,
    write_ids_dataset,
)

FILTERS = [dict(filters=[("id", "<", 150)]), dict(predicate=in_lambda(["id"], lambda i: i < 150))]
IDS = ["filters", "predicate"]


@pytest.fixture(scope="module")
def ids_url(tmp_path_factory):
    url, _ = write_ids_dataset(str(tmp_path_factory.mktemp("balanced-filters") / "d"), 4, 2, 25)
    return url


def _per_shard(url, world=3, batched=True, **options):
    return finish_readers(url, world, batched, None, num_epochs=1, **options)


def test_without_filters_the_shards_are_balanced(ids_url):
    assert [len(r) for r in _per_shard(ids_url)] == [66, 66, 66]


@pytest.mark.parametrize("batched", [True, False], ids=["batch", "rows"])
@pytest.mark.parametrize("options", FILTERS, ids=IDS)
def test_row_filters_deal_the_passing_rows_equally(ids_url, options, batched):
    per_rank = _per_shard(ids_url, batched=batched, **options)
    assert [len(r) for r in per_rank] == [50, 50, 50]  # was [41, 66, 41]: rows dealt before the filters
    assert sorted(sum(per_rank, [])) == list(range(150))


@pytest.mark.parametrize("options", FILTERS, ids=IDS)
def test_shuffled_sliced_epochs_stay_balanced(ids_url, options):
    # shuffled row groups cut in 3 drop partitions, a filter keeping every third row; 2 ranks, 2 epochs, 'pad'
    opts = dict(options, shuffle_row_groups=True, shuffle_row_drop_partitions=3, shard_seed=7,
                balanced_remainder="pad")
    if "filters" in opts:
        opts["filters"] = [("id", "in", list(range(0, 200, 3)))]
    else:
        opts["predicate"] = in_lambda(["id"], lambda i: i % 3 == 0)
    per_rank = finish_readers(ids_url, 2, True, None, num_epochs=2, **opts)
    assert [len(r) for r in per_rank] == [68, 68]  # 67 passing rows a epoch, padded to 34 per rank
    for epoch in range(2):
        rows = sorted(per_rank[0][34 * epoch:34 * (epoch + 1)] + per_rank[1][34 * epoch:34 * (epoch + 1)])
        assert set(rows) == set(range(0, 200, 3)) and len(rows) == 68  # every passing row, one padded twice


@pytest.mark.parametrize("options", FILTERS, ids=IDS)
def test_exact_resume_with_row_filters(ids_url, options):
    first = open_reader(ids_url, 1, 3, True, num_epochs=1, **options)
    head = read_steps(first, 1)
    state = roundtrip(first.state_dict())
    first.stop()
    first.join()
    again = open_reader(ids_url, 1, 3, True, resume_from=state, num_epochs=1, **options)
    rest = read_all(again)
    again.stop()
    again.join()
    whole = _per_shard(ids_url, **options)[1]
    assert head + rest == whole and len(whole) == 50


@pytest.mark.parametrize("options", FILTERS, ids=IDS)
def test_elastic_resume_from_3_to_2_ranks_with_row_filters(ids_url, options):
    seen, job = checkpoint_readers(ids_url, 3, True, [1, 2, 1], num_epochs=1, **options)
    per_rank = finish_readers(ids_url, 2, True, job, num_epochs=1, **options)
    rest = sum(per_rank, [])
    assert sorted(seen + rest) == list(range(150))  # every passing row once, none repeated
    assert abs(len(per_rank[0]) - len(per_rank[1])) <= 1


def test_filters_that_pass_no_row_leave_every_balanced_shard_empty(ids_url):
    with pytest.raises(NoDataAvailableError, match="no row is selected"):
        make_batch_reader(ids_url, reader_pool_type="dummy", cur_shard=0, shard_count=3, shard_mode="balanced",
                          num_epochs=1, filters=[("id", "<", 0)])


@pytest.mark.parametrize("options", FILTERS, ids=IDS)
def test_balanced_shards_with_row_filters_no_longer_warn(ids_url, options):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reader = make_batch_reader(ids_url, reader_pool_type="dummy", cur_shard=0, shard_count=3,
                                   shard_mode="balanced", num_epochs=1, **options)
    reader.stop()
    reader.join()


def test_balanced_shards_without_filters_do_not_warn(ids_url):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reader = make_batch_reader(ids_url, reader_pool_type="dummy", cur_shard=0, shard_count=3,
                                   shard_mode="balanced", num_epochs=1)
    reader.stop()
    reader.join()


def test_passing_rows_map_back_to_stored_rows():
    from petastorm.reader_impl.plan_balanced import PassingRows, passing_of

    rows = PassingRows.of([np.array([1, 4, 5]), np.array([], dtype=np.int64), np.array([0, 9])])
    assert np.asarray(rows).tolist() == [3, 0, 2] and int(rows.sum()) == 5
    assert passing_of(rows)[2].tolist() == [0, 9]
    assert passing_of(rows[:2]) is None and passing_of(np.array([3, 0, 2])) is None


class _Counting:
    """A predicate function that counts its calls (a stateful predicate object of the user's)."""

    def __init__(self):
        self.calls = 0

    def __call__(self, i):
        self.calls += 1
        return i < 150


def test_plan_time_counting_does_not_call_the_users_predicate_object(ids_url):
    func = _Counting()
    reader = make_batch_reader(ids_url, reader_pool_type="dummy", cur_shard=0, shard_count=3, shard_mode="balanced",
                               num_epochs=1, predicate=in_lambda(["id"], func))
    assert func.calls == 0  # the rows that pass were counted with a copy of it
    assert len(read_all(reader)) == 50
    reader.stop()
    reader.join()


def test_fewer_passing_rows_than_shards_is_refused_naming_the_filters(ids_url):
    with pytest.raises(NoDataAvailableError, match="deals 2 rows \\(the rows that pass the filters / predicate\\) to 3 shards"):
        make_batch_reader(ids_url, reader_pool_type="dummy", cur_shard=0, shard_count=3, shard_mode="balanced",
                          num_epochs=1, filters=[("id", "<", 2)])
    # with 'pad' every rank gets the same number of the passing rows (the 2 rows padded to 3)
    per_rank = _per_shard(ids_url, filters=[("id", "<", 2)], balanced_remainder="pad")
    assert per_rank == [[0], [1], [0]]


def test_a_state_saved_when_balanced_shards_dealt_stored_rows_is_refused(ids_url):
    from petastorm.reader_impl.fingerprint import options_fingerprint

    reader = open_reader(ids_url, 0, 3, True, num_epochs=1, filters=[("id", "<", 150)])
    read_steps(reader, 1)
    state = roundtrip(reader.state_dict())
    reader.stop()
    reader.join()
    assert state["options"]["balanced_deal"] == "passing"
    old = dict(state, options={k: v for k, v in state["options"].items() if k != "balanced_deal"})
    old["options_fingerprint"] = options_fingerprint(**old["options"])[0]  # as the reader before this change saved it
    with pytest.raises(ValueError, match="balanced_deal"):
        open_reader(ids_url, 0, 3, True, resume_from=old, num_epochs=1, filters=[("id", "<", 150)])


def test_explain_shows_the_passing_rows_dealt_to_each_balanced_shard(ids_url):
    with make_batch_reader(ids_url, reader_pool_type="dummy", cur_shard=0, shard_count=3, shard_mode="balanced",
                           num_epochs=1, filters=[("id", "<", 150)]) as reader:
        plan = reader.explain()
    assert [s.rows for s in plan.shards] == [50, 50, 50]


class _Locked:
    """A predicate function holding a lock (cannot be deep-copied)."""

    def __init__(self):
        import threading

        self.lock = threading.Lock()

    def __call__(self, i):
        with self.lock:
            return i < 150


def test_a_predicate_that_cannot_be_copied_still_deals_the_passing_rows(ids_url):
    per_rank = _per_shard(ids_url, predicate=in_lambda(["id"], _Locked()))
    assert [len(r) for r in per_rank] == [50, 50, 50]


def test_passing_rows_keep_no_indices_for_row_groups_whose_rows_all_pass():
    from petastorm.reader_impl.plan_balanced import PassingRows, passing_of

    rows = PassingRows.of([np.arange(4), np.array([1, 3]), np.array([], dtype=np.int64)], [4, 4, 0])
    assert np.asarray(rows).tolist() == [4, 2, 0]
    kept = passing_of(rows)
    assert kept[0] is None and kept[1].tolist() == [1, 3] and kept[1].dtype == np.int32


def test_a_filter_keeping_whole_row_groups_and_cutting_others(ids_url):
    # row groups of 25 rows: [0, 25) and [25, 50) pass whole, [50, 75) passes 13 rows (50..62), the rest none
    per_rank = _per_shard(ids_url, filters=[("id", "<", 63)], shuffle_row_drop_partitions=2)
    assert [len(r) for r in per_rank] == [21, 21, 21]
    assert sorted(sum(per_rank, [])) == list(range(63))
