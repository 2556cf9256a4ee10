"""dataset_as_rdd's schema_fields, resolved by the readers' function (reader_impl.fields.resolve_fields), against
the real local Spark session. Expected values were recorded from the original 0.12.1 (black box: its
dataset_as_rdd on a 4-field dataset, 'S_view' rows without schema_fields, 'S_view_view' rows with them).
"""
import pytest

from petastorm.errors import PetastormArgumentTypeError, PetastormTypeError
from petastorm.etl.dataset_metadata import get_schema_from_dataset_url
from petastorm.spark_utils import dataset_as_rdd


def test_rows_are_named_as_the_originals_with_and_without_schema_fields(synthetic_dataset, spark_session):
    schema = get_schema_from_dataset_url(synthetic_dataset)
    # 0.12.1: '<schema>_view' rows without schema_fields, '<schema>_view_view' rows with them (even [])
    assert type(dataset_as_rdd(synthetic_dataset, spark_session).first()).__name__ == "SyntheticSchema_view"
    row = dataset_as_rdd(synthetic_dataset, spark_session, schema_fields=[schema.id, schema.id]).first()
    assert type(row).__name__ == "SyntheticSchema_view_view"
    assert row._fields == ("id",)  # 0.12.1: a field given twice is read once
    empty = dataset_as_rdd(synthetic_dataset, spark_session, schema_fields=()).first()
    assert type(empty).__name__ == "SyntheticSchema_view_view" and empty == ()


def test_bad_schema_fields_types_are_refused_before_any_spark_job(synthetic_dataset, spark_session):
    # 0.12.1: [3] -> ValueError ('Elements of "fields" must be ...'), 3 -> TypeError ('int' object is not
    # iterable); here one PetastormArgumentTypeError, both a ValueError and a TypeError, naming schema_fields
    with pytest.raises(ValueError, match='Elements of "fields" must be either a string') as info:
        dataset_as_rdd(synthetic_dataset, spark_session, schema_fields=[3])
    assert isinstance(info.value, PetastormTypeError)
    with pytest.raises(TypeError, match="schema_fields is int: 3") as info:
        dataset_as_rdd(synthetic_dataset, spark_session, schema_fields=3)
    assert isinstance(info.value, PetastormArgumentTypeError) and isinstance(info.value, ValueError)
