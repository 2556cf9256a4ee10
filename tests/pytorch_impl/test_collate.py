"""petastorm.pytorch_impl.collate: decimal_friendly_collate (the original's) and columns_to_torch
(the default collate over whole columns).

Expected values marked "recorded from 0.12.1" were observed by calling the original petastorm 0.12.1
(with torch 2.13) through its public API as a black box.
"""
import collections
import datetime
from decimal import Decimal

import numpy as np
import pytest
import torch

from petastorm.pytorch import decimal_friendly_collate
from petastorm.pytorch_impl.collate import columns_to_torch
from petastorm.pytorch_impl.dtypes import sanitize_row

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
