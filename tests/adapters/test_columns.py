"""``petastorm.adapters.columns``: the column-batch helpers (the buffer's tests cover them in use)."""
import numpy as np
import pytest

from petastorm.adapters import column_buffer
from petastorm.adapters.columns import check_columns, concat_columns, num_rows, slice_columns
from petastorm.errors import PetastormSchemaError, PetastormTypeError


def test_helpers_count_cut_and_join_rows():
    batch = {"a": np.arange(6), "b": np.arange(12).reshape(6, 2)}
    assert num_rows(batch) == 6 and num_rows({}) == 0
    head, tail = slice_columns(batch, 0, 2), slice_columns(batch, 2, 6)
    joined = concat_columns([head, tail])
    assert all(np.array_equal(joined[k], batch[k]) for k in batch)


def test_check_columns_names_the_field_at_fault():
    check_columns({"a": np.arange(3), "b": np.zeros((3, 2))})  # aligned: nothing
    with pytest.raises(PetastormTypeError, match="'b' must be a numpy array of rows, got list"):
        check_columns({"a": np.arange(3), "b": [1, 2, 3]})
    with pytest.raises(PetastormSchemaError, match="'a' 3 rows, 'b' 2 rows"):
        check_columns({"a": np.arange(3), "b": np.arange(2)})


def test_column_buffer_still_exports_the_helpers():
    # modules and user code import them from petastorm.adapters.column_buffer
    assert column_buffer.num_rows is num_rows and column_buffer.slice_columns is slice_columns
    assert column_buffer.concat_columns is concat_columns
