"""The .npy header parser and codec helpers in petastorm.npy_format.

They must read every .npy that numpy writes (format versions 1, 2 and 3, C and Fortran order, both byte
orders), refuse object arrays (which would mean unpickling), and never touch ``ast.literal_eval``
(not thread-safe on CPython 3.11, python/cpython#106905).
"""
import ast
import contextlib
import io
import threading
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from petastorm.errors import PetastormSchemaError
from petastorm.npy_format import NpyHeader, array_to_npy_bytes, npy_bytes_to_array, parse_npy_header


def _npy(arr, version=None):
    buf = io.BytesIO()
    if version is None:
        np.save(buf, arr, allow_pickle=False)
    else:
        np.lib.format.write_array(buf, arr, version=version, allow_pickle=False)
    return buf.getvalue()


def _refuse(*args, **kwargs):
    raise AssertionError("ast.literal_eval was called: the npy parser must not use it")


@contextlib.contextmanager
def no_literal_eval():
    with mock.patch.object(ast, "literal_eval", _refuse):
        yield


@pytest.fixture(autouse=True)
def literal_eval_forbidden(request):
    """Tests in this module run with ``ast.literal_eval`` booby-trapped (hypothesis tests do it in the body,
    because hypothesis itself uses it while drawing examples)."""
    if request.node.get_closest_marker("hypothesis"):
        yield
        return
    with no_literal_eval():
        yield


@pytest.mark.parametrize("version", [(1, 0), (2, 0), (3, 0)])
def test_header_of_every_format_version_is_parsed(version):
    arr = np.arange(24, dtype=np.int32).reshape(2, 3, 4)
    raw = _npy(arr, version)
    assert raw[6] == version[0]
    header = parse_npy_header(raw)
    assert isinstance(header, NpyHeader)
    assert header.dtype == np.dtype("<i4")
    assert header.shape == (2, 3, 4)
    assert header.fortran_order is False
    assert raw[header.data_offset:] == arr.tobytes()
    np.testing.assert_array_equal(npy_bytes_to_array(raw), arr)


def test_fortran_order_array_is_read_with_the_right_element_order():
    arr = np.asfortranarray(np.arange(12, dtype=np.float64).reshape(3, 4))
    raw = _npy(arr)
    header = parse_npy_header(raw)
    assert header.fortran_order is True
    assert header.shape == (3, 4)
    out = npy_bytes_to_array(raw)
    np.testing.assert_array_equal(out, arr)
    assert out.shape == (3, 4)


@pytest.mark.parametrize("dtype", [">f4", ">i8", ">u2", ">c16", "<f4", "<i2"])
def test_explicit_byte_order_is_kept(dtype):
    arr = np.arange(6).astype(dtype).reshape(2, 3)
    raw = _npy(arr)
    header = parse_npy_header(raw)
    assert header.dtype == np.dtype(dtype)
    out = npy_bytes_to_array(raw)
    assert out.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(out, arr)


def test_object_arrays_are_refused_not_unpickled():
    arr = np.array([{"a": 1}, None], dtype=object)
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=True)
    with pytest.raises(PetastormSchemaError, match="object|Python objects"):
        parse_npy_header(buf.getvalue())
    with pytest.raises(PetastormSchemaError):
        npy_bytes_to_array(buf.getvalue())


def test_structured_dtype_is_refused_with_a_schema_error():
    arr = np.zeros(3, dtype=[("a", "<i4"), ("b", "<f8")])
    with pytest.raises(PetastormSchemaError):
        parse_npy_header(_npy(arr))


@pytest.mark.parametrize("raw", [b"", b"\x93NUMP", b"not an npy value at all", b"\x93NUMPY\x09\x00\x10\x00{}"])
def test_bytes_that_are_not_npy_give_a_schema_error(raw):
    with pytest.raises(PetastormSchemaError):
        parse_npy_header(raw)


def test_header_that_is_not_a_plain_dict_literal_is_refused():
    # A header that would need an evaluator to read (a call) is refused, never evaluated.
    header = b"{'descr': '<i4', 'fortran_order': False, 'shape': __import__('os').getpid(), }"
    header = header + b" " * (63 - len(header) % 64) + b"\n"
    raw = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + b"\x00" * 4
    with pytest.raises(PetastormSchemaError):
        parse_npy_header(raw)


@pytest.mark.parametrize("arr", [
    np.array(3.5, dtype=np.float32),                 # 0-d
    np.zeros((0,), dtype=np.int16),                  # empty
    np.zeros((3, 0, 2), dtype=np.uint8),             # empty with a zero dimension
    np.array([True, False, True]),
    np.array(["a", "bcd", ""], dtype=np.str_),
    np.array([b"x", b"yz"], dtype=np.bytes_),
    np.array(["2020-01-01T00:00:01"], dtype="datetime64[ns]"),
    np.arange(10, dtype=np.float16),
])
def test_unusual_arrays_round_trip(arr):
    raw = bytes(array_to_npy_bytes(arr))
    assert raw == _npy(arr)
    out = npy_bytes_to_array(raw)
    assert out.dtype == arr.dtype
    assert out.shape == arr.shape
    np.testing.assert_array_equal(out, arr)


def test_array_to_npy_bytes_is_exactly_what_np_save_writes():
    arr = np.random.default_rng(0).normal(size=(5, 7)).astype(np.float32)
    assert bytes(array_to_npy_bytes(arr)) == _npy(arr)


def test_decoding_accepts_memoryview_bytearray_and_uint8_arrays():
    arr = np.arange(8, dtype=np.int64)
    raw = _npy(arr)
    for buf in (raw, bytearray(raw), memoryview(raw), np.frombuffer(raw, dtype=np.uint8)):
        np.testing.assert_array_equal(npy_bytes_to_array(buf), arr)


_dtypes = st.sampled_from(["<i1", "<u1", "<i2", ">i2", "<u4", "<i8", ">u8", "<f2", "<f4", ">f8", "|b1", "<c8"])


@settings(max_examples=60, deadline=None)
@given(arr=hnp.arrays(dtype=_dtypes.map(np.dtype), shape=hnp.array_shapes(min_dims=0, max_dims=4, max_side=5)),
       fortran=st.booleans(), version=st.sampled_from([None, (1, 0), (2, 0), (3, 0)]))
def test_any_numeric_array_round_trips_through_the_parser(arr, fortran, version):
    if fortran:
        arr = np.asfortranarray(arr)
    raw = _npy(arr, version)
    with no_literal_eval():
        header = parse_npy_header(raw)
        out = npy_bytes_to_array(raw)
    assert header.shape == arr.shape
    assert header.dtype == arr.dtype
    np.testing.assert_array_equal(out, arr)


def test_parser_is_safe_to_call_from_many_threads_at_once():
    arrays = [np.arange(i + 1, dtype=np.float32).reshape(-1, 1) for i in range(32)]
    raws = [_npy(a) for a in arrays]
    errors = []

    def work():
        try:
            for _ in range(200):
                for a, raw in zip(arrays, raws):
                    if not np.array_equal(npy_bytes_to_array(raw), a):
                        errors.append("mismatch")
        except Exception as e:  # pragma: no cover - only on failure
            errors.append(repr(e))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_the_literal_eval_trap_is_armed():
    # numpy's own reader parses headers with ast.literal_eval: under the trap it fails, ours does not.
    raw = _npy(np.arange(3))
    with pytest.raises(AssertionError, match="literal_eval"):
        np.load(io.BytesIO(raw))
    np.testing.assert_array_equal(npy_bytes_to_array(raw), np.arange(3))


def _hand_made_npy(header_text: str, payload: bytes) -> bytes:
    header = header_text + " " * (63 - (10 + len(header_text)) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode("latin1") + payload


def test_header_keys_in_any_order_are_read():
    raw = _hand_made_npy("{'shape': (3, 4), 'fortran_order': False, 'descr': '<f4'}",
                         np.arange(12, dtype="<f4").tobytes())
    np.testing.assert_array_equal(npy_bytes_to_array(raw), np.arange(12, dtype="<f4").reshape(3, 4))


def test_python2_header_with_long_suffixes_is_read_like_numpy_does():
    raw = _hand_made_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (3L, 4L), }",
                         np.arange(12, dtype="<f4").tobytes())
    np.testing.assert_array_equal(npy_bytes_to_array(raw), np.arange(12, dtype="<f4").reshape(3, 4))


@pytest.mark.parametrize("shape_text", ["(3, x)", "(-1,)", "(100,)"])
def test_malformed_shape_gives_a_schema_error(shape_text):
    raw = _hand_made_npy("{'descr': '<f4', 'fortran_order': False, 'shape': %s, }" % shape_text, b"\x00" * 48)
    with pytest.raises(PetastormSchemaError):
        npy_bytes_to_array(raw)
