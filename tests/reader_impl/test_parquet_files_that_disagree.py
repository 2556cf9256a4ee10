"""make_batch_reader on a store whose Parquet files disagree slightly on their schema, as files written at
different times by different tools do: the reader's schema comes from one file; a column of another type in
another file is cast to the schema's type where no value changes, and otherwise refused with a
``PetastormSchemaError`` naming the field and the file (an int64 value beyond int32 wrapped to another number, a
float beyond float32 became ``inf``, a fraction was cut, strings came through an integer field).
"""
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _fixtures.batches import concat_batches, read_batches

from petastorm.errors import PetastormSchemaError

_POOLS = ["thread", "dummy"]


def _two_files(root, first, second):
    """``a.parquet`` (the files are read in sorted order: the schema comes from it) and ``b.parquet``."""
    pq.write_table(pa.table(first), root / "a.parquet")
    pq.write_table(pa.table(second), root / "b.parquet")
    return "file://" + str(root)


def _read(url, pool, **kwargs):
    batches, schema = read_batches(url, reader_pool_type=pool, shuffle_row_groups=False, **kwargs)
    return concat_batches(batches), schema


@pytest.mark.parametrize("pool", _POOLS)
@pytest.mark.parametrize("first,second,expected", [
    (pa.array([1, 2], pa.int32()), pa.array([3, -4], pa.int64()), [1, 2, 3, -4]),
    (pa.array([2**40, 2], pa.int64()), pa.array([3, -4], pa.int32()), [2**40, 2, 3, -4]),
    (pa.array([1, 2], pa.int64()), pa.array([3, 4], pa.uint64()), [1, 2, 3, 4]),
    (pa.array([0.5, 1.5], pa.float32()), pa.array([2.25, -1e30], pa.float64()),
     [0.5, 1.5, 2.25, float(np.float32(-1e30))]),  # float32's precision: the schema's type
    (pa.array([1, 2], pa.int64()), pa.array([3.0, None], pa.float64()), [1, 2, 3, None]),
    (pa.array([True, False]), pa.array([1, 0], pa.int8()), [True, False, True, False]),
], ids=["int32_then_int64", "int64_then_int32", "int64_then_uint64", "float32_then_float64",
        "int64_then_whole_floats_with_a_null", "bool_then_zeros_and_ones"])
def test_a_column_of_another_number_type_in_another_file_is_cast_when_its_values_fit(tmp_path, first, second,
                                                                                       expected, pool):
    url = _two_files(tmp_path, {"v": first}, {"v": second})
    cols, schema = _read(url, pool)
    assert cols["v"].tolist() == expected
    assert schema.fields["v"].numpy_dtype in (np.int32, np.int64, np.float32, np.bool_)  # the first file's type


@pytest.mark.parametrize("pool", _POOLS)
@pytest.mark.parametrize("first,second,value", [
    (pa.array([1, 2], pa.int32()), pa.array([2**40, 3], pa.int64()), "1099511627776"),
    (pa.array([1, 2], pa.int32()), pa.array([2**40, None], pa.int64()), "1099511627776"),
    (pa.array([1, 2], pa.int64()), pa.array([2**63, 3], pa.uint64()), "9223372036854775808"),
    (pa.array([0.5, 1.5], pa.float32()), pa.array([1e300, 1.0], pa.float64()), "1e+300"),
    (pa.array([1, 2], pa.int64()), pa.array([1.5, 2.0], pa.float64()), "1.5"),
    (pa.array([1, 2], pa.int64()), pa.array([2.5, None], pa.float64()), "2.5"),
    (pa.array([True, False]), pa.array([2, 0], pa.int64()), "2"),
], ids=["int64_beyond_int32", "int64_beyond_int32_with_nulls", "uint64_beyond_int64", "float64_beyond_float32",
        "fraction_into_int64", "fraction_with_nulls_into_int64", "two_into_bool"])
def test_values_the_schemas_type_cannot_hold_are_refused_naming_field_value_and_file(tmp_path, first, second, value,
                                                                                      pool):
    """They wrapped (2**40 read as 0), became inf, or were cut (1.5 read as 1) silently, or raised a bare
    OverflowError."""
    url = _two_files(tmp_path, {"v": first}, {"v": second})
    with pytest.raises(PetastormSchemaError, match=rf"field 'v'.*{re.escape(value)}.*b\.parquet"):
        _read(url, pool)


@pytest.mark.parametrize("pool", _POOLS)
@pytest.mark.parametrize("first,second,words", [
    (pa.array([1, 2]), pa.array(["x", "y"]), "is int64 but a file holds it as Arrow string"),
    (pa.array([1, 2]), pa.array(["x", None], pa.large_string()), "is int64 but a file holds it as Arrow large_string"),
    (pa.array(["x", "y"]), pa.array([1, 2]), "is str but a file holds it as int64"),
    (pa.array([1, 2]), pa.array([[1], [2]]), "is a scalar but a file holds it as Arrow list"),
], ids=["strings_into_int", "nullable_strings_into_int", "ints_into_str", "lists_into_scalar"])
def test_values_of_another_kind_in_another_file_are_refused_naming_field_and_file(tmp_path, first, second, words,
                                                                                   pool):
    """They came through as they were: a batch of strings, or of lists, in a field of int64 scalars."""
    url = _two_files(tmp_path, {"id": [0, 1], "v": first}, {"id": [2, 3], "v": second})
    with pytest.raises(PetastormSchemaError, match=rf"field 'v' {words}.*schema_fields.*b\.parquet"):
        _read(url, pool)
    cols, _ = _read(url, pool, schema_fields=["id"])  # what the message offers
    assert cols["id"].tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("pool", _POOLS)
def test_files_with_their_columns_in_another_order_read_by_name(tmp_path, pool):
    url = _two_files(tmp_path, {"id": [0, 1], "x": [0.5, 1.5]}, {"x": [2.5, 3.5], "id": [2, 3]})
    cols, schema = _read(url, pool)
    assert list(schema.fields) == ["id", "x"]
    assert cols["id"].tolist() == [0, 1, 2, 3] and cols["x"].tolist() == [0.5, 1.5, 2.5, 3.5]


@pytest.mark.parametrize("pool", _POOLS)
def test_a_column_missing_from_a_later_file_is_refused_naming_it_and_the_file(tmp_path, pool):
    url = _two_files(tmp_path, {"id": [0, 1], "x": [0.5, 1.5]}, {"id": [2, 3]})
    with pytest.raises(PetastormSchemaError, match=r"b\.parquet.*no column 'x'.*schema_fields"):
        _read(url, pool)
    assert _read(url, pool, schema_fields=["id"])[0]["id"].tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("pool", _POOLS)
def test_a_column_only_a_later_file_has_is_not_in_the_schema(tmp_path, pool):
    url = _two_files(tmp_path, {"id": [0, 1]}, {"id": [2, 3], "x": [0.5, 1.5]})
    cols, schema = _read(url, pool)
    assert list(schema.fields) == ["id"] and cols["id"].tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("pool", _POOLS)
def test_a_nullable_column_in_one_file_and_a_required_one_in_another_read_alike(tmp_path, pool):
    url = _two_files(tmp_path, {"n": pa.array([1, None], pa.int64())},
                     {"n": pa.array([3, 4], pa.int64())})
    cols, schema = _read(url, pool)
    assert schema.fields["n"].nullable
    assert cols["n"].tolist() == [1, None, 3, 4]
