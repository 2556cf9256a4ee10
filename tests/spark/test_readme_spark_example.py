"""The seed README's Spark example ("Generating a dataset"), run as written against the local Spark session,
then read back with make_reader, make_batch_reader, dataset_as_rdd, spark.read.parquet and Spark SQL.

``README_EXAMPLE`` is the README's code unchanged (the original petastorm README, as published in 0.12.1's
PyPI description). It runs as a script does (``__name__ == '__main__'``, so Spark ships its functions to
the Python workers by value, as it does for a user's script). Its ``getOrCreate()`` returns the test run's
session (created first by the ``spark_session`` fixture), so no second session starts. Only ``output_url``
is given, to write under ``tmp_path``.
"""
import numpy as np
import pytest
from pyspark.sql import SparkSession

from petastorm import make_batch_reader, make_reader
from petastorm.spark_utils import dataset_as_rdd

README_EXAMPLE = r'''
import numpy as np
from pyspark.sql import SparkSession
from pyspark.sql.types import IntegerType

from petastorm.codecs import ScalarCodec, CompressedImageCodec, NdarrayCodec
from petastorm.etl.dataset_metadata import materialize_dataset
from petastorm.unischema import dict_to_spark_row, Unischema, UnischemaField

# The schema defines how the dataset schema looks like
HelloWorldSchema = Unischema('HelloWorldSchema', [
    UnischemaField('id', np.int32, (), ScalarCodec(IntegerType()), False),
    UnischemaField('image1', np.uint8, (128, 256, 3), CompressedImageCodec('png'), False),
    UnischemaField('array_4d', np.uint8, (None, 128, 30, None), NdarrayCodec(), False),
])


def row_generator(x):
    """Returns a single entry in the generated dataset. Return a bunch of random values as an example."""
    return {'id': x,
            'image1': np.random.randint(0, 255, dtype=np.uint8, size=(128, 256, 3)),
            'array_4d': np.random.randint(0, 255, dtype=np.uint8, size=(4, 128, 30, 3))}


def generate_petastorm_dataset(output_url='file:///tmp/hello_world_dataset'):
    rowgroup_size_mb = 256

    spark = SparkSession.builder.config('spark.driver.memory', '2g').master('local[2]').getOrCreate()
    sc = spark.sparkContext

    # Wrap dataset materialization portion. Will take care of setting up spark environment variables as
    # well as save petastorm specific metadata
    rows_count = 10
    with materialize_dataset(spark, output_url, HelloWorldSchema, rowgroup_size_mb):

        rows_rdd = sc.parallelize(range(rows_count))\
            .map(row_generator)\
            .map(lambda x: dict_to_spark_row(HelloWorldSchema, x))

        spark.createDataFrame(rows_rdd, HelloWorldSchema.as_spark_schema()) \
            .coalesce(10) \
            .write \
            .mode('overwrite') \
            .parquet(output_url)
'''


def _run_readme_example() -> dict:
    """Execute ``README_EXAMPLE`` as a script; its globals (``generate_petastorm_dataset``...)."""
    namespace = {"__name__": "__main__"}
    exec(compile(README_EXAMPLE, "README.rst (Generating a dataset)", "exec"), namespace)
    return namespace


@pytest.fixture(scope="module")
def hello_world_url(spark_session, tmp_path_factory):
    url = "file://" + str(tmp_path_factory.mktemp("readme") / "hello_world_dataset")
    _run_readme_example()["generate_petastorm_dataset"](url)
    assert SparkSession.getActiveSession() is spark_session  # the example used the run's session
    return url


@pytest.fixture(scope="module")
def reader_rows(hello_world_url):
    with make_reader(hello_world_url, reader_pool_type="dummy") as reader:
        return {int(row.id): row for row in reader}


def test_make_reader_reads_the_ten_rows_with_their_dtypes_and_shapes(reader_rows):
    # as 0.12.1 reads the same example: ids 0..9, int32 ids, (128, 256, 3) images, (4, 128, 30, 3) arrays
    assert sorted(reader_rows) == list(range(10))
    for row in reader_rows.values():
        assert type(row.id) is np.int32
        assert row.image1.dtype == np.uint8 and row.image1.shape == (128, 256, 3)
        assert row.array_4d.dtype == np.uint8 and row.array_4d.shape == (4, 128, 30, 3)
    images = [row.image1 for row in reader_rows.values()]
    assert not np.array_equal(images[0], images[1])  # random content, not a constant


def test_make_batch_reader_reads_the_same_rows_decoded(hello_world_url, reader_rows):
    # 0.12.1 gave the png / npy bytes of codec fields here (docs/migration.md); ours decodes them
    with make_batch_reader(hello_world_url, reader_pool_type="dummy") as reader:
        batches = list(reader)
    ids = np.concatenate([b.id for b in batches])
    assert sorted(ids.tolist()) == list(range(10))
    for batch in batches:
        assert batch.image1.shape == (len(batch.id), 128, 256, 3)
        for i, row_id in enumerate(batch.id):
            assert np.array_equal(batch.image1[i], reader_rows[int(row_id)].image1)
            assert np.array_equal(batch.array_4d[i], reader_rows[int(row_id)].array_4d)


def test_dataset_as_rdd_gives_the_rows_make_reader_gives(hello_world_url, spark_session, reader_rows):
    rows = dataset_as_rdd(hello_world_url, spark_session).collect()
    assert sorted(int(r.id) for r in rows) == list(range(10))
    for row in rows:
        expected = reader_rows[int(row.id)]
        assert type(row.id) is np.int32
        assert np.array_equal(row.image1, expected.image1) and row.image1.dtype == np.uint8
        assert np.array_equal(row.array_4d, expected.array_4d) and row.array_4d.shape == (4, 128, 30, 3)


def test_spark_reads_it_as_plain_parquet(hello_world_url, spark_session):
    frame = spark_session.read.parquet(hello_world_url)
    # recorded from 0.12.1 on the same example
    assert frame.schema.simpleString() == "struct<id:int,image1:binary,array_4d:binary>"
    assert frame.count() == 10
    assert sorted(r.id for r in frame.select("id").collect()) == list(range(10))


def test_spark_sql_counts_it(hello_world_url, spark_session):
    result = spark_session.sql(f"SELECT count(id) from parquet.`{hello_world_url}`").collect()
    assert [tuple(r) for r in result] == [(10,)]  # 0.12.1: [Row(count(id)=10)]
