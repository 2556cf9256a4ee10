"""The reader's resumable cursor and its saved state (petastorm.reader_impl.reader_state)."""
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from petastorm.errors import PetastormStateError
from petastorm.reader_impl.plan import PlanOptions, make_epoch_plan
from petastorm.reader_impl.reader_state import (
    KEY_DATASET_FINGERPRINT,
    KEY_EPOCH,
    KEY_OPTIONS,
    KEY_POSITION,
    KEY_ROWS_INTO_ITEM,
    KEY_SEED,
    KEY_VERSION,
    STATE_VERSION,
    ReaderCursor,
    check_cursor_in_plan,
    check_state_dict,
    dataset_fingerprint,
    fingerprint,
    make_state_dict,
)

DATASET = dataset_fingerprint(["part-0.parquet", "part-1.parquet"], [100, 100, 50])
OPTIONS = {"shuffle_rows": True, "shard_count": 2, "cur_shard": 0, "num_epochs": 3}
OPTIONS_FP = fingerprint(OPTIONS)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)


def _state(**cursor):
    return make_state_dict(ReaderCursor(**cursor), DATASET, OPTIONS_FP, seed=42, options=OPTIONS)


def test_fingerprint_is_stable_short_and_ignores_dict_order():
    fp = fingerprint({"a": 1, "b": [1, 2, 3]})
    assert fp == fingerprint({"b": (1, 2, 3), "a": 1})
    assert len(fp) == 16 and int(fp, 16) >= 0
    # pinned: a fingerprint saved today must still match in any later process or version
    assert fingerprint({"a": 1, "b": [1, 2, 3]}) == "bfa6ceebf136e483"  # sha256 of {"a":1,"b":[1,2,3]}
    assert fingerprint({"a": 1, "b": [1, 2, 4]}) != fp


def test_fingerprint_treats_numpy_values_like_python_values():
    assert fingerprint({"n": np.int64(3), "x": np.float32(0.5), "a": np.arange(3)}) == \
        fingerprint({"n": 3, "x": 0.5, "a": [0, 1, 2]})
    assert dataset_fingerprint(["f"], np.array([5, 6], dtype=np.int32)) == dataset_fingerprint(["f"], [5, 6])


def test_dataset_fingerprint_changes_with_paths_or_row_counts():
    assert dataset_fingerprint(["a", "b"], [10, 10]) != dataset_fingerprint(["a", "c"], [10, 10])
    assert dataset_fingerprint(["a", "b"], [10, 10]) != dataset_fingerprint(["a", "b"], [10, 11])


def test_fingerprint_of_a_non_json_value_names_its_type():
    with pytest.raises(TypeError, match="object"):
        fingerprint({"f": object()})


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 10 ** 6), st.integers(0, 10 ** 6), st.integers(0, 10 ** 6),
       st.one_of(st.none(), st.integers(-2 ** 80, 2 ** 80)), st.dictionaries(st.text(max_size=8), json_values,
                                                                              max_size=4))
def test_state_dict_survives_a_json_round_trip(epoch, position, rows_into_item, seed, extra):
    state = make_state_dict(ReaderCursor(epoch, position, rows_into_item), DATASET, OPTIONS_FP, seed,
                            extra=extra, options=OPTIONS)
    loaded = json.loads(json.dumps(state))
    cursor = check_state_dict(loaded, DATASET, OPTIONS_FP, options=OPTIONS)
    assert (cursor.epoch, cursor.position, cursor.rows_into_item, cursor.seed) == \
        (epoch, position, rows_into_item, seed)
    assert cursor.extra == json.loads(json.dumps(extra))
    assert loaded[KEY_VERSION] == STATE_VERSION
    # seeds are stored so that any JSON reader (doubles) keeps them exact
    assert not isinstance(loaded[KEY_SEED], int) or abs(loaded[KEY_SEED]) < 2 ** 53


def test_state_dict_is_small():
    state = _state(epoch=3, position=12345, rows_into_item=77)
    assert len(json.dumps(state)) < 500


def test_state_from_another_dataset_is_refused():
    other = dataset_fingerprint(["part-0.parquet", "part-1.parquet"], [100, 100, 51])
    with pytest.raises(PetastormStateError, match="different dataset.*dataset fingerprint"):
        check_state_dict(_state(), other, OPTIONS_FP)


def test_state_with_other_options_is_refused_naming_the_options():
    now = {**OPTIONS, "shard_count": 4, "shuffle_rows": False}
    with pytest.raises(PetastormStateError,
                       match=r"different reader options.*shard_count \(saved 2, now 4\).*shuffle_rows"):
        check_state_dict(_state(), DATASET, fingerprint(now), options=now)
    with pytest.raises(ValueError, match="different reader options"):  # works with `except ValueError`
        check_state_dict(_state(), DATASET, fingerprint(now))


def test_state_with_another_explicit_seed_is_refused_and_none_adopts_the_saved_seed():
    with pytest.raises(PetastormStateError, match="seed=42.*seed=7"):
        check_state_dict(_state(), DATASET, OPTIONS_FP, seed=7)
    assert check_state_dict(_state(), DATASET, OPTIONS_FP, seed=None).seed == 42
    assert check_state_dict(_state(), DATASET, OPTIONS_FP, seed=42).seed == 42


@pytest.mark.parametrize("version, match", [(2, "version 2.*newer"), (0, "version 0"), ("1", "'version'")])
def test_unknown_state_version_is_refused(version, match):
    state = {**_state(), KEY_VERSION: version}
    with pytest.raises(PetastormStateError, match=match):
        check_state_dict(state, DATASET, OPTIONS_FP)


@pytest.mark.parametrize("key", [KEY_VERSION, KEY_DATASET_FINGERPRINT, KEY_EPOCH, KEY_POSITION,
                                 KEY_ROWS_INTO_ITEM, KEY_SEED])
def test_state_missing_a_key_is_refused_naming_it(key):
    state = _state()
    del state[key]
    with pytest.raises(PetastormStateError, match=f"malformed.*'{key}' is missing"):
        check_state_dict(state, DATASET, OPTIONS_FP)


@pytest.mark.parametrize("key, value", [(KEY_POSITION, -1), (KEY_EPOCH, "one"), (KEY_ROWS_INTO_ITEM, 1.5),
                                        (KEY_POSITION, True), (KEY_DATASET_FINGERPRINT, 5),
                                        (KEY_SEED, "not-a-number"), ("extra", [1])])
def test_state_with_a_bad_value_is_refused_naming_the_key(key, value):
    state = {**_state(), key: value}
    with pytest.raises(PetastormStateError, match=f"malformed.*'{key}'"):
        check_state_dict(state, DATASET, OPTIONS_FP)


def test_a_state_that_is_not_a_dict_is_refused():
    with pytest.raises(PetastormStateError, match="must be a dict.*list"):
        check_state_dict([1, 2], DATASET, OPTIONS_FP)


def test_non_json_extra_is_refused_when_saving():
    with pytest.raises(PetastormStateError, match="'extra' is not JSON-serialisable"):
        make_state_dict(ReaderCursor(), DATASET, OPTIONS_FP, 1, extra={"f": object()})


def test_saved_options_are_canonical_json():
    state = make_state_dict(ReaderCursor(), DATASET, OPTIONS_FP, 1, options={"x": (1, 2), "n": np.int64(3)})
    assert state[KEY_OPTIONS] == {"x": [1, 2], "n": 3}
    json.dumps(state)


def test_cursor_outside_its_plan_is_refused():
    plan = make_epoch_plan([10, 20], PlanOptions(seed=0, shuffle_row_groups=False), 0)
    check_cursor_in_plan(ReaderCursor(0, 1, 20), plan)
    check_cursor_in_plan(ReaderCursor(0, 2, 0), plan)  # end of the epoch
    with pytest.raises(PetastormStateError, match="item 3.*only 2 items"):
        check_cursor_in_plan(ReaderCursor(0, 3, 0), plan)
    with pytest.raises(PetastormStateError, match="11 rows were read from item 0.*10 rows"):
        check_cursor_in_plan(ReaderCursor(0, 0, 11), plan)
