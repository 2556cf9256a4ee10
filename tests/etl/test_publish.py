"""petastorm.etl.publish: a publish whose rename fails puts the old dataset back and leaves nothing behind."""
import os

import pyarrow.fs as pafs
import pytest

from petastorm.errors import PetastormWriteError
from petastorm.etl.publish import publish


def test_a_failed_rename_puts_the_old_dataset_back_and_names_the_path(tmp_path):
    target = tmp_path / "ds"
    target.mkdir()
    (target / "_common_metadata").write_text("old")
    (target / "part-0.parquet").write_text("old")
    url = "file://" + str(target)
    missing = str(tmp_path / "ds.__petastorm_tmp_gone")  # the new dataset cannot be renamed in
    with pytest.raises(PetastormWriteError, match="cannot publish the dataset to '" + url + "'.*nothing was published"):
        publish(pafs.LocalFileSystem(), missing, str(target), url, True, ["part-0.parquet"])
    assert sorted(os.listdir(tmp_path)) == ["ds"]  # no <path>.__petastorm_old_* left
    assert (target / "_common_metadata").read_text() == "old" and (target / "part-0.parquet").read_text() == "old"


def test_publishing_onto_an_empty_directory_replaces_it(tmp_path):
    target = tmp_path / "ds"
    target.mkdir()
    new = tmp_path / "ds.__petastorm_tmp_1"
    new.mkdir()
    (new / "_common_metadata").write_text("new")
    publish(pafs.LocalFileSystem(), str(new), str(target), "file://" + str(target), False, [])
    assert sorted(os.listdir(tmp_path)) == ["ds"] and (target / "_common_metadata").read_text() == "new"
