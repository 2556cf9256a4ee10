"""The type of every decoded value, per codec and field type, in rows (make_reader) and batches
(make_batch_reader), as the original 0.12.1 gives them.

Recorded by running the original as a black box: a dataset of this schema written by its
``materialize_dataset`` (Spark) and read back with its ``make_reader`` / ``make_batch_reader``. Where the
original's make_batch_reader left codec fields as bytes, or turned a nullable integer column into float64
with NaN, we keep decoded arrays and None (see docs/migration.md); those entries say ours.
"""
from __future__ import annotations

import datetime
from decimal import Decimal

import numpy as np
import pytest

from petastorm import make_batch_reader, make_reader, write_dataset
from petastorm.codecs import CompressedImageCodec, CompressedNdarrayCodec, NdarrayCodec, ScalarCodec
from petastorm.spark_types import spark_type
from petastorm.unischema import Unischema, UnischemaField


def _f(name, dtype, shape, codec, nullable=False):
    return UnischemaField(name, dtype, shape, codec, nullable)


def _s(name):
    return ScalarCodec(spark_type(name))


SCHEMA = Unischema("TypesSchema", [
    _f("id", np.int64, (), _s("LongType")),
    _f("i32", np.int32, (), _s("IntegerType")),
    _f("i16", np.int16, (), _s("ShortType")),
    _f("i8", np.int8, (), _s("ByteType")),
    _f("f32", np.float32, (), _s("FloatType")),
    _f("f64", np.float64, (), _s("DoubleType")),
    _f("b", np.bool_, (), _s("BooleanType")),
    _f("s", np.str_, (), _s("StringType")),
    _f("by", np.bytes_, (), _s("BinaryType")),
    _f("dec", Decimal, (), ScalarCodec(spark_type("DecimalType", 10, 3))),
    _f("date", np.datetime64, (), _s("DateType")),
    _f("ts", np.datetime64, (), _s("TimestampType")),
    _f("nd", np.float32, (2, 3), NdarrayCodec()),
    _f("ndv", np.int16, (None,), NdarrayCodec()),
    _f("cnd", np.float64, (2, 2), CompressedNdarrayCodec()),
    _f("png", np.uint8, (4, 5, 3), CompressedImageCodec("png")),
    _f("jpg", np.uint8, (4, 5, 3), CompressedImageCodec("jpeg")),
    _f("ns", np.str_, (), _s("StringType"), True),
    _f("ni", np.int32, (), _s("IntegerType"), True),
    _f("nnd", np.float32, (2,), NdarrayCodec(), True),
])


def _row(i):
    return {"id": i, "i32": np.int32(i), "i16": np.int16(i), "i8": np.int8(i), "f32": np.float32(i / 2),
            "f64": i / 4, "b": bool(i % 2), "s": "str_%d" % i, "by": b"bytes_%d" % i,
            "dec": Decimal("%d.125" % i), "date": datetime.date(2020, 1, 1 + i),
            "ts": datetime.datetime(2020, 1, 1, 0, 0, i),
            "nd": np.full((2, 3), i, np.float32), "ndv": np.arange(i + 1, dtype=np.int16),
            "cnd": np.full((2, 2), i, np.float64),
            "png": np.full((4, 5, 3), 10 * i, np.uint8), "jpg": np.full((4, 5, 3), 10 * i, np.uint8),
            "ns": None if i % 2 else "x", "ni": None if i % 2 else 7, "nnd": None if i % 2 else np.ones(2, np.float32)}


#: make_reader: (type of row 0's value, its dtype or None); row 1 holds None in the nullable fields.
ROW_TYPES = {
    "id": (np.int64, "int64"), "i32": (np.int32, "int32"), "i16": (np.int16, "int16"), "i8": (np.int8, "int8"),
    "f32": (np.float32, "float32"), "f64": (np.float64, "float64"), "b": (np.bool_, "bool"),
    "s": (np.str_, "<U5"), "by": (np.bytes_, "|S7"), "dec": (Decimal, None),
    "date": (np.datetime64, "datetime64[D]"), "ts": (np.datetime64, "datetime64[us]"),
    "nd": (np.ndarray, "float32"), "ndv": (np.ndarray, "int16"), "cnd": (np.ndarray, "float64"),
    "png": (np.ndarray, "uint8"), "jpg": (np.ndarray, "uint8"),
    "ns": (np.str_, "<U1"), "ni": (np.int32, "int32"), "nnd": (np.ndarray, "float32"),
}

#: make_batch_reader: (column dtype, type of its elements). Ours where marked.
BATCH_TYPES = {
    "id": ("int64", np.int64), "i32": ("int32", np.int32), "i16": ("int16", np.int16), "i8": ("int8", np.int8),
    "f32": ("float32", np.float32), "f64": ("float64", np.float64), "b": ("bool", np.bool_),
    "s": ("<U5", np.str_), "by": ("object", bytes), "dec": ("object", Decimal),
    "date": ("object", datetime.date),
    "nd": ("float32", np.ndarray),  # ours: decoded (the original: object array of npy bytes)
    "cnd": ("float64", np.ndarray),  # ours: decoded
    "png": ("uint8", np.ndarray), "jpg": ("uint8", np.ndarray),  # ours: decoded
    "ndv": ("object", np.ndarray),  # ours: decoded arrays of each row's length
    "ns": ("object", str),  # ours: None stays None (the original's '<U4' array held the string 'None')
    "ni": ("object", np.int32),  # ours: None stays None (the original: float64 with NaN)
    "nnd": ("object", np.ndarray),
}


@pytest.fixture(scope="module")
def types_dataset(tmp_path_factory):
    url = str(tmp_path_factory.mktemp("types") / "ds")
    write_dataset(url, SCHEMA, [_row(i) for i in range(4)], workers_count=1, progress=False)
    return "file://" + url


@pytest.mark.parametrize("pool", ["dummy", "process"])
def test_row_values_have_the_originals_types_for_every_codec_and_field_type(types_dataset, pool):
    with make_reader(types_dataset, reader_pool_type=pool, workers_count=1, shuffle_row_groups=False) as reader:
        rows = sorted(reader, key=lambda r: r.id)
    for name, (typ, dtype) in ROW_TYPES.items():
        value = getattr(rows[0], name)
        assert type(value) is typ, (name, type(value))
        if dtype is not None:
            assert str(value.dtype) == dtype, (name, value.dtype)
    for name in ("ns", "ni", "nnd"):
        assert getattr(rows[1], name) is None, name
    assert rows[1].s == "str_1" and rows[1].by == b"bytes_1"


@pytest.mark.parametrize("pool", ["dummy", "process"])
def test_batch_columns_have_the_originals_dtypes_and_element_types(types_dataset, pool):
    with make_batch_reader(types_dataset, reader_pool_type=pool, workers_count=1, shuffle_row_groups=False) as reader:
        (batch,) = list(reader)
    for name, (dtype, elem) in BATCH_TYPES.items():
        column = getattr(batch, name)
        assert isinstance(column, np.ndarray) and str(column.dtype) == dtype, (name, column.dtype)
        present = [v for v in column if v is not None]
        assert all(type(v) is elem for v in present), (name, {type(v) for v in present})
    assert batch.ts.dtype.kind == "M"
    assert list(batch.s) == ["str_0", "str_1", "str_2", "str_3"]
    assert list(batch.date) == [datetime.date(2020, 1, d) for d in (1, 2, 3, 4)]


def test_make_reader_predicate_sees_numpy_str_values(types_dataset):
    seen = []

    from petastorm.predicates import in_lambda

    with make_reader(types_dataset, reader_pool_type="dummy",
                     predicate=in_lambda(["s"], lambda s: seen.append(type(s)) or True)) as reader:
        rows = list(reader)
    assert len(rows) == 4 and set(seen) == {np.str_}
