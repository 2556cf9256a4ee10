"""petastorm.tf_utils: values of datetime and nullable fields, against 0.12.1.

Expected values marked "recorded" were recorded from the original petastorm 0.12.1 (TensorFlow 2.16.2, numpy
1.26) reading the same dataset (written by our ``write_dataset``) through its public API.
"""
import numpy as np
import pytest
import tensorflow as tf

from petastorm import make_batch_reader, make_reader, write_dataset
from petastorm.codecs import NdarrayCodec, ScalarCodec
from petastorm.spark_types import spark_type
from petastorm.tf_utils import make_petastorm_dataset
from petastorm.unischema import Unischema, UnischemaField

DtSchema = Unischema("Dt", [
    UnischemaField("id", np.int64, (), ScalarCodec(spark_type("LongType")), False),
    UnischemaField("a_s", np.datetime64, (2,), NdarrayCodec(), False),
    UnischemaField("a_us", np.datetime64, (2,), NdarrayCodec(), False),
    UnischemaField("a_d", np.datetime64, (None,), NdarrayCodec(), False),
    UnischemaField("a_nat", np.datetime64, (2,), NdarrayCodec(), False),
    UnischemaField("s_ms", np.datetime64, (), NdarrayCodec(), False),
    UnischemaField("n_f32", np.float32, (), ScalarCodec(spark_type("FloatType")), True),
    UnischemaField("n_f64", np.float64, (), ScalarCodec(spark_type("DoubleType")), True),
    UnischemaField("n_i32", np.int32, (), ScalarCodec(spark_type("IntegerType")), True),
    UnischemaField("n_arr", np.float32, (2,), NdarrayCodec(), True),
    UnischemaField("ts", np.datetime64, (), ScalarCodec(spark_type("TimestampType")), True),
])


def _row(i):
    return dict(id=i, a_s=np.array(["2020-01-01T00:00:0%d" % i, "1970-01-01T00:00:01"], "datetime64[s]"),
                a_us=np.array([i, 1], "datetime64[us]"), a_d=np.array(["2020-01-01"] * (i % 2 + 1), "datetime64[D]"),
                a_nat=np.array(["NaT", "2020-01-01"], "datetime64[ms]"),
                s_ms=np.array(np.datetime64("NaT", "ms") if i == 1 else np.datetime64(5, "ms")),
                n_f32=None if i == 1 else i / 2, n_f64=None if i == 1 else i / 4, n_i32=None if i == 1 else i,
                n_arr=None if i == 1 else np.array([i, i], np.float32),
                ts=None if i == 2 else np.datetime64(i, "s"))


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    path = "file://" + str(tmp_path_factory.mktemp("tf_datetime_nulls"))
    write_dataset(path, DtSchema, [_row(i) for i in range(4)], workers_count=1, progress=False, overwrite=True)
    return path


def _values(url, fields, batched=False):
    factory = make_batch_reader if batched else make_reader
    with factory(url, schema_fields=["id"] + fields, reader_pool_type="dummy", shuffle_row_groups=False) as reader:
        dataset = make_petastorm_dataset(reader)
        return dataset.element_spec, [{k: v.numpy() for k, v in e._asdict().items()} for e in dataset]


def test_datetime_array_fields_are_nanoseconds_in_rows_as_the_original(url):
    # recorded from 0.12.1: an NdarrayCodec datetime64 field gives nanoseconds in rows, whatever its unit
    # (before: the count in the array's own unit: 1577836800 s, 0 us, 18262 days)
    spec, rows = _values(url, ["a_s", "a_us", "a_d", "s_ms"])
    assert spec.a_s.dtype == tf.int64 and spec.a_s.shape == (2,) and spec.a_d.shape.as_list() == [None]
    assert rows[0]["a_s"].tolist() == [1577836800000000000, 1000000000]
    assert rows[3]["a_s"].tolist() == [1577836803000000000, 1000000000]
    assert rows[2]["a_us"].tolist() == [2000, 1000]
    assert rows[0]["a_d"].tolist() == [1577836800000000000]
    assert rows[1]["a_d"].tolist() == [1577836800000000000] * 2
    assert [r["s_ms"] for r in rows] == [5000000, -9223372036854775808, 5000000, 5000000]  # recorded (NaT stored)


def test_nat_inside_a_datetime_array_is_kept_as_the_original(url):
    _, rows = _values(url, ["a_nat"])
    assert rows[0]["a_nat"].tolist() == [-9223372036854775808, 1577836800000000000]  # recorded from 0.12.1
    _, batches = _values(url, ["a_nat"], batched=True)
    assert batches[0]["a_nat"][0].tolist() == [-9223372036854775808, 1577836800000000000]


def test_datetime_array_batches_are_nanoseconds_like_the_row_values(url):
    # the original failed on every NdarrayCodec batch column; we give the rows' values, stacked
    _, batches = _values(url, ["a_s", "a_us"], batched=True)
    assert batches[0]["a_s"].tolist() == [[1577836800000000000 + i * 10 ** 9, 1000000000] for i in range(4)]
    assert batches[0]["a_us"].tolist() == [[i * 1000, 1000] for i in range(4)]


def test_ragged_datetime_batch_column_raises_naming_the_field(url):
    # before: a bare numpy ValueError ('setting an array element with a sequence') naming nothing
    with make_batch_reader(url, schema_fields=["id", "a_d"], reader_pool_type="dummy") as reader:
        with pytest.raises(tf.errors.OpError, match="field 'a_d' of shape \\(None,\\) holds values of different"):
            list(make_petastorm_dataset(reader))


def test_null_in_a_float_scalar_field_is_nan_in_rows_as_the_original(url):
    # recorded from 0.12.1: rows [0.0, nan, 1.0, 1.5] and [0.0, nan, 0.5, 0.75] (before: an error)
    spec, rows = _values(url, ["n_f32", "n_f64"])
    assert spec.n_f32.dtype == tf.float32 and spec.n_f64.dtype == tf.float64
    f32 = [r["n_f32"] for r in rows]
    assert np.isnan(f32[1]) and [f32[i] for i in (0, 2, 3)] == [0.0, 1.0, 1.5]
    assert rows[1]["n_f32"].dtype == np.float32
    f64 = [r["n_f64"] for r in rows]
    assert np.isnan(f64[1]) and [f64[i] for i in (0, 2, 3)] == [0.0, 0.5, 0.75]


@pytest.mark.parametrize("field", ["n_i32", "n_arr"])
def test_null_in_other_fields_raises_the_originals_error_in_rows(url, field):
    # recorded from 0.12.1: 'Encountered "n_i32"=None. Tensorflow does not support None values as a tensor.'
    with make_reader(url, schema_fields=["id", field], reader_pool_type="dummy", shuffle_row_groups=False) as reader:
        with pytest.raises(tf.errors.OpError, match=f'Encountered "{field}"=None. Tensorflow does not support None'):
            list(make_petastorm_dataset(reader))


def test_null_timestamp_raises_naming_the_field_in_rows_and_batches(url):
    # recorded from 0.12.1: rows failed ('Decoding field "ts" failed'); batches gave -2**63 (a made-up value).
    # before: -9223372036854775808 in both
    with make_reader(url, schema_fields=["id", "ts"], reader_pool_type="dummy", shuffle_row_groups=False) as reader:
        seen = []
        with pytest.raises(tf.errors.OpError, match='Encountered "ts"=None'):
            for row in make_petastorm_dataset(reader):
                seen.append(int(row.ts))
    assert seen == [0, 1000000]  # recorded: microseconds, the scalar field's own unit
    with make_batch_reader(url, schema_fields=["id", "ts"], reader_pool_type="dummy") as reader:
        with pytest.raises(tf.errors.OpError, match='Encountered "ts"=None in row 2 of a batch'):
            list(make_petastorm_dataset(reader))


def _transformed(url, field, fn, edit):
    from petastorm import TransformSpec

    spec = TransformSpec(fn, edit_fields=[edit], selected_fields=["id", field])
    return make_reader(url, reader_pool_type="dummy", shuffle_row_groups=False, transform_spec=spec)


def test_a_number_in_a_string_field_raises_naming_the_field(url):
    # before: bytes(5), five zero bytes, fed silently; recorded from 0.12.1: 'Unsupported object type int'
    with _transformed(url, "txt", lambda r: {**r, "txt": 5}, ("txt", np.str_, (), False)) as reader:
        with pytest.raises(tf.errors.OpError, match="field 'txt' \\(string in TensorFlow\\) got a value it cannot "
                                                    "hold: int.* \\(a string field takes str or bytes\\)"):
            list(make_petastorm_dataset(reader))


def test_a_string_in_a_float_field_raises_naming_the_field(url):
    # before: "ValueError: could not convert string to float: 'abc'" naming no field
    with _transformed(url, "x", lambda r: {**r, "x": "abc"}, ("x", np.float32, (), False)) as reader:
        with pytest.raises(tf.errors.OpError, match="field 'x' \\(float32 in TensorFlow\\) got a value it cannot "
                                                    "hold: str 'abc'"):
            list(make_petastorm_dataset(reader))


def test_an_int_too_large_for_its_field_raises_naming_the_field(url):
    # before: a bare OverflowError; recorded from 0.12.1: 2**40 in an int32 field silently became 0
    with _transformed(url, "x", lambda r: {**r, "x": 2 ** 40}, ("x", np.int32, (), False)) as reader:
        with pytest.raises(tf.errors.OpError, match="field 'x' \\(int32 in TensorFlow\\) got a value it cannot hold: "
                                                    "int 1099511627776"):
            list(make_petastorm_dataset(reader))
