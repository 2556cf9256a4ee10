"""petastorm.pytorch_impl.device: numpy columns -> tensors (the conversion both torch collate paths share)."""
import numpy as np
import pytest
import torch

from petastorm.errors import PetastormTypeError
from petastorm.pytorch_impl.collate import column_to_torch
from petastorm.pytorch_impl.device import column_to_tensor, numeric_to_tensor


def test_a_read_only_column_becomes_a_writable_tensor_and_the_column_is_untouched():
    col = np.arange(6, dtype=np.float32)
    col.flags.writeable = False
    t = numeric_to_tensor("x", col, None, "hint")
    t[0] = 42
    assert col[0] == 0 and t.tolist() == [42, 1, 2, 3, 4, 5]


def test_a_writable_contiguous_column_is_shared_and_a_promotion_is_a_new_array():
    col = np.arange(4, dtype=np.int64)
    assert numeric_to_tensor("x", col, None, "hint").data_ptr() == col.ctypes.data
    t = numeric_to_tensor("x", np.array([1, 65535], np.uint16), np.dtype(np.int32), "hint")
    assert t.dtype == torch.int32 and t.tolist() == [1, 65535]


@pytest.mark.parametrize("convert, hint", [
    (lambda col: column_to_tensor("when", col), "leave it out with schema_fields"),   # BatchedDataLoader
    (lambda col: column_to_torch("when", col), "use a collate_fn that handles it"),    # DataLoader
])
def test_a_dtype_torch_cannot_hold_names_the_field_and_what_to_do(convert, hint):
    col = np.array(["2020-01-01", "2020-01-02"], dtype="datetime64[D]")
    with pytest.raises(PetastormTypeError, match=r"field 'when': torch has no tensor type for numpy datetime64\[D\]"
                       ) as info:
        convert(col)
    assert hint in str(info.value) and isinstance(info.value, TypeError)
