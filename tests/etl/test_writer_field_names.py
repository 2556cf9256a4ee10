"""Field names the rows' namedtuples cannot hold.

Before: write_dataset wrote a dataset with a field 'a b' (or 'class', '_x'), and make_reader /
make_batch_reader then failed deep inside with a bare namedtuple ValueError. 0.12.1 (recorded) accepts such a
Unischema and fails the same way in ``make_namedtuple`` ("Type names and field names must be valid
identifiers: 'a b'"). Now write_dataset refuses the schema up front, and the readers name the field and the way
out (``schema_fields``); the error is still a ValueError with the original's wording first.
"""
from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from petastorm import make_batch_reader
from petastorm.errors import PetastormSchemaError
from petastorm.etl.writer import write_dataset
from petastorm.unischema import Unischema, UnischemaField


@pytest.mark.parametrize("name, problem", [("a b", "is not a Python identifier"),
                                           ("c.d", "is not a Python identifier"),
                                           ("e=f", "is not a Python identifier"),
                                           ("1a", "is not a Python identifier"),
                                           ("class", "is a Python keyword"),
                                           ("_x", "starts with an underscore")])
def test_write_dataset_refuses_a_field_the_readers_could_not_return(tmp_path, name, problem):
    schema = Unischema("S", [UnischemaField("id", np.int32, (), None, False),
                             UnischemaField(name, np.int32, (), None, False)])
    with pytest.raises(PetastormSchemaError, match=f"field '{name}' {problem}.*rename the field"):
        write_dataset(str(tmp_path / "ds"), schema, [{"id": 1, name: 2}], workers_count=1, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_unicode_identifiers_are_fine(tmp_path):
    schema = Unischema("S", [UnischemaField("größe", np.int32, (), None, False)])
    write_dataset(str(tmp_path / "ds"), schema, [{"größe": 3}], workers_count=1, progress=False)
    with make_batch_reader("file://" + str(tmp_path / "ds"), workers_count=1) as reader:
        assert [int(v) for batch in reader for v in batch.größe] == [3]


def test_reading_a_store_with_such_a_column_names_it_and_schema_fields_gets_the_others(tmp_path):
    os.makedirs(tmp_path / "plain")
    pq.write_table(pa.table({"id": [1, 2], "a b": [3, 4]}), str(tmp_path / "plain" / "part-0.parquet"))
    url = "file://" + str(tmp_path / "plain")
    with pytest.raises(ValueError, match=r"valid identifiers: field 'a b' .* schema_fields=") as info:
        with make_batch_reader(url, workers_count=1) as reader:
            list(reader)
    assert isinstance(info.value, PetastormSchemaError)
    with make_batch_reader(url, workers_count=1, schema_fields=["id"]) as reader:
        assert [int(v) for batch in reader for v in batch.id] == [1, 2]
