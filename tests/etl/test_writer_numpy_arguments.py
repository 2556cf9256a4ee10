"""write_dataset's count and size arguments given as numpy numbers.

Before: ``num_files=np.int64(4)`` (e.g. from ``np.ceil(...).astype(int)`` or a numpy computation) and
``row_group_size_mb=np.int64(64)`` were refused as "must be a positive integer/number".
"""
from __future__ import annotations

import numpy as np
import pytest

from petastorm.errors import PetastormArgumentError
from petastorm.etl.writer import write_dataset
from petastorm.unischema import Unischema, UnischemaField

SCHEMA = Unischema("A", [UnischemaField("id", np.int64, (), None, False)])
ROWS = [{"id": i} for i in range(12)]


@pytest.mark.parametrize("kwargs, files", [
    ({"num_files": np.int64(4)}, 4),
    ({"rows_per_file": np.int32(5)}, 3),
    ({"num_files": np.uint8(2), "chunk_rows": np.int64(3), "row_group_size_mb": np.int64(1)}, 2),
    ({"workers_count": np.int64(1), "row_group_size_mb": np.float32(0.5)}, 1),
])
def test_numpy_counts_and_sizes_are_accepted(tmp_path, kwargs, files):
    kwargs.setdefault("workers_count", 1)
    result = write_dataset(str(tmp_path / "ds"), SCHEMA, ROWS, progress=False, **kwargs)
    assert result.num_rows == 12 and len(result.files) == files


@pytest.mark.parametrize("name, value", [("num_files", np.bool_(True)), ("num_files", 2.0),
                                         ("rows_per_file", np.int64(0)), ("chunk_rows", np.float64(3)),
                                         ("row_group_size_mb", np.bool_(True)),
                                         ("row_group_size_mb", np.float64("nan"))])
def test_non_integer_or_non_positive_values_are_refused_naming_the_argument(tmp_path, name, value):
    with pytest.raises(PetastormArgumentError, match=name):
        write_dataset(str(tmp_path / "ds"), SCHEMA, ROWS, workers_count=1, progress=False, **{name: value})
    assert not (tmp_path / "ds").exists()


def test_a_pathlib_path_is_accepted_as_the_readers_accept_it(tmp_path):
    # before: "dataset_url must be a non-empty string, got PosixPath(...)"; make_reader takes a Path
    from petastorm import make_reader

    result = write_dataset(tmp_path / "ds", SCHEMA, ROWS, workers_count=1, progress=False)
    assert result.dataset_url == str(tmp_path / "ds") and result.num_rows == 12
    with make_reader(tmp_path / "ds", workers_count=1) as reader:
        assert sorted(int(row.id) for row in reader) == list(range(12))


@pytest.mark.parametrize("rows, what", [({"id": 1}, r"a single dict \(one row\? pass \[row\]\)"),
                                        ("abc", "got str"), (5, "got int")])
def test_rows_that_are_not_an_iterable_of_rows_are_named(tmp_path, rows, what):
    # before: "row 0 of the input: expected a dict ..., got str" (a dict's keys) or a bare TypeError
    with pytest.raises(PetastormArgumentError, match=f"rows must be an iterable of row dicts.*{what}"):
        write_dataset(str(tmp_path / "ds"), SCHEMA, rows, workers_count=1, progress=False)
    assert not (tmp_path / "ds").exists()
