"""Property: a run interrupted after any number of rows and resumed yields, concatenated, exactly the
uninterrupted sequence - with shuffling, sharding, predicates, drop partitions, ngrams and several epochs."""
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from petastorm import make_batch_reader, make_reader
from petastorm.predicates import in_lambda

_SEQUENCES = {}


def _key(row):
    if isinstance(row, dict):  # ngram
        return tuple(int(row[k].id) for k in sorted(row))
    if hasattr(row, "id") and hasattr(row.id, "shape") and row.id.shape:
        return tuple(int(x) for x in row.id)  # batch
    return int(row.id)


def _odd(i):
    return i % 2 == 1


options_strategy = st.fixed_dictionaries({
    "seed": st.integers(0, 3),
    "shuffle_rows": st.booleans(),
    "shuffle_row_groups": st.booleans(),
    "shuffle_row_drop_partitions": st.sampled_from([1, 3]),
    "num_epochs": st.sampled_from([1, 2]),
    "shard": st.sampled_from([None, (0, 2), (1, 3)]),
    "shard_mode": st.sampled_from(["original", "balanced"]),
    "predicate": st.booleans(),
    "batched": st.booleans(),
    "ngram": st.booleans(),  # make_reader only (make_batch_reader refuses NGram fields, as the original)
})


def _ngram():
    from _fixtures.datasets import SyntheticSchema as S

    from petastorm.ngram import NGram

    return NGram({-1: [S.id, S.timestamp], 0: [S.id, S.value], 1: [S.id]}, delta_threshold=10,
                 timestamp_field=S.timestamp)


def _reader(url, opts, **extra):
    kwargs = dict(seed=opts["seed"], shuffle_rows=opts["shuffle_rows"], shuffle_row_groups=opts["shuffle_row_groups"],
                  shuffle_row_drop_partitions=opts["shuffle_row_drop_partitions"], num_epochs=opts["num_epochs"],
                  reader_pool_type="dummy", workers_count=1, shard_mode=opts["shard_mode"])
    if opts["shard"]:
        kwargs.update(cur_shard=opts["shard"][0], shard_count=opts["shard"][1])
    if opts["predicate"]:
        kwargs["predicate"] = in_lambda(["id"], _odd)
    if opts.get("ngram") and not opts["batched"]:
        kwargs["schema_fields"] = _ngram()
    kwargs.update(extra)
    return (make_batch_reader if opts["batched"] else make_reader)(url, **kwargs)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(opts=options_strategy, stop_fraction=st.floats(0, 1))
def test_resume_mid_epoch_yields_the_uninterrupted_sequence(synthetic_dataset, opts, stop_fraction):
    key = json.dumps(opts, sort_keys=True)
    if key not in _SEQUENCES:
        with _reader(synthetic_dataset, opts) as reader:
            _SEQUENCES[key] = [_key(r) for r in reader]
    full = _SEQUENCES[key]
    stop = int(round(stop_fraction * len(full)))
    with _reader(synthetic_dataset, opts) as reader:
        head = [_key(next(reader)) for _ in range(stop)]
        state = json.loads(json.dumps(reader.state_dict()))
    with _reader(synthetic_dataset, opts, resume_from=state) as reader:
        tail = [_key(r) for r in reader]
    assert head + tail == full


@pytest.mark.parametrize("pool,workers", [("thread", 3), ("process", 2)])
@pytest.mark.parametrize("shard,shard_mode,ngram", [(None, "original", False), ((1, 3), "original", False),
                                                     ((0, 2), "balanced", False), ((1, 2), "original", True)])
def test_resume_with_real_pools_matches_the_dummy_pool(synthetic_dataset, pool, workers, shard, shard_mode, ngram):
    # the same seed gives the dummy pool's sequence whatever the pool and worker count, with sharding and
    # ngrams too, and a resumed real pool continues it exactly
    opts = dict(seed=1, shuffle_rows=True, shuffle_row_groups=True, shuffle_row_drop_partitions=2, num_epochs=2,
                shard=shard, shard_mode=shard_mode, predicate=not ngram, batched=False, ngram=ngram)
    with _reader(synthetic_dataset, opts) as reader:
        full = [_key(r) for r in reader]
    assert len(full) >= 30
    with _reader(synthetic_dataset, opts, reader_pool_type=pool, workers_count=workers) as reader:
        assert [_key(r) for r in reader] == full
    with _reader(synthetic_dataset, opts, reader_pool_type=pool, workers_count=workers) as reader:
        head = [_key(next(reader)) for _ in range(len(full) // 2 + 1)]  # just into the second epoch
        state = reader.state_dict()
    with _reader(synthetic_dataset, opts, reader_pool_type=pool, workers_count=workers, resume_from=state) as reader:
        tail = [_key(r) for r in reader]
    assert head + tail == full


def test_load_state_dict_before_iterating(synthetic_dataset):
    with make_reader(synthetic_dataset, seed=2, shuffle_rows=True) as reader:
        full = [int(r.id) for r in reader]
    with make_reader(synthetic_dataset, seed=2, shuffle_rows=True) as reader:
        head = [int(next(reader).id) for _ in range(10)]
        state = reader.state_dict()
    with make_reader(synthetic_dataset, seed=2, shuffle_rows=True) as reader:
        reader.load_state_dict(state)
        assert head + [int(r.id) for r in reader] == full
    assert len(json.dumps(state)) < 2000  # small


def test_a_state_from_another_predicate_is_refused(synthetic_dataset):
    from petastorm.errors import PetastormStateError
    from petastorm.predicates import in_set

    with make_reader(synthetic_dataset, seed=1, predicate=in_set({1, 2, 3}, "id")) as reader:
        next(reader)
        state = reader.state_dict()
    with pytest.raises(PetastormStateError, match="predicate"):
        make_reader(synthetic_dataset, seed=1, predicate=in_set({10, 11, 12}, "id"), resume_from=state)


def test_a_state_pointing_past_the_plan_is_refused(synthetic_dataset):
    from petastorm.errors import PetastormStateError

    with make_reader(synthetic_dataset, seed=1) as reader:
        next(reader)
        state = reader.state_dict()
    state["position"] = 10 ** 6
    with pytest.raises(PetastormStateError, match="item"):
        make_reader(synthetic_dataset, seed=1, resume_from=state)
