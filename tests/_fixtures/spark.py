"""One local Spark session for the whole test run (real pyspark, Java 17), and what the Spark tests share to
build sessions and DataFrames."""
import os
import sys

import pytest


def use_this_python() -> None:
    """Spark's Python driver and workers run this interpreter, and Spark binds to the loopback address."""
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")


def local_builder(app_name: str, warehouse: str):
    """A ``SparkSession.builder`` of a small local session: 2 cores, 2 partitions, no UI, a 2 GB driver, the
    SQL warehouse and the Derby home in the directory ``warehouse``."""
    from pyspark.sql import SparkSession

    return (
        SparkSession.builder.master("local[2]")
        .appName(app_name)
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.default.parallelism", "2")
        .config("spark.driver.memory", "2g")
        .config("spark.sql.warehouse.dir", warehouse)
        .config("spark.driver.extraJavaOptions", f"-Dderby.system.home={warehouse}")
    )


def mixed_types_dataframe(spark, rows: int, last_field: str):
    """A DataFrame of ``rows`` rows, in 2 partitions, of the column types the converter maps: ``id`` long (the
    row number ``i``), ``d`` double, ``f`` float, ``b`` boolean, ``arr`` array<double>, ``iarr`` array<int>,
    ``vec`` a dense and ``svec`` a sparse vector; then ``last_field``: ``'s'`` a string ``s<i>``, or ``'i32'``
    an int ``i``."""
    from pyspark.ml.linalg import Vectors, VectorUDT
    from pyspark.sql.types import (
        ArrayType,
        BooleanType,
        DoubleType,
        FloatType,
        IntegerType,
        LongType,
        StringType,
        StructField,
        StructType,
    )

    last_type, last_value = {"s": (StringType(), lambda i: f"s{i}"), "i32": (IntegerType(), lambda i: i)}[last_field]
    data = [(i, float(i), i / 2.0, i % 2 == 0, [float(i), 1.0], [i, i + 1], Vectors.dense([float(i), 2.0]),
             Vectors.sparse(3, [0], [float(i)]), last_value(i)) for i in range(rows)]
    schema = StructType([StructField("id", LongType()), StructField("d", DoubleType()),
                         StructField("f", FloatType()), StructField("b", BooleanType()),
                         StructField("arr", ArrayType(DoubleType())), StructField("iarr", ArrayType(IntegerType())),
                         StructField("vec", VectorUDT()), StructField("svec", VectorUDT()),
                         StructField(last_field, last_type)])
    return spark.createDataFrame(data, schema).repartition(2)


@pytest.fixture(scope="session")
def spark_session(tmp_path_factory):
    """A real local ``SparkSession`` shared by every test of the run; stopped at the end."""
    use_this_python()
    spark = local_builder("petastorm-tests", str(tmp_path_factory.mktemp("spark-warehouse"))).getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    yield spark
    spark.stop()
