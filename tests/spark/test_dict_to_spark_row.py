"""dict_to_spark_row on bad input: a wrong shape or dtype, a missing or None non-nullable field.

Each refusal keeps 0.12.1's exception type and leads with its words (recorded from the original's public API,
black box), then says more: the field, what it expects and what came. The last test runs the README's flow
(``dict_to_spark_row`` in a Spark ``map``) with one bad row, and checks the error that reaches the user.
"""
import numpy as np
import pytest
from _fixtures.rows import DROP, changed
from pyspark.sql.types import IntegerType, StringType

from petastorm.codecs import CompressedImageCodec, CompressedNdarrayCodec, NdarrayCodec, ScalarCodec
from petastorm.errors import PetastormSchemaError, PetastormValueTypeError
from petastorm.unischema import Unischema, UnischemaField, dict_to_spark_row

Schema = Unischema("S", [
    UnischemaField("id", np.int32, (), ScalarCodec(IntegerType()), False),
    UnischemaField("image1", np.uint8, (4, 6, 3), CompressedImageCodec("png"), False),
    UnischemaField("array_4d", np.uint8, (None, 5, 2, None), NdarrayCodec(), False),
    UnischemaField("opt", np.str_, (), ScalarCodec(StringType()), True),
    UnischemaField("carr", np.float32, (3,), CompressedNdarrayCodec(), True),
    UnischemaField("nat", np.int64, (), None, False),
])


def _row(**changes):
    return changed({"id": 1, "image1": np.zeros((4, 6, 3), np.uint8), "array_4d": np.zeros((2, 5, 2, 7), np.uint8),
                    "nat": 5}, **changes)


def test_a_good_row_encodes_every_field_and_fills_missing_nullable_ones():
    row_dict = _row()
    row = dict_to_spark_row(Schema, row_dict)
    # recorded from 0.12.1: fields in schema order; int, bytearray, bytearray, None, None, int
    assert list(row.asDict()) == ["id", "image1", "array_4d", "opt", "carr", "nat"]
    assert [type(v).__name__ for v in row] == ["int", "bytearray", "bytearray", "NoneType", "NoneType", "int"]
    assert sorted(row_dict) == ["array_4d", "id", "image1", "nat"]  # the caller's dict is not changed
    assert type(dict_to_spark_row(Schema, _row(id=np.int32(3), nat=np.int64(4))).nat) is int


# 0.12.1's messages (all ValueError):
#   image (4, 6, 4)          'Unexpected dimensions of image1 feature, expected (4, 6, 3), got (4, 6, 4)'
#   image (4, 6)             'Unexpected dimensions of image1 feature, expected (4, 6, 3), got (4, 6)'
#   image uint16             "Unexpected type of image1 feature, expected <class 'numpy.uint8'>, got uint16"
#   array_4d (2, 5, 2)       'Unexpected dimensions of array_4d feature. Expected (None, 5, 2, None). Got (2, 5, 2)'
#   array_4d (2, 6, 2, 1)    'Unexpected dimensions of array_4d feature. Expected (None, 5, 2, None). Got (2, 6, 2, 1)'
#   array_4d int8            "Unexpected type of array_4d feature. Expected <class 'numpy.uint8'>. Got int8"
#   carr (4,)                'Unexpected dimensions of carr feature. Expected (3,). Got (4,)'
#   carr float64             "Unexpected type of carr feature. Expected <class 'numpy.float32'>. Got float64"
@pytest.mark.parametrize("name,value,lead,ours", [
    ("image1", np.zeros((4, 6, 4), np.uint8),
     r"Unexpected dimensions of image1 feature, expected \(4, 6, 3\), got \(4, 6, 4\)",
     "field 'image1' expects uint8 of shape (4, 6, 3), got uint8 of shape (4, 6, 4)"),
    ("image1", np.zeros((4, 6), np.uint8),
     r"Unexpected dimensions of image1 feature, expected \(4, 6, 3\), got \(4, 6\)",
     "field 'image1' expects uint8 of shape (4, 6, 3), got uint8 of shape (4, 6)"),
    ("image1", np.zeros((4, 6, 3), np.uint16),
     r"Unexpected type of image1 feature, expected <class 'numpy.uint8'>, got uint16",
     "field 'image1' expects uint8 of shape (4, 6, 3), got uint16"),
    ("array_4d", np.zeros((2, 5, 2), np.uint8),
     r"Unexpected dimensions of array_4d feature. Expected \(None, 5, 2, None\). Got \(2, 5, 2\)",
     "field 'array_4d' expects uint8 of shape (None, 5, 2, None), got uint8 of shape (2, 5, 2)"),
    ("array_4d", np.zeros((2, 6, 2, 1), np.uint8),
     r"Unexpected dimensions of array_4d feature. Expected \(None, 5, 2, None\). Got \(2, 6, 2, 1\)",
     "got uint8 of shape (2, 6, 2, 1)"),
    ("array_4d", np.zeros((2, 5, 2, 1), np.int8),
     r"Unexpected type of array_4d feature. Expected <class 'numpy.uint8'>. Got int8",
     "got int8 of shape (2, 5, 2, 1)"),
    ("carr", np.zeros((4,), np.float32),
     r"Unexpected dimensions of carr feature. Expected \(3,\). Got \(4,\)",
     "field 'carr' expects float32 of shape (3,), got float32 of shape (4,)"),
    ("carr", np.zeros((3,), np.float64),
     r"Unexpected type of carr feature. Expected <class 'numpy.float32'>. Got float64",
     "field 'carr' expects float32 of shape (3,), got float64"),
])
def test_a_wrong_shape_or_dtype_is_a_valueerror_naming_the_field_and_both_shapes(name, value, lead, ours):
    with pytest.raises(ValueError, match="^" + lead) as info:
        dict_to_spark_row(Schema, _row(**{name: value}))
    assert isinstance(info.value, PetastormSchemaError)
    assert ours in str(info.value)


@pytest.mark.parametrize("name", ["id", "image1", "array_4d", "nat"])
def test_a_missing_non_nullable_field_is_a_valueerror_naming_it(name):
    # 0.12.1: ValueError 'Field <name> is not found in the row_dict, but is not nullable.'
    with pytest.raises(ValueError, match=f"^Field {name} is not found in the row_dict, but is not nullable") as info:
        dict_to_spark_row(Schema, _row(**{name: DROP}))
    assert isinstance(info.value, PetastormSchemaError)
    assert f"no value in the row dict: ['{name}']" in str(info.value)
    assert "nullable=True" in str(info.value)  # the way out


def test_every_missing_non_nullable_field_is_listed():
    with pytest.raises(ValueError, match="^Field id is not found") as info:
        dict_to_spark_row(Schema, {"nat": 1})
    assert "['id', 'image1', 'array_4d']" in str(info.value)
    assert "its keys: ['nat']" in str(info.value)


@pytest.mark.parametrize("name", ["id", "image1", "nat"])
def test_none_in_a_non_nullable_field_is_a_valueerror_naming_it(name):
    # 0.12.1: ValueError 'Field {} is not "nullable", but got passes a None value' (the name left out)
    with pytest.raises(ValueError, match=f'^Field {name} is not "nullable", but got passes a None value'):
        dict_to_spark_row(Schema, _row(**{name: None}))


def test_none_in_a_nullable_field_is_kept():
    assert dict_to_spark_row(Schema, _row(carr=None, opt=None)).carr is None  # as 0.12.1


def test_values_of_a_wrong_kind_keep_0_12_1s_exception_types():
    # 0.12.1: TypeError "Expected a scalar as a value for field 'id'. Got a non-numpy type'<class 'numpy.ndarray'>'"
    with pytest.raises(TypeError, match="^Expected a scalar as a value for field 'id'") as info:
        dict_to_spark_row(Schema, _row(id=np.zeros(3)))
    assert isinstance(info.value, PetastormValueTypeError)
    # 0.12.1: ValueError "invalid literal for int() with base 10: 'x'"
    with pytest.raises(ValueError, match=r"^invalid literal for int\(\) with base 10: 'x'.*field 'id'"):
        dict_to_spark_row(Schema, _row(id="x"))
    # 0.12.1: ValueError 'Dictionary fields ... do not match schema fields ...'
    with pytest.raises(ValueError, match="^Dictionary fields") as info:
        dict_to_spark_row(Schema, _row(extra=1))
    assert "['extra']" in str(info.value)
    # 0.12.1 took a list for a dict and said 'Field id is not found in the row_dict' (a ValueError)
    with pytest.raises(ValueError, match="row_dict must be a dict"):
        dict_to_spark_row(Schema, [1, 2])


@pytest.mark.slow
def test_a_bad_row_in_a_spark_job_fails_it_with_the_field_and_shapes(spark_session):
    """The README's flow: dict_to_spark_row in a Spark map; row 3 holds an image of the wrong shape."""
    def row_generator(x):
        image = np.zeros((4, 6, 4) if x == 3 else (4, 6, 3), np.uint8)
        return {"id": x, "image1": image, "array_4d": np.zeros((1, 5, 2, 1), np.uint8), "nat": x}

    rows = spark_session.sparkContext.parallelize(range(6), 2).map(row_generator) \
        .map(lambda x: dict_to_spark_row(Schema, x))
    with pytest.raises(Exception) as info:
        spark_session.createDataFrame(rows, Schema.as_spark_schema()).count()
    assert "field 'image1' expects uint8 of shape (4, 6, 3), got uint8 of shape (4, 6, 4)" in str(info.value)
