"""ReaderMock, schema_data_generator_example (the original's zeros) and schema_data_generator_random: reader
stand-ins for users' tests."""
from decimal import Decimal

import numpy as np
import pyspark.sql.types as T  # pyspark is a test dependency
import pytest

from petastorm.codecs import CompressedImageCodec, CompressedNdarrayCodec, NdarrayCodec, ScalarCodec
from petastorm.ngram import NGram
from petastorm.test_util.reader_mock import (
    ReaderMock,
    schema_data_generator_example,
    schema_data_generator_random,
)
from petastorm.unischema import Unischema, UnischemaField, encode_row

AllTypes = Unischema("AllTypes", [
    UnischemaField("id", np.int64, (), ScalarCodec(T.LongType()), False),
    UnischemaField("id16", np.int16, (), ScalarCodec(T.ShortType()), False),
    UnischemaField("flag", np.bool_, (), ScalarCodec(T.BooleanType()), False),
    UnischemaField("f32", np.float32, (), ScalarCodec(T.FloatType()), False),
    UnischemaField("name", np.str_, (), ScalarCodec(T.StringType()), False),
    UnischemaField("dec", Decimal, (), ScalarCodec(T.DecimalType(10, 9)), False),
    UnischemaField("plain_u8", np.uint8, ()),
    UnischemaField("plain_list", np.int32, (None,)),
    UnischemaField("plain_str", np.str_, (), None, True),
    UnischemaField("png", np.uint8, (12, 10, 3), CompressedImageCodec("png"), False),
    UnischemaField("jpeg_any", np.uint8, (None, None, 3), CompressedImageCodec("jpeg"), False),
    UnischemaField("grey", np.uint16, (None, None), CompressedImageCodec("png"), False),
    UnischemaField("matrix", np.float32, (4, None, 3), NdarrayCodec(), False),
    UnischemaField("scalar_nd", np.float64, (), NdarrayCodec(), False),
    UnischemaField("strings", np.bytes_, (None,), NdarrayCodec(), False),
    UnischemaField("words", np.str_, (2, None), NdarrayCodec(), True),
    UnischemaField("times", np.datetime64, (3,), NdarrayCodec(), False),
    UnischemaField("znd", np.int8, (5, 5), CompressedNdarrayCodec(), False),
])


def _fits(field, value):
    if field.numpy_dtype is Decimal:
        return isinstance(value, Decimal)
    arr = np.asarray(value)
    if arr.shape != () or field.shape != ():
        if len(arr.shape) != len(field.shape):
            return False
        if any(e is not None and a != e for a, e in zip(arr.shape, field.shape)):
            return False
    return arr.dtype.type is np.dtype(field.numpy_dtype).type


@pytest.mark.parametrize("generator", [schema_data_generator_example, schema_data_generator_random])
def test_yields_namedtuples_of_the_schema_forever(generator):
    reader = ReaderMock(AllTypes, generator)
    rows = [next(reader) for _ in range(50)]
    assert all(type(r)._fields == tuple(AllTypes.fields) for r in rows)
    for row in rows:
        for name, field in AllTypes.fields.items():
            assert _fits(field, getattr(row, name)), (name, getattr(row, name))


def test_generated_rows_encode_with_every_codec_of_the_schema():
    # What a user writes with these rows must be accepted by the codecs (no dtype/shape/channel errors).
    rng = np.random.default_rng(0)
    for i in range(20):
        row = schema_data_generator_random(AllTypes, rng)
        encoded = encode_row(AllTypes, row, i)
        img = AllTypes.png.codec.decode(AllTypes.png, encoded["png"])
        np.testing.assert_array_equal(img, row["png"])
        assert encoded["dec"] == row["dec"]


def test_decimals_fit_a_decimal_10_9_column():
    rng = np.random.default_rng(1)
    for _ in range(50):
        value = schema_data_generator_random(AllTypes, rng)["dec"]
        assert 0 <= value < 1 and -value.as_tuple().exponent <= 9


def test_variable_dimensions_vary_and_fixed_ones_do_not():
    rng = np.random.default_rng(2)
    shapes = {schema_data_generator_random(AllTypes, rng)["matrix"].shape for _ in range(30)}
    assert len(shapes) > 1
    assert all(s[0] == 4 and s[2] == 3 and 1 <= s[1] <= 6 for s in shapes)


def test_seeded_generator_is_reproducible():
    a = schema_data_generator_random(AllTypes, np.random.default_rng(7))
    b = schema_data_generator_random(AllTypes, np.random.default_rng(7))
    for name in AllTypes.fields:
        np.testing.assert_array_equal(np.asarray(a[name]), np.asarray(b[name]))


def test_fetch_next_and_iteration_are_the_same_stream():
    counter = iter(range(10 ** 6))
    schema = Unischema("Counter", [UnischemaField("n", np.int64, ())])
    reader = ReaderMock(schema, lambda s: {"n": next(counter)})
    assert reader.fetch().n == 0
    assert reader.next().n == 1
    assert next(reader).n == 2
    assert [r.n for _, r in zip(range(3), reader)] == [3, 4, 5]
    assert reader.diagnostics["rows_read"] == 6


def test_generator_receives_the_schema_and_missing_fields_are_none():
    seen = []
    schema = Unischema("S", [UnischemaField("a", np.int64, ()), UnischemaField("b", np.int64, (), None, True)])

    def generator(s):
        seen.append(s)
        return {"a": 1}

    row = next(ReaderMock(schema, generator))
    assert seen == [schema]
    assert row.a == 1 and row.b is None


def test_generator_returning_unknown_fields_or_a_non_dict_is_an_error():
    schema = Unischema("S", [UnischemaField("a", np.int64, ())])
    with pytest.raises(ValueError, match="zzz"):
        next(ReaderMock(schema, lambda s: {"a": 1, "zzz": 2}))
    with pytest.raises(TypeError, match="dict"):
        next(ReaderMock(schema, lambda s: [1]))


def test_reader_attributes_match_a_row_reader():
    reader = ReaderMock(AllTypes, schema_data_generator_example)
    assert reader.schema is AllTypes
    assert reader.batched_output is False
    assert reader.is_batched_reader is False
    assert reader.ngram is None
    assert reader.last_row_consumed is False


def test_context_manager_stops_the_reader():
    with ReaderMock(AllTypes, schema_data_generator_example) as reader:
        next(reader)
        assert reader.stopped is False
    assert reader.stopped is True
    reader.join()  # safe to call again


def test_reset_keeps_yielding_rows():
    reader = ReaderMock(AllTypes, schema_data_generator_example)
    next(reader)
    reader.reset()
    assert type(next(reader))._fields == tuple(AllTypes.fields)


def test_bad_arguments_are_refused():
    with pytest.raises(TypeError, match="Unischema"):
        ReaderMock({"a": 1}, schema_data_generator_example)
    with pytest.raises(TypeError, match="callable"):
        ReaderMock(AllTypes, None)


def test_ngram_windows_have_each_offsets_fields_and_close_timestamps():
    schema = Unischema("Seq", [UnischemaField("ts", np.int64, ()), UnischemaField("x", np.float32, (2,)),
                               UnischemaField("y", np.int32, ())])
    ngram = NGram({-1: ["ts", "x"], 0: ["ts", "y"]}, delta_threshold=5, timestamp_field="ts")
    reader = ReaderMock(schema, schema_data_generator_example, ngram=ngram)
    assert reader.ngram is ngram
    for _ in range(10):
        window = next(reader)
        assert sorted(window) == [-1, 0]
        assert window[-1]._fields == ("ts", "x") and window[0]._fields == ("ts", "y")
        assert 0 <= window[0].ts - window[-1].ts <= 5
        assert np.asarray(window[-1].x).shape == (2,)


def test_random_generator_gives_string_fields_numpy_str_as_make_reader_rows_do():
    schema = Unischema("S", [UnischemaField("s", np.str_, (), ScalarCodec(T.StringType()), False),
                             UnischemaField("plain", np.str_, (), None, False),
                             UnischemaField("b", np.bytes_, (), ScalarCodec(T.BinaryType()), False)])
    row = next(ReaderMock(schema, schema_data_generator_random))
    assert type(row.s) is np.str_ and type(row.plain) is np.str_ and type(row.b) is np.bytes_


def test_example_generator_gives_the_originals_zero_row():
    # recorded from 0.12.1 (schema_data_generator_example): the same row every time, numpy arrays of zeros,
    # 0-d for scalars, every unknown dimension 10, '' / b'' strings, Decimal('0.0')
    rows = [schema_data_generator_example(AllTypes) for _ in range(2)]
    for row in rows:
        assert type(row["id"]) is np.ndarray and row["id"].shape == () and row["id"].dtype == np.int64
        assert row["id"] == 0 and row["f32"].dtype == np.float32 and row["f32"] == 0
        assert row["flag"].shape == () and not row["flag"]
        assert row["name"].dtype == np.dtype("<U1") and row["name"] == ""
        assert row["dec"] == Decimal("0.0") and str(row["dec"]) == "0.0"
        assert row["plain_list"].shape == (10,) and not row["plain_list"].any()
        assert row["jpeg_any"].shape == (10, 10, 3) and row["grey"].shape == (10, 10)
        assert row["matrix"].shape == (4, 10, 3) and row["matrix"].dtype == np.float32
        assert row["strings"].dtype == np.dtype("S1") and row["strings"].shape == (10,)
        assert row["words"].shape == (2, 10) and row["znd"].shape == (5, 5)
    for name in AllTypes.fields:
        np.testing.assert_array_equal(np.asarray(rows[0][name]), np.asarray(rows[1][name]))
    # the original raised numpy's "generic units" ValueError for a datetime64 field: ours gives the epoch
    assert rows[0]["times"].dtype == np.dtype("datetime64[us]") and (rows[0]["times"] == np.datetime64(0, "us")).all()


def test_random_generator_varies_from_row_to_row():
    reader = ReaderMock(AllTypes, schema_data_generator_random)
    rows = [next(reader) for _ in range(10)]
    assert len({float(row.f32) for row in rows}) > 1
    assert all(type(row.f32) is np.float32 for row in rows)   # numpy scalars, as make_reader gives
