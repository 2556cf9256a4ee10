"""petastorm.adapters.nulls: numeric batch columns with nulls as the original's batch reader gave them."""
import numpy as np

from petastorm.adapters.nulls import nullable_numbers_as_nan


def test_nullable_numbers_as_nan_keeps_one_float_dtype_and_refuses_the_rest():
    col = np.array([np.float16(1), None], dtype=object)
    assert nullable_numbers_as_nan(col).dtype == np.float16
    assert nullable_numbers_as_nan(np.array([np.float32(1), np.float64(2), None], dtype=object)).dtype == np.float64
    assert nullable_numbers_as_nan(np.array([1, None], dtype=object)).dtype == np.float64
    assert nullable_numbers_as_nan(np.array([None, None], dtype=object)).dtype == np.float64
    for other in (["a", None], [True, None], [np.array([1]), None], [1, 2]):
        arr = np.empty(len(other), dtype=object)
        arr[:] = other
        assert nullable_numbers_as_nan(arr) is None  # not numbers with nulls: the caller raises its own error
