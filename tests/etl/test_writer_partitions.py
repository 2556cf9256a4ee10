"""write_dataset's Hive partition directories.

Before: every value was URI-escaped (``quote``): 'ü é' was written ``p=%C3%BC %C3%A9`` and 1e+20 ``p=1e%2B20``.
0.12.1's reader (legacy pyarrow dataset) does not unescape partition values, so it read '%C3%BC %C3%A9'
(silently changed) and failed on '1e%2B20' ("could not convert string to float", recorded from 0.12.1).
Now the values are escaped as Spark's ``partitionBy`` escapes them (only ``"#%'*/:=?\\{[]^``, control
characters and DEL), so 0.12.1 reads what it reads from a Spark-written dataset.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

from petastorm import make_batch_reader, make_reader
from petastorm.errors import PetastormArgumentError, PetastormSchemaError
from petastorm.etl.writer import write_dataset
from petastorm.unischema import Unischema, UnischemaField

VALUES = {  # value -> directory name, as Spark names it
    "ü é": "p=ü é",
    "東京": "p=東京",
    " lead+trail ": "p= lead+trail ",
    "a/b": "p=a%2Fb",
    "x=y": "p=x%3Dy",
    "100%": "p=100%25",
    "%2F": "p=%252F",
    "a\\b": "p=a%5Cb",
    "q?#*:": "p=q%3F%23%2A%3A",
    "tab\there": "p=tab%09here",
    ".": "p=.",
    "..": "p=..",
    None: "p=__HIVE_DEFAULT_PARTITION__",
}


def _write(path, values, dtype=np.str_, name="p"):
    schema = Unischema("P", [UnischemaField("id", np.int32, (), None, False),
                             UnischemaField(name, dtype, (), None, True)])
    rows = [{"id": i, name: v} for i, v in enumerate(values)]
    write_dataset(str(path), schema, rows, partition_by=name, workers_count=1, progress=False)


def test_partition_directories_are_named_as_spark_names_them(tmp_path):
    _write(tmp_path / "ds", list(VALUES))
    dirs = sorted(d for d in os.listdir(tmp_path / "ds") if d.startswith("p="))
    assert dirs == sorted(VALUES.values())


def test_partition_values_read_back_unchanged(tmp_path):
    values = list(VALUES)
    _write(tmp_path / "ds", values)
    with make_reader("file://" + str(tmp_path / "ds"), workers_count=1) as reader:
        got = {int(row.id): row.p for row in reader}
    assert got == dict(enumerate(values))


def test_a_float_partition_value_with_an_exponent_is_written_as_a_number(tmp_path):
    _write(tmp_path / "ds", [1e20, -0.5, 2.5e-7], dtype=np.float64)
    dirs = sorted(d for d in os.listdir(tmp_path / "ds") if d.startswith("p="))
    assert dirs == ["p=-0.5", "p=1e+20", "p=2.5e-07"]  # 0.12.1 parses each with float()
    with make_batch_reader("file://" + str(tmp_path / "ds"), workers_count=1) as reader:
        got = {i: p for batch in reader for i, p in zip(batch.id, batch.p)}
    assert got == {0: 1e20, 1: -0.5, 2: 2.5e-7}


@pytest.mark.parametrize("name", ["p=q", "p/q", "100%", "a\\b"])
def test_a_partition_field_whose_name_a_directory_cannot_hold_is_refused(tmp_path, name):
    with pytest.raises(PetastormArgumentError, match=r"partition_by: field .* rename the field"):
        _write(tmp_path / "ds", ["v"], name=name)
    assert not (tmp_path / "ds").exists()


def test_an_empty_string_in_a_non_nullable_partition_field_is_refused_naming_the_row(tmp_path):
    # before: written as the null partition and read back as None, a value the field does not allow
    schema = Unischema("P", [UnischemaField("id", np.int32, (), None, False),
                             UnischemaField("p", np.str_, (), None, False)])
    rows = ({"id": i, "p": "" if i == 70 else f"v{i % 3}"} for i in range(100))
    with pytest.raises(PetastormSchemaError, match=r"row 70 of the input: field 'p': an empty string"):
        write_dataset(str(tmp_path / "ds"), schema, rows, partition_by="p", workers_count=1, progress=False,
                      chunk_rows=8)
    assert list(tmp_path.iterdir()) == []


def test_an_empty_string_in_a_nullable_partition_field_reads_back_as_null_as_with_spark(tmp_path):
    _write(tmp_path / "ds", ["", "x"])
    with make_reader("file://" + str(tmp_path / "ds"), workers_count=1) as reader:
        assert {int(row.id): row.p for row in reader} == {0: None, 1: "x"}
