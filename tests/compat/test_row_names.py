"""The names of the schemas and row types the readers give, recorded from the original 0.12.1 (black box, on
the shared all_codecs_0.12.1 dataset, which has a field called ``name``)."""
from __future__ import annotations

import os

import numpy as np
import pytest

from petastorm import make_batch_reader, make_reader
from petastorm.transform import TransformSpec
from petastorm.unischema import Unischema, UnischemaField


@pytest.fixture
def url(testdata_dir):
    return "file://" + os.path.join(testdata_dir, "original-0.12.1", "all_codecs_0.12.1")


def test_unischema_rows_are_named_schema_view():
    s = Unischema("S", [UnischemaField("a", np.int32, (), None, False), UnischemaField("b", np.int32, (), None, False)])
    assert type(s.make_namedtuple(a=1, b=2)).__name__ == "S_view"            # recorded
    view = s.create_schema_view([s.a])
    assert view._name == "S_view" and type(view.make_namedtuple(a=1)).__name__ == "S_view_view"  # recorded


@pytest.mark.parametrize("make", [make_reader, make_batch_reader])
@pytest.mark.parametrize("schema_fields, schema_name, row_name", [
    (None, "AllCodecsSchema", "AllCodecsSchema_view"),
    ([], "AllCodecsSchema", "AllCodecsSchema_view"),
    (["id.*"], "AllCodecsSchema_view", "AllCodecsSchema_view_view"),
    (["id", "f64"], "AllCodecsSchema_view", "AllCodecsSchema_view_view"),
    (np.array([], dtype=object), "AllCodecsSchema", "AllCodecsSchema_view"),
    (np.array(["id"]), "AllCodecsSchema_view", "AllCodecsSchema_view_view"),
    ("values", "AllCodecsSchema_view", "AllCodecsSchema_view_view"),   # schema.fields.values(): every field
])
def test_reader_schema_and_row_names(url, make, schema_fields, schema_name, row_name):
    if isinstance(schema_fields, str) and schema_fields == "values":
        from petastorm.etl.dataset_metadata import get_schema_from_dataset_url

        schema_fields = get_schema_from_dataset_url(url).fields.values()
    with make(url, schema_fields=schema_fields, workers_count=1) as reader:
        row = next(reader)
        assert (reader.schema._name, type(row).__name__) == (schema_name, row_name)  # recorded from 0.12.1


@pytest.mark.parametrize("schema_fields, schema_name", [
    (None, "AllCodecsSchema_transformed"),            # a field called 'name' does not take the schema's name
    (["id", "f64"], "AllCodecsSchema_view_transformed"),
])
def test_transformed_schema_names(url, schema_fields, schema_name):
    spec = TransformSpec(lambda row: row, removed_fields=["id32"])
    with make_reader(url, schema_fields=schema_fields, transform_spec=spec, workers_count=1) as reader:
        row = next(reader)
        assert (reader.schema._name, type(row).__name__) == (schema_name, schema_name + "_view")  # recorded
