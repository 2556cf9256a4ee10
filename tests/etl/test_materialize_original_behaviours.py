"""``materialize_dataset`` against the behaviours of 0.12.1 (recorded as a black box with pyspark 3.5.9, Java 17).

Recorded from 0.12.1 and checked here:
- ``row_group_size_mb`` given as a numpy integer (``np.int64(1)``) set ``parquet.block.size`` to 1048576 and the
  write went on; ours refused it ("must be a positive number, got 1").
- ``row_group_size_mb=0`` left ``parquet.block.size`` as it was (0.12.1 tested the value's truth); ours refused it.
- a block that raises after the Spark write leaves the Parquet files and ``_SUCCESS``, writes no
  ``_common_metadata``, and the exception reaches the caller unchanged.
- a ``partitionBy`` write: ``dataset-toolkit.num_row_groups_per_file.v1`` keys are ``<key>=<value>/<file>``.
- 1500 rows of a random 64x64x3 png field in one partition with ``row_group_size_mb=5``: row groups of
  420, 420, 420 and 240 rows.
- a ``use_summary_metadata=True`` write then an ``append`` with ``use_summary_metadata=False``: the first
  ``_metadata`` stayed, and 0.12.1's ``make_reader`` read 10 of the 16 rows; ours refreshes that summary.
"""
import json
import os

import numpy as np
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from petastorm import make_reader
from petastorm.codecs import CompressedImageCodec, ScalarCodec
from petastorm.etl import dataset_metadata as dm
from petastorm.spark_types import spark_type
from petastorm.unischema import Unischema, UnischemaField, dict_to_spark_row

from .test_dataset_metadata import SCHEMA, _row
from .test_materialize import _write_with_spark

LOCAL = pafs.LocalFileSystem()
BLOCK = "parquet.block.size"
COUNTS_KEY = b"dataset-toolkit.num_row_groups_per_file.v1"


@pytest.fixture
def hadoop_conf(spark_session):
    """The session's Hadoop configuration, its ``parquet.block.size`` put back after the test (the session is
    shared by the whole run)."""
    conf = spark_session.sparkContext._jsc.hadoopConfiguration()
    before = conf.get(BLOCK)
    yield conf
    if before is None:
        conf.unset(BLOCK)
    else:
        conf.set(BLOCK, before)


@pytest.mark.spark
@pytest.mark.parametrize("size", [np.int64(1), np.int32(1)], ids=["int64", "int32"])
def test_numpy_row_group_size_sets_the_block_size(spark_session, hadoop_conf, tmp_path, size):
    # 0.12.1: np.int64(1) / np.int32(1) -> parquet.block.size 1048576 inside the block, metadata written
    path = str(tmp_path / "ds")
    url = "file://" + path
    with dm.materialize_dataset(spark_session, url, SCHEMA, size):
        assert hadoop_conf.get(BLOCK) == "1048576"
        _write_with_spark(spark_session, url, rows=4)
    assert dm.get_schema_from_dataset_url(url) == SCHEMA


@pytest.mark.spark
def test_zero_row_group_size_leaves_the_block_size_alone(spark_session, hadoop_conf, tmp_path):
    # 0.12.1: row_group_size_mb=0 changed nothing and the write went on
    path = str(tmp_path / "ds")
    url = "file://" + path
    hadoop_conf.set(BLOCK, "12345678")
    with dm.materialize_dataset(spark_session, url, SCHEMA, 0):
        assert hadoop_conf.get(BLOCK) == "12345678"
        _write_with_spark(spark_session, url, rows=4)
    assert hadoop_conf.get(BLOCK) == "12345678"
    assert dm.get_schema_from_dataset_url(url) == SCHEMA


@pytest.mark.spark
@pytest.mark.parametrize("size", [-1, "8", float("nan"), float("inf"), [8]], ids=repr)
def test_bad_row_group_size_is_refused_naming_it(spark_session, tmp_path, size):
    with pytest.raises(ValueError, match="row_group_size_mb"):
        with dm.materialize_dataset(spark_session, "file://" + str(tmp_path / "ds"), SCHEMA, size):
            pass
    assert not os.path.exists(tmp_path / "ds")


@pytest.mark.spark
def test_block_raising_after_the_write_leaves_the_files_and_no_metadata(spark_session, hadoop_conf, tmp_path):
    path = str(tmp_path / "ds")
    url = "file://" + path
    before = hadoop_conf.get(BLOCK)
    error = KeyError("after the write")
    with pytest.raises(KeyError) as raised:
        with dm.materialize_dataset(spark_session, url, SCHEMA, 1):
            _write_with_spark(spark_session, url, rows=6)
            raise error
    assert raised.value is error
    names = sorted(name for name in os.listdir(path) if not name.startswith("."))
    assert "_common_metadata" not in names and "_SUCCESS" in names
    assert len([name for name in names if name.endswith(".parquet")]) == 2
    assert pq.ParquetDataset(path).read().num_rows == 6
    assert hadoop_conf.get(BLOCK) == before  # ours restores it (0.12.1 left 1048576 behind)


@pytest.mark.spark
def test_partitioned_write_counts_are_keyed_by_partition_directory(spark_session, tmp_path):
    path = str(tmp_path / "ds")
    url = "file://" + path
    encoded = [dict_to_spark_row(SCHEMA, _row(i)) for i in range(6)]
    frame = spark_session.createDataFrame(encoded, SCHEMA.as_spark_schema()).coalesce(1)
    with dm.materialize_dataset(spark_session, url, SCHEMA, 1):
        frame.write.partitionBy("id").parquet(url)
    metadata = pq.read_metadata(os.path.join(path, "_common_metadata")).metadata
    counts = json.loads(metadata[COUNTS_KEY].decode())
    assert sorted(rel.split("/")[0] for rel in counts) == [f"id={i}" for i in range(6)]
    assert all(rel.count("/") == 1 and rel.endswith(".parquet") for rel in counts)
    assert set(counts.values()) == {1}
    assert dm.get_schema_from_dataset_url(url) == SCHEMA


IMAGES = Unischema("Images", [
    UnischemaField("id", np.int32, (), ScalarCodec(spark_type("IntegerType")), False),
    UnischemaField("img", np.uint8, (64, 64, 3), CompressedImageCodec("png"), False),
])


def _image_row(i):
    return dict_to_spark_row(IMAGES, {"id": i, "img": np.random.RandomState(i).randint(0, 255, (64, 64, 3))
                                      .astype(np.uint8)})


@pytest.mark.spark
@pytest.mark.slow
def test_row_group_size_splits_row_groups_like_the_original(spark_session, tmp_path):
    path = str(tmp_path / "ds")
    url = "file://" + path
    frame = spark_session.createDataFrame([_image_row(i) for i in range(1500)], IMAGES.as_spark_schema())
    with dm.materialize_dataset(spark_session, url, IMAGES, 5):
        frame.coalesce(1).write.parquet(url)
    (rel,) = dm.list_data_files(LOCAL, path)
    footer = pq.ParquetFile(os.path.join(path, rel)).metadata
    rows = [footer.row_group(i).num_rows for i in range(footer.num_row_groups)]
    # recorded from 0.12.1 (pyspark 3.5.9): [420, 420, 420, 240]; other Parquet versions may move the cut a little
    assert sum(rows) == 1500 and len(rows) == 4 and all(400 <= n <= 440 for n in rows[:-1])
    counts = json.loads(pq.read_metadata(os.path.join(path, "_common_metadata")).metadata[COUNTS_KEY].decode())
    assert counts == {rel: len(rows)}


@pytest.mark.spark
@pytest.mark.slow
def test_append_without_summary_refreshes_a_stale_summary_file(spark_session, tmp_path):
    # 0.12.1 left the first write's _metadata behind: its make_reader (which prefers _metadata) then read 10 of
    # the 16 rows, silently; a summary that lists every file is read whole by every reader
    path = str(tmp_path / "ds")
    url = "file://" + path
    with dm.materialize_dataset(spark_session, url, SCHEMA, 1, use_summary_metadata=True):
        _write_with_spark(spark_session, url, rows=10)
    encoded = [dict_to_spark_row(SCHEMA, _row(i)) for i in range(10, 16)]
    with dm.materialize_dataset(spark_session, url, SCHEMA, 1, use_summary_metadata=False):
        spark_session.createDataFrame(encoded, SCHEMA.as_spark_schema()).coalesce(1).write.mode("append").parquet(url)
    summary = pq.read_metadata(os.path.join(path, "_metadata"))
    assert summary.num_rows == 16
    assert {summary.row_group(i).column(0).file_path for i in range(summary.num_row_groups)} == set(
        dm.list_data_files(LOCAL, path))
    assert spark_session.read.parquet(url).count() == 16  # no stale checksum beside the rewritten file
    with make_reader(url, reader_pool_type="dummy", num_epochs=1) as reader:
        assert sorted(int(row.id) for row in reader) == list(range(16))


@pytest.mark.spark
def test_block_that_wrote_nothing_names_the_url(spark_session, tmp_path):
    # 0.12.1: OSError 'Passed non-file path: <path>'; ours is a FileNotFoundError (an OSError) naming the URL
    url = "file://" + str(tmp_path / "never")
    with pytest.raises(OSError, match=r"materialize_dataset\('file://.*never'\): the block wrote nothing"):
        with dm.materialize_dataset(spark_session, url, SCHEMA, 1):
            _write_with_spark(spark_session, "file://" + str(tmp_path / "elsewhere"), rows=2)
    assert not os.path.exists(tmp_path / "never")
