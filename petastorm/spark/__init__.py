"""Spark DataFrames to PyTorch and TensorFlow: :func:`make_spark_converter` caches a DataFrame as Parquet
and gives loaders over it (see :mod:`petastorm.spark.spark_dataset_converter`)."""
from petastorm.spark.spark_dataset_converter import SparkDatasetConverter, make_spark_converter

__all__ = ["SparkDatasetConverter", "make_spark_converter"]
