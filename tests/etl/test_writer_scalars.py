"""write_dataset with scalar values a ScalarCodec column would store changed.

0.12.1 (recorded: ``ScalarCodec(BooleanType()).encode(field, 'false')`` is True; ``ScalarCodec(FloatType())``
encodes 1e300 and decodes inf) stores both silently changed; so did we. Now each is an error naming the row
and the field, and nothing is published.
"""
from __future__ import annotations

import numpy as np
import pytest

from petastorm import make_reader
from petastorm.codecs import ScalarCodec
from petastorm.errors import PetastormSchemaError
from petastorm.etl.writer import write_dataset
from petastorm.spark_types import spark_type
from petastorm.unischema import Unischema, UnischemaField


def _schema(kind, dtype):
    return Unischema("S", [UnischemaField("id", np.int32, (), None, False),
                           UnischemaField("x", dtype, (), ScalarCodec(spark_type(kind)), False)])


@pytest.mark.parametrize("kind, dtype, value, message", [
    ("BooleanType", np.bool_, "false", "expects a boolean .* got the string 'false'"),
    ("BooleanType", np.bool_, b"0", "expects a boolean .* got the string b'0'"),
    ("FloatType", np.float32, 1e300, "does not fit the column type float32"),
    ("FloatType", np.float32, -1e39, "does not fit the column type float32"),
])
def test_a_scalar_that_would_be_stored_changed_is_refused(tmp_path, kind, dtype, value, message):
    rows = [{"id": i, "x": value if i == 5 else dtype(1)} for i in range(8)]
    with pytest.raises(PetastormSchemaError, match=f"row 5 of the input: field 'x'.*{message}"):
        write_dataset(str(tmp_path / "ds"), _schema(kind, dtype), rows, workers_count=1, progress=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kind, dtype, values", [
    ("BooleanType", np.bool_, [True, False, 0, 1, np.True_]),
    ("FloatType", np.float32, [float("inf"), float("-inf"), 3.4e38, 1e-50, 2]),
    ("DoubleType", np.float64, [1e300, float("inf"), -0.0]),
])
def test_values_the_column_holds_read_back_as_written(tmp_path, kind, dtype, values):
    rows = [{"id": i, "x": v} for i, v in enumerate(values)]
    write_dataset(str(tmp_path / "ds"), _schema(kind, dtype), rows, workers_count=1, progress=False)
    with make_reader("file://" + str(tmp_path / "ds"), workers_count=1) as reader:
        got = {int(r.id): r.x for r in reader}
    assert got == {i: dtype(v) for i, v in enumerate(values)}


@pytest.mark.parametrize("dtype, value, message", [
    (np.int32, 1.5, r"expects an integer \(int32\), got 1.5"),   # was stored as 1
    (np.int64, np.float64("nan"), r"expects an integer \(int64\), got np.float64\(nan\)"),
    (np.float32, 1e300, "does not fit the column type float32"),  # was stored as inf
])
def test_a_field_without_codec_refuses_a_number_its_column_would_change(tmp_path, dtype, value, message):
    schema = Unischema("N", [UnischemaField("x", dtype, (), None, False)])
    rows = [{"x": dtype(1)}, {"x": value}]
    with pytest.raises(PetastormSchemaError, match=f"row 1 of the input: field 'x'.*{message}"):
        write_dataset(str(tmp_path / "ds"), schema, rows, workers_count=1, progress=False)
    assert list(tmp_path.iterdir()) == []


def _field(codec_name):
    from petastorm.codecs import CompressedImageCodec, CompressedNdarrayCodec, NdarrayCodec

    codec = {"ndarray": NdarrayCodec(), "compressed": CompressedNdarrayCodec(), "png": CompressedImageCodec("png"),
             "native": None}[codec_name]
    return UnischemaField("x", np.uint16, (2, 3), codec, False)


@pytest.mark.parametrize("codec_name", ["ndarray", "compressed", "png", "native"])
def test_big_endian_arrays_read_back_in_native_byte_order(tmp_path, codec_name):
    # before: NdarrayCodec read back dtype('>u2') (torch.from_numpy refuses it), PNG refused the array
    value = np.arange(258, 264, dtype=">u2").reshape(2, 3)
    write_dataset(str(tmp_path / "ds"), Unischema("B", [_field(codec_name)]), [{"x": value}], workers_count=1,
                  progress=False)
    with make_reader("file://" + str(tmp_path / "ds"), workers_count=1) as reader:
        (got,) = [row.x for row in reader]
    assert got.dtype == np.dtype(np.uint16) and got.dtype.isnative
    np.testing.assert_array_equal(got, value)
