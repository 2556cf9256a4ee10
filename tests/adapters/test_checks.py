"""petastorm.adapters.checks: the loaders' integer arguments and the settings check of a saved state."""
import numpy as np
import pytest

from petastorm.adapters.checks import check_settings, ensure_int, state_batches, state_int, state_part
from petastorm.errors import PetastormArgumentError, PetastormStateError


@pytest.mark.parametrize("value", [4, np.int64(4), np.uint8(4)])
def test_integers_of_any_integer_type_are_accepted_as_ints(value):
    out = ensure_int("batch_size", value, 1)
    assert out == 4 and type(out) is int


@pytest.mark.parametrize("value", [4.0, 2.5, "4", True, np.bool_(True), None, [4]])
def test_a_value_that_is_no_integer_is_both_a_type_error_and_a_value_error(value):
    # the original's loaders raised TypeError for these (BatchedDataLoader(batch_size=4.0): "slice indices must
    # be integers", InMemBatchedDataLoader(num_epochs=2.0): "'float' object cannot be interpreted as an integer",
    # recorded from 0.12.1); code that catches TypeError or ValueError keeps working
    with pytest.raises(PetastormArgumentError, match=r"batch_size must be an integer >= 1, got ") as info:
        ensure_int("batch_size", value, 1)
    assert isinstance(info.value, TypeError) and isinstance(info.value, ValueError)


def test_below_the_minimum_is_a_value_error_naming_the_argument():
    with pytest.raises(PetastormArgumentError, match=r"prefetch must be an integer >= 0, got -1") as info:
        ensure_int("prefetch", -1, 0)
    assert not isinstance(info.value, TypeError)


def test_integral_floats_only_where_asked_and_none_only_where_allowed():
    assert ensure_int("batch_size", 4.0, 1, integral_float=True) == 4
    assert ensure_int("batch_size", np.float32(8), 1, integral_float=True) == 8
    with pytest.raises(TypeError, match="got 4.5"):
        ensure_int("batch_size", 4.5, 1, integral_float=True)
    assert ensure_int("num_epochs", None, 1, allow_none=True) is None


def test_settings_that_differ_are_each_named():
    with pytest.raises(PetastormStateError, match=r"batch_size \(saved 8, now 16\)") as info:
        check_settings({"batch_size": 8, "shuffle": True}, {"batch_size": 16, "shuffle": False}, "DataLoader")
    assert "shuffle (saved True, now False)" in str(info.value)
    with pytest.raises(PetastormStateError, match="'settings' must be a dict"):
        check_settings(None, {"batch_size": 8})


@pytest.mark.parametrize("value", [None, "3", -1, True, 2.0])
def test_a_saved_count_that_is_no_count_is_a_state_error_naming_the_key(value):
    with pytest.raises(PetastormStateError, match=r"malformed loader state: 'passes_done' must be an integer >= 0"):
        state_int({"passes_done": value}, "passes_done", "loader state")
    assert state_int({"passes_done": np.int64(2)}, "passes_done", "loader state") == 2
    assert state_int({}, "batches_served", "loader state", default=0) == 0


@pytest.mark.parametrize("error", [KeyError("reader"), TypeError("'NoneType' object is not iterable"),
                                   IndexError("index 0 is out of bounds"), AttributeError("no attribute 'items'"),
                                   OverflowError("too large"), ValueError("bad")])
def test_what_a_malformed_part_raises_while_loading_becomes_a_state_error_naming_the_part(error):
    with pytest.raises(PetastormStateError, match=r"malformed DataLoader state \('body'\): ") as info:
        with state_part("DataLoader state ('body')"):
            raise error
    assert info.value.__cause__ is error


def test_petastorm_errors_and_other_exceptions_pass_through_a_state_part_as_they_are():
    other = PetastormStateError("reader state was saved for a different dataset")
    with pytest.raises(PetastormStateError) as info, state_part("loader state"):
        raise other
    assert info.value is other
    with pytest.raises(RuntimeError, match="boom"), state_part("loader state"):
        raise RuntimeError("boom")


def test_the_batches_a_state_carries_must_be_dicts_of_columns_of_one_row_count():
    good = [{"id": np.arange(4), "x": np.zeros((4, 2))}, {"id": np.arange(2), "x": np.zeros((2, 2))}]
    assert state_batches(good, 4, "loader state") is good and state_batches(None, 4, "loader state") == []
    for bad in ["x", [None], [{}], [{"id": np.arange(5)}], [{"id": np.arange(4), "x": np.zeros(3)}],
                [{"id": np.arange(4)}, {"x": np.arange(4)}], [{"id": [1, 2]}], [{"id": np.int64(1)}]]:
        with pytest.raises(PetastormStateError, match=r"malformed loader state \('ready'\)"):
            state_batches(bad, 4, "loader state ('ready')")
