"""dataset_as_rdd: a Petastorm dataset as an RDD of decoded rows, against the real local Spark session.

Behaviours marked "0.12.1" were recorded by calling the original library's public API (black box).
"""
import os
from decimal import Decimal

import numpy as np
import pytest

from petastorm import make_reader
from petastorm.errors import (
    DatasetNotFoundError,
    NoMatchingFieldsError,
    PetastormMetadataError,
    PetastormSchemaError,
    PetastormTypeError,
)
from petastorm.etl.dataset_metadata import get_schema_from_dataset_url
from petastorm.spark_utils import dataset_as_rdd
from petastorm.unischema import UnischemaField


@pytest.fixture(scope="module")
def reader_rows(synthetic_dataset):
    with make_reader(synthetic_dataset, reader_pool_type="dummy", shuffle_row_groups=False) as reader:
        return {int(row.id): row for row in reader}


@pytest.fixture(scope="module")
def rdd_rows(synthetic_dataset, spark_session):
    return dataset_as_rdd(synthetic_dataset, spark_session).collect()


def _same(a, b):
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return type(a) is type(b) and a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
    return type(a) is type(b) and a == b


def test_every_row_once_with_the_values_and_types_of_make_reader(rdd_rows, reader_rows):
    assert sorted(int(r.id) for r in rdd_rows) == list(range(100))
    for row in rdd_rows:
        expected = reader_rows[int(row.id)]
        assert row._fields == expected._fields
        assert type(row).__name__ == type(expected).__name__ == "SyntheticSchema_view"  # 0.12.1: '<schema>_view'
        for name in row._fields:
            assert _same(getattr(row, name), getattr(expected, name)), (int(row.id), name)


def test_value_types_are_those_recorded_from_0_12_1(rdd_rows):
    # recorded from 0.12.1 on the same dataset: numpy scalars of the fields' dtypes, ndarrays, Decimal, None
    row = next(r for r in rdd_rows if r.id == 43)
    assert type(row.id) is np.int64 and row.id == 43
    assert type(row.id_div_10) is np.int32 and row.id_div_10 == 4
    assert type(row.value) is np.float64 and row.value == 43 / 7
    assert type(row.name) is np.str_ and row.name == "row_43"
    assert row.matrix.dtype == np.float32 and row.matrix.shape == (4, 3) and row.matrix[0, 0] == 43
    assert row.image.dtype == np.uint8 and row.image.shape == (8, 6, 3)
    assert row.var.dtype == np.int16 and row.var.tolist() == [0, 1, 2]
    assert type(row.maybe) is np.int32 and row.maybe == 43
    assert type(row.dec) is Decimal and row.dec == Decimal("0.043")
    assert next(r for r in rdd_rows if r.id == 42).maybe is None  # a null stays None


def test_the_rdd_is_lazy_and_decodes_in_the_spark_tasks(synthetic_dataset, spark_session):
    rdd = dataset_as_rdd(synthetic_dataset, spark_session)
    assert rdd.getNumPartitions() >= 1
    # the decoded arrays are there inside the tasks (Python workers, not this process)
    seen = rdd.map(lambda row: (os.getpid(), float(row.matrix.sum()), row.image.shape)).collect()
    assert {pid for pid, _, _ in seen} - {os.getpid()}
    assert sorted(s for _, s, _ in seen) == sorted(float(12 * i + 66) for i in range(100))
    assert {shape for _, _, shape in seen} == {(8, 6, 3)}
    assert rdd.count() == 100


def test_schema_fields_as_unischema_fields_in_the_order_given(synthetic_dataset, spark_session):
    schema = get_schema_from_dataset_url(synthetic_dataset)
    rdd = dataset_as_rdd(synthetic_dataset, spark_session, schema_fields=[schema.name, schema.id])
    rows = rdd.collect()
    assert rows[0]._fields == ("name", "id")  # 0.12.1: the fields in the order given
    assert sorted((int(r.id), str(r.name)) for r in rows) == [(i, f"row_{i}") for i in range(100)]


def test_schema_fields_as_names_and_regexes(synthetic_dataset, spark_session):
    # 0.12.1 took only UnischemaFields (a string raised AttributeError: 'str' object has no attribute 'name');
    # names and regexes are accepted here, as make_reader accepts them
    rows = dataset_as_rdd(synthetic_dataset, spark_session, schema_fields=["id_.*", "value"]).collect()
    assert rows[0]._fields == ("id_div_10", "value")
    assert sorted(float(r.value) for r in rows) == [i / 7 for i in range(100)]


def test_an_empty_schema_fields_gives_one_empty_row_per_row(synthetic_dataset, spark_session):
    rdd = dataset_as_rdd(synthetic_dataset, spark_session, schema_fields=[])
    assert rdd.count() == 100  # recorded from 0.12.1
    assert rdd.first() == ()


@pytest.mark.slow
def test_a_hive_partition_field_is_decoded_like_the_others(tmp_path, spark_session):
    from pyspark.sql.types import LongType, StringType

    from petastorm.codecs import ScalarCodec
    from petastorm.etl.dataset_metadata import materialize_dataset
    from petastorm.unischema import Unischema, dict_to_spark_row

    schema = Unischema("P", [UnischemaField("id", np.int64, (), ScalarCodec(LongType()), False),
                             UnischemaField("p", np.str_, (), ScalarCodec(StringType()), False)])
    url = "file://" + str(tmp_path / "partitioned")
    with materialize_dataset(spark_session, url, schema, 1):
        rows = [dict_to_spark_row(schema, {"id": i, "p": f"a{i % 2}"}) for i in range(4)]
        spark_session.createDataFrame(rows, schema.as_spark_schema()).write.partitionBy("p").parquet(url)
    got = sorted((int(r.id), r.p, type(r.p)) for r in dataset_as_rdd(url, spark_session).collect())
    # recorded from 0.12.1: [(0, 'a0', str_), (1, 'a1', str_), (2, 'a0', str_), (3, 'a1', str_)]
    assert got == [(0, "a0", np.str_), (1, "a1", np.str_), (2, "a0", np.str_), (3, "a1", np.str_)]


# --- bad input ---------------------------------------------------------------------------------------

def test_a_missing_dataset_is_an_oserror_naming_the_path(tmp_path, spark_session):
    missing = tmp_path / "no_such_dataset"
    with pytest.raises(OSError, match="Passed non-file path") as info:  # 0.12.1: OSError, same words
        dataset_as_rdd("file://" + str(missing), spark_session)
    assert isinstance(info.value, DatasetNotFoundError)
    assert str(missing) in str(info.value)


def test_an_unknown_unischema_field_is_a_valueerror_naming_it(synthetic_dataset, spark_session):
    other = UnischemaField("nope", np.int32, (), None, False)
    # 0.12.1: ValueError "field {'nope'} does not belong to the schema ...", raised by the call itself
    with pytest.raises(ValueError, match=r"field \{'nope'\} does not belong to the schema") as info:
        dataset_as_rdd(synthetic_dataset, spark_session, schema_fields=[other])
    assert isinstance(info.value, PetastormSchemaError)
    assert "'id'" in str(info.value)  # the fields there are


def test_a_regex_matching_no_field_names_the_pattern(synthetic_dataset, spark_session):
    with pytest.raises(NoMatchingFieldsError, match=r"\['nope.*'\]") as info:
        dataset_as_rdd(synthetic_dataset, spark_session, schema_fields=["nope.*"])
    assert "'id_div_10'" in str(info.value)


def test_schema_fields_of_another_type_name_the_argument(synthetic_dataset, spark_session):
    with pytest.raises(PetastormTypeError, match="schema_fields must hold UnischemaFields"):
        dataset_as_rdd(synthetic_dataset, spark_session, schema_fields=[3])


def test_a_url_without_a_scheme_is_refused_as_in_0_12_1(synthetic_dataset, spark_session):
    path = synthetic_dataset[len("file://"):]
    with pytest.raises(ValueError, match=f"scheme-less dataset url \\({path}\\)"):
        dataset_as_rdd(path, spark_session)


def test_parquet_without_petastorm_metadata_points_to_the_fix(tmp_path, spark_session):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "plain").mkdir()
    pq.write_table(pa.table({"id": list(range(5))}), tmp_path / "plain" / "part-0.parquet")
    url = "file://" + str(tmp_path / "plain")
    # 0.12.1: PetastormMetadataError "Could not find _common_metadata file. Use materialize_dataset(..) ..."
    with pytest.raises(PetastormMetadataError, match="Could not find _common_metadata file"):
        dataset_as_rdd(url, spark_session)


def test_something_else_than_a_spark_session_is_a_typeerror(synthetic_dataset, spark_session):
    # 0.12.1: AttributeError "'NoneType' object has no attribute 'sparkContext'"
    with pytest.raises(TypeError, match="spark_session must be a pyspark.sql.SparkSession, got NoneType"):
        dataset_as_rdd(synthetic_dataset, None)
    with pytest.raises(TypeError, match="got SparkContext"):
        dataset_as_rdd(synthetic_dataset, spark_session.sparkContext)


@pytest.mark.slow
def test_a_cell_that_cannot_be_decoded_fails_the_job_naming_the_field(tmp_path, spark_session):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from _fixtures.datasets import write_synthetic_dataset

    url = write_synthetic_dataset(str(tmp_path / "corrupt"), rows=10, rows_per_group=10, groups_per_file=1)
    part = tmp_path / "corrupt" / "part-00000.parquet"
    table = pq.read_table(part)
    cells = table.column("matrix").to_pylist()
    cells[3] = b"not npy bytes"
    table = table.set_column(table.schema.get_field_index("matrix"), table.schema.field("matrix"),
                             pa.array(cells, table.schema.field("matrix").type))
    pq.write_table(table, part)
    rdd = dataset_as_rdd(url, spark_session, schema_fields=["id", "matrix"])  # lazy: the call succeeds
    with pytest.raises(Exception) as info:
        rdd.collect()
    message = str(info.value)
    assert "PetastormDecodeError" in message and "field 'matrix', row 3 of Spark partition 0" in message
    assert url in message
    assert dataset_as_rdd(url, spark_session, schema_fields=["id"]).count() == 10  # other fields still read


@pytest.mark.spark_connect
def test_a_spark_connect_session_is_refused_with_the_way_out(synthetic_dataset, spark_connect_session):
    # Spark Connect has no RDDs (0.12.1 predates it); the error says so and what to use instead
    with pytest.raises(TypeError, match="Spark Connect session, and Spark Connect has no RDDs") as info:
        dataset_as_rdd(synthetic_dataset, spark_connect_session)
    assert "make_reader" in str(info.value)


def test_bad_filesystem_arguments_name_the_argument(synthetic_dataset, spark_session):
    # as make_reader here (0.12.1 ignored hdfs_driver for a file:// URL, and had no storage_options)
    with pytest.raises(ValueError, match="hdfs_driver must be one of .*'bogus'"):
        dataset_as_rdd(synthetic_dataset, spark_session, hdfs_driver="bogus")
    with pytest.raises(ValueError, match="storage_options must be a dict, got list"):
        dataset_as_rdd(synthetic_dataset, spark_session, storage_options=["key"])
