"""materialize_dataset on a classic session and through Spark Connect: the dataset reads back, the Parquet
settings reach the writer through ``spark.conf`` (Connect has no Hadoop conf to set), and a DataFrame that
does not match the Unischema is an error naming the field.

Each test runs twice: ``[classic]`` on the shared local session (marked ``spark``) and ``[connect]`` on a
Spark Connect client session (marked ``spark_connect``: pyspark 4 only, in a pytest run of its own, see
tests/_fixtures/spark_connect.py).
"""
import os

import numpy as np
import pyarrow.parquet as pq
import pytest

from petastorm import make_batch_reader, make_reader
from petastorm.codecs import CompressedImageCodec, NdarrayCodec, ScalarCodec
from petastorm.errors import PetastormSchemaError
from petastorm.etl.dataset_metadata import get_schema_from_dataset_url, materialize_dataset
from petastorm.spark_types import spark_type
from petastorm.unischema import Unischema, UnischemaField, dict_to_spark_row

SCHEMA = Unischema("ConnectSchema", [
    UnischemaField("id", np.int32, (), ScalarCodec(spark_type("IntegerType")), False),
    UnischemaField("name", np.str_, (), ScalarCodec(spark_type("StringType")), False),
    UnischemaField("vec", np.float32, (4,), NdarrayCodec(), False),
    UnischemaField("img", np.uint8, (8, 8, 3), CompressedImageCodec("png"), False),
])

BIG = Unischema("BigRows", [
    UnischemaField("id", np.int32, (), ScalarCodec(spark_type("IntegerType")), False),
    UnischemaField("blob", np.uint8, (16384,), NdarrayCodec(), False),
])

_SETTINGS = ("parquet.block.size", "parquet.summary.metadata.level", "parquet.enable.summary-metadata")


@pytest.fixture(params=[pytest.param("classic", marks=pytest.mark.spark),
                        pytest.param("connect", marks=pytest.mark.spark_connect)])
def spark(request):
    """The classic local session or a Spark Connect client session."""
    return request.getfixturevalue("spark_session" if request.param == "classic" else "spark_connect_session")


def _row(i):
    return {"id": i, "name": f"row_{i}", "vec": np.arange(4, dtype=np.float32) + i,
            "img": np.full((8, 8, 3), i, np.uint8)}


def _settings(spark):
    return {key: spark.conf.get(key, None) for key in _SETTINGS}


def _row_groups(path):
    files = [os.path.join(path, f) for f in sorted(os.listdir(path)) if f.endswith(".parquet")]
    return [pq.ParquetFile(f).metadata.num_row_groups for f in files]


@pytest.mark.slow  # a Spark write and three reads
def test_written_dataset_reads_back(spark, tmp_path):
    url = "file://" + str(tmp_path / "ds")
    before = _settings(spark)
    rows = [dict_to_spark_row(SCHEMA, _row(i)) for i in range(20)]
    with materialize_dataset(spark, url, SCHEMA, row_group_size_mb=1, use_summary_metadata=True):
        assert spark.conf.get("parquet.block.size", None) == str(1024 * 1024)
        assert spark.conf.get("parquet.summary.metadata.level", None) == "ALL"
        spark.createDataFrame(rows, SCHEMA.as_spark_schema()).coalesce(2).write.mode("overwrite").parquet(url)
    assert _settings(spark) == before  # the session's settings are as they were
    assert get_schema_from_dataset_url(url) == SCHEMA
    assert os.path.isfile(str(tmp_path / "ds" / "_metadata"))  # the summary file Parquet wrote
    with make_reader(url, reader_pool_type="dummy") as reader:
        got = sorted(reader, key=lambda r: r.id)
    assert [r.id for r in got] == list(range(20))
    for r in got:
        assert r.name == f"row_{r.id}"
        np.testing.assert_array_equal(r.vec, np.arange(4, dtype=np.float32) + r.id)
        assert r.img.shape == (8, 8, 3) and r.img.dtype == np.uint8 and (r.img == r.id).all()
    with make_batch_reader(url, schema_fields=["id"], reader_pool_type="dummy") as reader:
        assert sorted(int(i) for batch in reader for i in batch.id) == list(range(20))
    assert spark.read.parquet(url).count() == 20


@pytest.mark.slow  # two Spark writes of 5 MB
def test_row_group_size_reaches_the_writer(spark, tmp_path):
    """300 rows of 16 KiB in one file: 1 MiB row groups with row_group_size_mb=1, one with 64 (whatever the
    session had before: a test before this one may have left its own parquet.block.size there)."""
    rng = np.random.default_rng(0)
    rows = [dict_to_spark_row(BIG, {"id": i, "blob": rng.integers(0, 255, 16384, dtype=np.uint8)})
            for i in range(300)]
    df = spark.createDataFrame(rows, BIG.as_spark_schema()).coalesce(1)
    small, large = str(tmp_path / "small"), str(tmp_path / "large")
    with materialize_dataset(spark, "file://" + small, BIG, row_group_size_mb=1):
        df.write.parquet("file://" + small)
    with materialize_dataset(spark, "file://" + large, BIG, row_group_size_mb=64):
        df.write.parquet("file://" + large)
    assert _row_groups(large) == [1]
    [groups] = _row_groups(small)
    assert groups >= 3  # 4.7 MiB in row groups of about 1 MiB
    with make_reader("file://" + small, reader_pool_type="dummy") as reader:
        assert sorted(r.id for r in reader) == list(range(300))


def test_missing_field_is_named_and_no_metadata_written(spark, tmp_path):
    """0.12.1 (recorded) wrote the metadata anyway; make_reader then failed with
    ``TypeError: ..._view.__new__() missing 1 required positional argument: 'name'``."""
    from pyspark.sql.types import IntegerType, StructField, StructType

    path = str(tmp_path / "missing")
    df = spark.createDataFrame([(1,), (2,)], StructType([StructField("id", IntegerType(), False)]))
    with pytest.raises(PetastormSchemaError, match=r"field 'name' of the Unischema is not a column of the "
                                                   r"written Parquet files \(.* has id\)") as info:
        with materialize_dataset(spark, "file://" + path, SCHEMA):
            df.write.parquet("file://" + path)
    assert isinstance(info.value, ValueError)
    assert not os.path.exists(os.path.join(path, "_common_metadata"))


def test_column_of_the_wrong_kind_is_named(spark, tmp_path):
    """0.12.1 (recorded) wrote the metadata; make_reader then raised ``DecodeFieldError: Decoding field "id"
    failed``. A string column for the integer field ``id`` is now refused when the block ends."""
    from pyspark.sql.types import StringType, StructField, StructType

    small = Unischema("Small", [SCHEMA.fields["id"], SCHEMA.fields["name"]])
    path = str(tmp_path / "wrong_kind")
    schema = StructType([StructField("id", StringType(), False), StructField("name", StringType(), False)])
    df = spark.createDataFrame([("x", "a")], schema)
    with pytest.raises(PetastormSchemaError, match=r"field 'id' is number \(int32\) in the Unischema but the "
                                                   r"written column is string or binary \(string\)"):
        with materialize_dataset(spark, "file://" + path, small):
            df.write.parquet("file://" + path)
    assert not os.path.exists(os.path.join(path, "_common_metadata"))


@pytest.mark.spark
def test_extra_wider_and_partition_columns_are_accepted(spark_session, tmp_path):
    """Recorded from 0.12.1: an extra column and a LongType column for an int32 field read back fine; a
    field written as a Hive partition directory (``partitionBy``) is a column of the dataset too."""
    from pyspark.sql.types import LongType, StringType, StructField, StructType

    small = Unischema("Small", [SCHEMA.fields["id"], SCHEMA.fields["name"]])
    schema = StructType([StructField("id", LongType(), False), StructField("name", StringType(), False),
                         StructField("extra", StringType(), False)])
    df = spark_session.createDataFrame([(i, f"n{i % 2}", "e") for i in range(4)], schema)
    url = "file://" + str(tmp_path / "wider")
    with materialize_dataset(spark_session, url, small):
        df.write.parquet(url)
    with make_reader(url, reader_pool_type="dummy") as reader:
        assert sorted((int(r.id), r.name) for r in reader) == [(0, "n0"), (1, "n1"), (2, "n0"), (3, "n1")]
    url = "file://" + str(tmp_path / "partitioned")
    with materialize_dataset(spark_session, url, small):
        df.write.partitionBy("name").parquet(url)
    assert get_schema_from_dataset_url(url) == small


class _AllowListConf:
    """A runtime conf like a serverless Spark Connect cluster's: only some keys may be set."""

    def __init__(self, allowed):
        self.allowed, self.values = allowed, {}

    def get(self, key, default=None):
        return self.values.get(key, default)

    def set(self, key, value):
        if key not in self.allowed:
            raise RuntimeError(f"[CONFIG_NOT_AVAILABLE] Configuration {key} is not available.")
        self.values[key] = value

    def unset(self, key):
        self.values.pop(key, None)


class _AllowListSession:
    """Stands for a Connect session of such a cluster (no SparkContext); the block writes with pyarrow."""

    def __init__(self, allowed):
        self.conf = _AllowListConf(allowed)


def test_a_refused_setting_warns_and_the_metadata_is_still_written(tmp_path):
    import pyarrow as pa

    small = Unischema("Small", [SCHEMA.fields["id"], SCHEMA.fields["name"]])
    spark = _AllowListSession(allowed={"parquet.summary.metadata.level", "parquet.enable.summary-metadata"})
    path = tmp_path / "refused"
    with pytest.warns(UserWarning, match=r"refused the setting parquet\.block\.size=1048576 \(RuntimeError: "
                                         r"\[CONFIG_NOT_AVAILABLE\].*\.option\('parquet\.block\.size', \.\.\.\)"):
        with materialize_dataset(spark, "file://" + str(path), small, row_group_size_mb=1):
            assert spark.conf.values == {"parquet.summary.metadata.level": "NONE",
                                         "parquet.enable.summary-metadata": "false"}
            path.mkdir()
            table = pa.table({"id": pa.array([1, 2], pa.int32()), "name": ["a", "b"]})
            pq.write_table(table, str(path / "part-00000.parquet"))
    assert spark.conf.values == {}  # what was set is unset again
    with make_reader("file://" + str(path), reader_pool_type="dummy") as reader:
        assert sorted((r.id, r.name) for r in reader) == [(1, "a"), (2, "b")]
