"""petastorm.adapters.checks: the loaders' integer arguments and the settings check of a saved state."""
import numpy as np
import pytest

from petastorm.adapters.checks import check_settings, ensure_int
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
