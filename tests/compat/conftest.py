"""Fixtures of the compatibility tests: the stores the reader-argument tests read (written once a session, read
only)."""
import os

import pytest

from ._indexed_dataset import write_indexed_dataset


@pytest.fixture(scope="session")
def part_url(tmp_path_factory):
    """40 rows, Hive-partitioned on ``part`` (p0..p3, row ``i`` in ``p{i % 4}``), 8 files of 5 rows, indexes
    ``by_id`` and ``by_name`` (see ``write_indexed_dataset``)."""
    return write_indexed_dataset(str(tmp_path_factory.mktemp("indexed") / "part"), partition_by=["part"])


@pytest.fixture(scope="session")
def flat_url(tmp_path_factory):
    """The same 40 rows unpartitioned: 8 files of 5 rows in id order."""
    return write_indexed_dataset(str(tmp_path_factory.mktemp("indexed") / "flat"))


@pytest.fixture(scope="session")
def legacy_url(testdata_dir):
    """testdata's store written by petastorm 0.7.6: 100 rows, Hive-partitioned on ``partition_key`` (p_0..p_9)."""
    return "file://" + os.path.join(testdata_dir, "legacy", "0.7.6")


@pytest.fixture(scope="session")
def codecs_url(testdata_dir):
    """testdata's store written by 0.12.1 with every codec: 60 rows, Hive-partitioned on ``partition`` (p_0..p_3)."""
    return "file://" + os.path.join(testdata_dir, "original-0.12.1", "all_codecs_0.12.1")
