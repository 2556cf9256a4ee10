"""write_dataset to a path that is a symbolic link to a dataset (``current -> v1``): ``overwrite=True`` replaces
the dataset the link names and keeps the link, leaving nothing behind (a ``current.__petastorm_old_*`` link was
left, and the old dataset kept, before the fix)."""
import os

import numpy as np
import pyarrow.parquet as pq

from petastorm.codecs import ScalarCodec
from petastorm.etl.writer import write_dataset
from petastorm.spark_types import spark_type
from petastorm.unischema import Unischema, UnischemaField

SCHEMA = Unischema("S", [UnischemaField("id", np.int64, (), ScalarCodec(spark_type("LongType")), False)])


def _ids(path):
    return sorted(pq.read_table(path).column("id").to_pylist())


def test_overwriting_through_a_link_replaces_the_dataset_it_names_and_keeps_the_link(tmp_path):
    write_dataset(str(tmp_path / "v1"), SCHEMA, [{"id": 1}], workers_count=1, progress=False)
    os.symlink(tmp_path / "v1", tmp_path / "current")
    result = write_dataset(str(tmp_path / "current"), SCHEMA, [{"id": 2}, {"id": 3}], workers_count=1,
                           progress=False, overwrite=True)
    assert sorted(os.listdir(tmp_path)) == ["current", "v1"]  # nothing left behind
    assert os.readlink(tmp_path / "current") == str(tmp_path / "v1")
    assert _ids(str(tmp_path / "current")) == _ids(str(tmp_path / "v1")) == [2, 3]
    assert result.num_rows == 2


def test_writing_through_a_link_to_an_empty_directory(tmp_path):
    (tmp_path / "empty").mkdir()
    os.symlink(tmp_path / "empty", tmp_path / "link")
    write_dataset("file://" + str(tmp_path / "link"), SCHEMA, [{"id": 7}], workers_count=1, progress=False)
    assert sorted(os.listdir(tmp_path)) == ["empty", "link"]
    assert _ids(str(tmp_path / "link")) == [7]
