"""Loader states survive ``torch.save`` / ``torch.load`` with its default ``weights_only=True``."""
import datetime
import io
import json
from decimal import Decimal

import numpy as np
import pytest
import torch

from petastorm.adapters.state_codec import TAG, decode_state, encode_state
from petastorm.errors import PetastormStateError


def _torch_roundtrip(obj):
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return torch.load(buf)  # weights_only=True: the default since torch 2.6


def _objects(values, shape=None):
    arr = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        arr[i] = v
    return arr if shape is None else arr.reshape(shape)


VALUES = [
    np.arange(12, dtype=np.float32).reshape(3, 4), np.array([True, False]), np.zeros((0, 3), np.int16),
    np.array(["ab", "c"]), np.array([b"x", b"yz"]), np.array(["2020-01-01", "NaT"], dtype="datetime64[us]"),
    np.arange(6, dtype=">i4")[::2], np.float16(1.5), np.uint64(2 ** 63 + 1), np.str_("s1"), np.bool_(True),
    np.datetime64("2021-03-04T05:06:07", "ns"), Decimal("1.250"), Decimal("-0E+3"), datetime.date(2020, 2, 29),
    datetime.datetime(2020, 1, 2, 3, 4, 5, 6), datetime.timedelta(days=-1, seconds=5, microseconds=7),
    _objects([Decimal("1"), None, "x"]), _objects([np.ones(2), np.zeros(2)]), _objects(["a", "b", "c", "d"], (2, 2)),
    2 ** 70, -1.5, None, "text", b"raw", b"", np.bytes_(b""), np.str_(""), np.array([b"", b""]), (1, "a"),
]


def _same(a, b):
    if isinstance(a, np.ndarray):
        return (isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape
                and all(_same(x, y) for x, y in zip(a.ravel().tolist() if a.dtype != object else a.ravel(),
                                                    b.ravel().tolist() if b.dtype != object else b.ravel())))
    if isinstance(a, np.generic):
        return type(a) is type(b) and a.dtype == b.dtype and a.tobytes() == b.tobytes()
    return type(a) is type(b) and (a == b or (a != a and b != b))


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_values_come_back_exactly_through_torch_load(value):
    state = {"rows": [{"v": value}], "nested": (value,)}
    back = decode_state(_torch_roundtrip(encode_state(state)))
    assert _same(value, back["rows"][0]["v"]) and _same(value, back["nested"][0])


def test_decoded_arrays_are_writable_copies():
    back = decode_state(_torch_roundtrip(encode_state({"a": np.arange(4)})))["a"]
    back[0] = 7
    assert back.tolist() == [7, 1, 2, 3]


def test_untagged_values_pass_through_decode():
    state = {"a": np.arange(3), "b": [1, {"c": Decimal("2")}]}
    assert decode_state(state)["b"] == [1, {"c": Decimal("2")}]


@pytest.mark.parametrize("bad", [{TAG: "ndarray", "dtype": "<f4"}, {TAG: "ndarray", "dtype": "<f4", "shape": [3],
                                                                         "data": b"\x00"}, {TAG: "nope"}])
def test_malformed_tagged_values_are_state_errors(bad):
    with pytest.raises(PetastormStateError, match="malformed loader state"):
        decode_state({"x": bad})


# --- digest ------------------------------------------------------------------------------------------------------

def test_the_digest_survives_pickle_and_torch_save_and_ignores_the_key_order():
    import pickle

    from petastorm.adapters.state_codec import state_digest

    state = encode_state({"rows": _objects([np.arange(3), Decimal("1.5"), "s", None]), "n": 3, "f": 0.1,
                          "when": datetime.date(2020, 1, 2), "blob": b"", "t": (1, [2, 3])})
    digest = state_digest(state)
    assert state_digest(pickle.loads(pickle.dumps(state))) == digest
    assert state_digest(_torch_roundtrip(state)) == digest
    assert state_digest(dict(reversed(list(state.items())))) == digest
    plain = {"epochs": {0: {"read": [(0, 5)]}}, "seed": 3, "f": 0.1, "none": None}
    assert state_digest(json.loads(json.dumps(plain))) == state_digest(plain)  # int keys and tuples come back
    raw = {"a": np.arange(4, dtype=np.float32), "m": np.array(["2020-01-01"], dtype="datetime64[D]"), "s": np.int64(7)}
    assert state_digest(pickle.loads(pickle.dumps(raw))) == state_digest(raw)


@pytest.mark.parametrize("change", [
    lambda s: s["rows"].pop(),                          # a buffered row dropped (a truncated state)
    lambda s: s["rows"].append(1),                      # one added
    lambda s: s.__setitem__("n", 4),                    # a number edited
    lambda s: s.__setitem__("n", True),                 # another type with an equal value
    lambda s: s["col"].__setitem__(1, 9),               # one value of an array
    lambda s: s.__setitem__("col", s["col"][:2]),       # an array cut
    lambda s: s.__setitem__("blob", s["blob"][:-1]),    # bytes cut
])
def test_a_state_changed_after_it_was_saved_is_refused(change):
    from petastorm.adapters.state_codec import check_digest, with_digest

    state = with_digest({"rows": [1, 2, 3], "n": 1, "col": np.arange(4), "blob": b"abc"})
    check_digest(state, "DataLoader state")  # as saved: accepted
    change(state)
    with pytest.raises(PetastormStateError, match=r"DataLoader state was changed or cut after state_dict\(\)"):
        check_digest(state, "DataLoader state")


def test_a_state_without_a_digest_is_refused_naming_it():
    from petastorm.adapters.state_codec import check_digest

    with pytest.raises(PetastormStateError, match="my state has no digest"):
        check_digest({"rows": [1]}, "my state")  # an edit with the digest removed would go unnoticed
