"""ReaderMock and schema_data_generator_example: a reader stand-in for users' tests."""
from decimal import Decimal

import numpy as np
import pyspark.sql.types as T  # pyspark is a test dependency
import pytest

from petastorm.codecs import CompressedImageCodec, CompressedNdarrayCodec, NdarrayCodec, ScalarCodec
from petastorm.ngram import NGram
from petastorm.test_util.reader_mock import ReaderMock, schema_data_generator_example
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


def test_yields_namedtuples_of_the_schema_forever():
    reader = ReaderMock(AllTypes, schema_data_generator_example)
    rows = [next(reader) for _ in range(50)]
    assert all(type(r)._fields == tuple(AllTypes.fields) for r in rows)
    for row in rows:
        for name, field in AllTypes.fields.items():
            assert _fits(field, getattr(row, name)), (name, getattr(row, name))


def test_generated_rows_encode_with_every_codec_of_the_schema():
    # What a user writes with these rows must be accepted by the codecs (no dtype/shape/channel errors).
    rng = np.random.default_rng(0)
    for i in range(20):
        row = schema_data_generator_example(AllTypes, rng)
        encoded = encode_row(AllTypes, row, i)
        img = AllTypes.png.codec.decode(AllTypes.png, encoded["png"])
        np.testing.assert_array_equal(img, row["png"])
        assert encoded["dec"] == row["dec"]


def test_decimals_fit_a_decimal_10_9_column():
    rng = np.random.default_rng(1)
    for _ in range(50):
        value = schema_data_generator_example(AllTypes, rng)["dec"]
        assert 0 <= value < 1 and -value.as_tuple().exponent <= 9


def test_variable_dimensions_vary_and_fixed_ones_do_not():
    rng = np.random.default_rng(2)
    shapes = {schema_data_generator_example(AllTypes, rng)["matrix"].shape for _ in range(30)}
    assert len(shapes) > 1
    assert all(s[0] == 4 and s[2] == 3 and 1 <= s[1] <= 6 for s in shapes)


def test_seeded_generator_is_reproducible():
    a = schema_data_generator_example(AllTypes, np.random.default_rng(7))
    b = schema_data_generator_example(AllTypes, np.random.default_rng(7))
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


def test_example_generator_gives_string_fields_numpy_str_as_make_reader_rows_do():
    schema = Unischema("S", [UnischemaField("s", np.str_, (), ScalarCodec(T.StringType()), False),
                             UnischemaField("plain", np.str_, (), None, False),
                             UnischemaField("b", np.bytes_, (), ScalarCodec(T.BinaryType()), False)])
    row = next(ReaderMock(schema, schema_data_generator_example))
    assert type(row.s) is np.str_ and type(row.plain) is np.str_ and type(row.b) is np.bytes_
