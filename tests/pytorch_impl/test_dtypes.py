"""petastorm.pytorch_impl.dtypes: the type promotions of the original's ``_sanitize_pytorch_types``.

Expected values marked "recorded from 0.12.1" were observed by calling the original petastorm 0.12.1
(with torch 2.13) through its public API as a black box.
"""
import datetime
from decimal import Decimal

import numpy as np
import pytest

from petastorm.errors import PetastormTypeError
from petastorm.pytorch_impl.dtypes import promoted_dtype, sanitize_row, sanitize_value

D = Decimal


# --- type promotions (recorded from 0.12.1's _sanitize_pytorch_types) ------------------------------------------

@pytest.mark.parametrize("dtype, expected", [
    ("bool", "uint8"), ("uint16", "int32"), ("uint32", "int64"),
    ("int8", "int8"), ("uint8", "uint8"), ("int16", "int16"), ("int32", "int32"), ("int64", "int64"),
    ("uint64", "uint64"), ("float16", "float16"), ("float32", "float32"), ("float64", "float64"),
    ("complex64", "complex64"), ("datetime64[ns]", "datetime64[ns]"), ("timedelta64[s]", "timedelta64[s]"),
])
def test_array_promotions(dtype, expected):
    assert promoted_dtype(dtype) == np.dtype(expected)
    row = {"f": np.zeros(2, dtype=dtype)}
    sanitize_row(row)
    assert row["f"].dtype == np.dtype(expected)
    assert sanitize_value("f", np.array(5, dtype=dtype)).dtype == np.dtype(expected)  # 0-d arrays too


@pytest.mark.parametrize("value, expected_type", [
    (np.bool_(True), np.uint8), (np.uint16(1), np.uint16), (np.uint32(1), np.uint32), (np.int8(1), np.int8),
    (np.float16(1), np.float16), (np.str_("x"), np.str_), (np.bytes_(b"x"), np.bytes_), ("x", str),
    (b"x", bytes), (D("1.5"), Decimal), (datetime.datetime(2020, 1, 1), datetime.datetime),
    (datetime.date(2020, 1, 1), datetime.date), (5, int), (1.5, float), (True, bool), ([1, 2], list),
])
def test_scalar_values_keep_their_type_except_numpy_bool(value, expected_type):
    out = sanitize_value("f", value)
    assert type(out) is expected_type
    assert out == value


@pytest.mark.parametrize("dtype", ["U3", "S3", "object"])
def test_arrays_of_strings_or_objects_are_refused_with_the_original_message(dtype):
    with pytest.raises(TypeError, match=r"^Pytorch does not support arrays of string or object classes\. "
                                        r"Found in field arr\.$"):
        sanitize_row({"arr": np.zeros(2, dtype=dtype)})
    # with a user collate_fn they are passed on (the original broke string columns even there)
    arr = np.array(["a", "b"], dtype=dtype if dtype != "S3" else "S1")
    assert sanitize_value("arr", arr, strings_ok=True) is arr


def test_none_is_refused_with_the_original_message():
    with pytest.raises(TypeError, match=r"^Pytorch does not support nullable fields\. Found None in maybe$"):
        sanitize_row({"id": np.int64(1), "maybe": None})
    with pytest.raises(PetastormTypeError):
        sanitize_value("maybe", None, strings_ok=True)
