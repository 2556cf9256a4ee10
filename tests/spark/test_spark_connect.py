"""make_spark_converter through Spark Connect (pyspark 4; the original's converter cannot: it calls
``_jdf`` and ``sparkContext``, which Connect sessions do not have).

Marked ``spark_connect``: they run in a pytest run of their own (``make test-spark4``), see
tests/_fixtures/spark_connect.py.
"""
import os
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from petastorm.spark import SparkDatasetConverter, make_spark_converter

pytestmark = pytest.mark.spark_connect

ROWS = 40


def _path(url):
    assert url.startswith("file://")
    return url[len("file://"):]


@pytest.fixture(scope="module")
def spark(spark_connect_session, tmp_path_factory):
    """The Connect session with the cache-dir conf set (a runtime conf: Connect serves it)."""
    from pyspark.sql.connect.session import SparkSession as ConnectSession

    assert isinstance(spark_connect_session, ConnectSession)
    parent = tmp_path_factory.mktemp("connect-converter-cache")
    spark_connect_session.conf.set(SparkDatasetConverter.PARENT_CACHE_DIR_URL_CONF, "file://" + str(parent))
    yield spark_connect_session
    spark_connect_session.conf.unset(SparkDatasetConverter.PARENT_CACHE_DIR_URL_CONF)


@pytest.fixture(scope="module")
def mixed_df(spark):
    """Scalar, array and ML Vector columns: ``id`` long, ``d`` double, ``arr`` array<double>, ``vec`` vector."""
    from pyspark.ml.linalg import Vectors, VectorUDT
    from pyspark.sql.types import ArrayType, DoubleType, LongType, StructField, StructType

    schema = StructType([StructField("id", LongType()), StructField("d", DoubleType()),
                         StructField("arr", ArrayType(DoubleType())), StructField("vec", VectorUDT())])
    rows = [(i, i / 2.0, [float(i), 1.0], Vectors.dense([float(i), 2.0, 3.0])) for i in range(ROWS)]
    return spark.createDataFrame(rows, schema).repartition(2)


@pytest.mark.slow  # a Spark write, two torch passes
def test_torch_round_trip_through_connect(mixed_df):
    converter = make_spark_converter(mixed_df)
    assert len(converter) == ROWS
    # the application id (spark.conf's spark.app.id: Connect has no SparkContext) names the cache dir
    assert re.search(r"/\d{14}-appid-local-\d+-[0-9a-f-]{36}$", converter.cache_dir_url)
    schema = pq.read_schema(_path(converter.file_urls[0]))
    assert schema.field("d").type == pa.float32()  # double -> float32, as on a classic session
    assert schema.field("vec").type.value_type == pa.float32()  # Vector -> array<float>
    with converter.make_torch_dataloader(batch_size=7, num_epochs=2) as loader:
        batches = list(loader)
    ids = np.concatenate([b["id"].numpy() for b in batches])
    assert sorted(ids.tolist()) == sorted(list(range(ROWS)) * 2)  # every row once per epoch
    first = batches[0]
    assert str(first["d"].dtype) == "torch.float32" and str(first["id"].dtype) == "torch.int64"
    assert tuple(first["arr"].shape[1:]) == (2,) and tuple(first["vec"].shape[1:]) == (3,)
    by_id = {int(i): (float(d), v.tolist()) for b in batches for i, d, v in zip(b["id"], b["d"], b["vec"])}
    assert by_id[7] == (3.5, [7.0, 2.0, 3.0])


@pytest.mark.slow  # a tf pipeline over the cache
def test_tf_round_trip_through_connect(mixed_df):
    converter = make_spark_converter(mixed_df)
    with converter.make_tf_dataset(batch_size=8, num_epochs=1, workers_count=1) as dataset:
        batches = list(dataset)
    ids = np.concatenate([b.id.numpy() for b in batches])
    assert sorted(ids.tolist()) == list(range(ROWS))
    assert batches[0].d.dtype.name == "float32" and batches[0].vec.shape[1:] == (3,)


@pytest.mark.slow  # three Spark writes
def test_cache_reused_rebuilt_and_deleted_through_connect(spark, mixed_df):
    first = make_spark_converter(mixed_df)
    again = make_spark_converter(mixed_df.select("*"))  # the same analysed plan
    assert again.cache_dir_url == first.cache_dir_url
    changed = make_spark_converter(mixed_df.filter("id < 10"))
    assert changed.cache_dir_url != first.cache_dir_url and len(changed) == 10
    path = _path(changed.cache_dir_url)
    assert os.path.isdir(path)
    changed.delete()
    assert not os.path.exists(path)
    rebuilt = make_spark_converter(mixed_df.filter("id < 10"))  # written again after delete()
    assert os.path.isdir(_path(rebuilt.cache_dir_url)) and len(rebuilt) == 10


@pytest.mark.slow  # a Spark write and a read
def test_converter_from_a_saved_path_through_connect(spark, tmp_path):
    url = "file://" + str(tmp_path / "saved")
    spark.range(25).selectExpr("id", "cast(id as float) as x").write.parquet(url)
    converter = make_spark_converter(url)  # the active session is the Connect one
    assert len(converter) == 25
    with converter.make_torch_dataloader(batch_size=10, num_epochs=1) as loader:
        got = sorted(int(i) for batch in loader for i in batch["id"])
    assert got == list(range(25))
