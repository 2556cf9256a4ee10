"""petastorm.pytorch: the facade's names, decimal_friendly_collate and the type promotions.

Expected values marked "recorded from 0.12.1" were observed by calling the original petastorm 0.12.1
(with torch 2.13) through its public API as a black box.
"""
import collections
import datetime
import inspect
from decimal import Decimal

import numpy as np
import pytest
import torch

import petastorm.pytorch as pt
from petastorm.errors import PetastormTypeError
from petastorm.pytorch import decimal_friendly_collate
from petastorm.pytorch_impl.collate import columns_to_torch
from petastorm.pytorch_impl.dtypes import promoted_dtype, sanitize_row, sanitize_value

D = Decimal


def _desc(x):
    """A compact, comparable description of a collated value (types, dtypes, shapes)."""
    if isinstance(x, torch.Tensor):
        return ("Tensor", str(x.dtype).replace("torch.", ""), tuple(x.shape))
    if isinstance(x, dict):
        return {k: _desc(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return (type(x).__name__, [_desc(v) for v in x])
    return (type(x).__name__, x)


# --- the facade -----------------------------------------------------------------------------------------------

def test_the_original_public_names_are_importable_from_petastorm_pytorch():
    # recorded from 0.12.1: the public names of petastorm.pytorch
    for name in ["DataLoader", "BatchedDataLoader", "InMemBatchedDataLoader", "LoaderBase",
                 "decimal_friendly_collate", "RandomShufflingBuffer", "NoopShufflingBuffer",
                 "BatchedRandomShufflingBuffer", "BatchedNoopShufflingBuffer"]:
        assert getattr(pt, name) is not None, name
        assert name in pt.__all__
    from petastorm.reader_impl.shuffling_buffer import NoopShufflingBuffer, RandomShufflingBuffer
    assert pt.RandomShufflingBuffer is RandomShufflingBuffer and pt.NoopShufflingBuffer is NoopShufflingBuffer


def test_dataloader_and_collate_signatures_are_the_originals():
    # recorded from 0.12.1
    sig = inspect.signature(pt.DataLoader)
    assert list(sig.parameters) == ["reader", "batch_size", "collate_fn", "shuffling_queue_capacity"]
    assert sig.parameters["batch_size"].default == 1
    assert sig.parameters["collate_fn"].default is decimal_friendly_collate
    assert sig.parameters["shuffling_queue_capacity"].default == 0
    assert list(inspect.signature(decimal_friendly_collate).parameters) == ["batch"]
    assert issubclass(pt.DataLoader, pt.LoaderBase)


def test_unknown_attribute_of_the_facade_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        pt.Nope  # noqa: B018


# --- decimal_friendly_collate (every expected value recorded from 0.12.1) --------------------------------------

@pytest.mark.parametrize("batch, expected", [
    ([D("1"), D("2")], ("list", [("Decimal", D("1")), ("Decimal", D("2"))])),
    (["a", "b"], ("list", [("str", "a"), ("str", "b")])),
    ([np.str_("a"), np.str_("b")], ("list", [("str_", "a"), ("str_", "b")])),
    ([b"a", b"b"], ("list", [("bytes", b"a"), ("bytes", b"b")])),
    ((D("1"), D("2")), ("tuple", [("Decimal", D("1")), ("Decimal", D("2"))])),
    (("a", "b"), ("tuple", [("str", "a"), ("str", "b")])),
    ([D("1"), "a"], ("list", [("Decimal", D("1")), ("str", "a")])),
    (["a", 1], ("list", [("str", "a"), ("int", 1)])),
    ([np.uint16(1), np.uint16(2)], ("Tensor", "uint16", (2,))),
    ([np.arange(3), np.arange(3)], ("Tensor", "int64", (2, 3))),
    ([1, 2], ("Tensor", "int64", (2,))),
    ([1.0, 2.0], ("Tensor", "float64", (2,))),
    ([True, False], ("Tensor", "bool", (2,))),
    ([torch.ones(2), torch.ones(2)], ("Tensor", "float32", (2, 2))),
    ([(1, D("1")), (2, D("2"))], ("list", [("Tensor", "int64", (2,)),
                                            ("tuple", [("Decimal", D("1")), ("Decimal", D("2"))])])),
    ([[1, "a"], [2, "b"]], ("list", [("Tensor", "int64", (2,)), ("tuple", [("str", "a"), ("str", "b")])])),
    ([[1, 2], [3]], ("list", [("Tensor", "int64", (2,))])),  # zip stops at the shortest
])
def test_decimal_friendly_collate_values(batch, expected):
    assert _desc(decimal_friendly_collate(batch)) == expected


def test_decimal_friendly_collate_nested_dicts_keep_decimals_and_strings_as_lists():
    batch = [{"a": 1, "d": D("1"), "s": "x", "n": {"x": np.float32(1), "y": D("2")}},
             {"a": 2, "d": D("3"), "s": "y", "n": {"x": np.float32(2), "y": D("4")}}]
    out = decimal_friendly_collate(batch)
    assert type(out) is dict and list(out) == ["a", "d", "s", "n"]
    assert out["a"].tolist() == [1, 2] and out["a"].dtype == torch.int64
    assert out["d"] == [D("1"), D("3")] and out["s"] == ["x", "y"]
    assert out["n"]["x"].dtype == torch.float32 and out["n"]["y"] == [D("2"), D("4")]
    # recorded from 0.12.1: an OrderedDict gives a plain dict, namedtuples give lists
    assert type(decimal_friendly_collate([collections.OrderedDict(a=1)] * 2)) is dict
    NT = collections.namedtuple("NT", "a b")
    assert _desc(decimal_friendly_collate([NT(1, "x"), NT(2, "y")])) == (
        "list", [("Tensor", "int64", (2,)), ("tuple", [("str", "x"), ("str", "y")])])
    # recorded from 0.12.1: a list of Decimals inside dicts is transposed into tuples
    assert decimal_friendly_collate([{"d": [D("1"), D("2")]}, {"d": [D("3"), D("4")]}]) == {
        "d": [(D("1"), D("3")), (D("2"), D("4"))]}
    assert decimal_friendly_collate([{"a": D("1")}, {"a": None}]) == {"a": [D("1"), None]}


@pytest.mark.parametrize("batch, error, match", [
    ([], IndexError, "list index out of range"),
    (D("1"), TypeError, "not subscriptable"),
    ([{"a": 1}, {"b": 2}], KeyError, "a"),
    ([1, "a"], TypeError, "invalid data type"),
    ([datetime.datetime(2020, 1, 1)] * 2, TypeError, "default_collate"),
    ([None, None], TypeError, "default_collate"),
    ([{"a": 1}, {"a": None}], RuntimeError, "NoneType"),
])
def test_decimal_friendly_collate_errors_are_the_originals(batch, error, match):
    # recorded from 0.12.1 (the messages after 'default_collate' are torch's own)
    with pytest.raises(error, match=match):
        decimal_friendly_collate(batch)


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


def test_the_originals_private_sanitize_helper_promotes_in_place():
    row = {"a": np.zeros(2, np.uint16), "b": np.bool_(False)}
    assert pt._sanitize_pytorch_types(row) is None
    assert row["a"].dtype == np.int32 and type(row["b"]) is np.uint8


# --- columns_to_torch: the default collate over whole columns -------------------------------------------------

def test_columns_to_torch_equals_the_default_collate_of_the_same_rows():
    columns = {"i": np.arange(4, dtype=np.int64), "u16": np.arange(4, dtype=np.uint16).reshape(2, 2)[[0, 1, 0, 1]],
               "b": np.array([True, False, True, False]), "f": np.ones((4, 3), np.float32),
               "s": np.array(["a", "b", "c", "d"]), "d": np.array([D(1), D(2), D(3), D(4)], dtype=object)}
    out = columns_to_torch(columns)
    rows = [sanitize_row({k: v[i] for k, v in columns.items()}) for i in range(4)]
    expected = decimal_friendly_collate(rows)
    assert list(out) == list(expected)
    for k in ["i", "u16", "b", "f"]:
        assert out[k].dtype == expected[k].dtype and torch.equal(out[k], expected[k]), k
    assert out["s"] == expected["s"] and out["d"] == expected["d"]


def test_columns_to_torch_makes_writable_tensors_of_read_only_columns():
    col = np.arange(6, dtype=np.float32)
    col.flags.writeable = False
    t = columns_to_torch({"x": col})["x"]
    t += 1  # must not touch (or crash on) the read-only buffer
    assert col.tolist() == list(range(6)) and t.tolist() == [float(i + 1) for i in range(6)]


@pytest.mark.parametrize("column, match", [
    (np.array([1, None], dtype=object), r"Found None in c$"),
    (np.array(["a", None], dtype=object), r"Found None in c$"),
    (np.array([["a", "b"], ["c", "d"]]), r"arrays of string or object classes\. Found in field c\.$"),
    (np.array(["2020-01-01", "2020-01-02"], dtype="datetime64[D]"), r"field 'c': torch has no tensor type"),
    (np.array([datetime.date(2020, 1, 1)] * 2, dtype=object), r"field 'c'"),
])
def test_columns_to_torch_errors_name_the_field(column, match):
    with pytest.raises(TypeError, match=match):
        columns_to_torch({"c": column})


def test_object_columns_of_numbers_or_arrays_become_tensors():
    col = np.empty(2, dtype=object)
    col[:] = [np.ones(3, np.float32), np.zeros(3, np.float32)]
    out = columns_to_torch({"a": col, "n": np.array([np.int32(1), np.int32(2)], dtype=object)})
    assert out["a"].shape == (2, 3) and out["a"].dtype == torch.float32
    assert out["n"].tolist() == [1, 2]
    ragged = np.empty(2, dtype=object)
    ragged[:] = [np.ones(3), np.ones(2)]
    with pytest.raises(TypeError, match="field 'r': its values cannot form one tensor"):
        columns_to_torch({"r": ragged})
