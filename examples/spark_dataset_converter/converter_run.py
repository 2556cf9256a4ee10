"""What both converter examples do around their training: the command line, the Spark session, and the two
converters (train and test) of the MNIST DataFrame of ``mnist_data.py``, deleted at the end.

Each example trains its own way inside :func:`mnist_converters`::

    args = converter_parser("Petastorm Spark converter example: ...", "file:///tmp/petastorm/cache/...").parse_args()
    with mnist_converters(args, spark, "app-name") as (converter_train, converter_test):
        ...  # converter_train.make_torch_dataloader(...) / make_tf_dataset(...)
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
from typing import Any, Iterator, Optional, Tuple

from mnist_data import mnist_dataframe, split

from petastorm.spark import SparkDatasetConverter, make_spark_converter

__all__ = ["converter_parser", "mnist_converters"]


def converter_parser(description: str, cache_dir_url: str,
                     log_interval_help: str = "steps per loss line") -> argparse.ArgumentParser:
    """The examples' arguments: the data (``--libsvm-path``, ``--rows``, ``--partitions``, ``--seed``), the cache
    (``--cache-dir-url``, default ``cache_dir_url``), the training (``--batch-size``, ``--steps``, ``--lr``,
    ``--log-interval``) and the Spark master of a session made here (``--master``)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--libsvm-path", default=None,
                        help="MNIST in LIBSVM format (mnist.bz2); synthetic digits when not given")
    parser.add_argument("--rows", type=int, default=60_000,
                        help="synthetic rows, 90%% train and 10%% test (default: %(default)s)")
    parser.add_argument("--cache-dir-url", default=cache_dir_url,
                        help="parent directory of the converter's cache (default: %(default)s)")
    parser.add_argument("--partitions", type=int, default=2, help="cached train files (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=64, help="batch size (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=800, help="training steps (default: %(default)s)")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default: %(default)s)")
    parser.add_argument("--log-interval", type=int, default=100,
                        help=log_interval_help + " (default: %(default)s)")
    parser.add_argument("--master", default="local[2]", help="Spark master of the session made here")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    return parser


@contextlib.contextmanager
def mnist_converters(args: argparse.Namespace, spark: Optional[Any], app_name: str) -> Iterator[Tuple[Any, Any]]:
    """``(converter_train, converter_test)``: the MNIST DataFrame (``args.libsvm_path`` or ``args.rows``
    synthetic digits) split 90 / 10, each part cached once under ``args.cache_dir_url``.

    ``spark`` is the session to use; ``None`` makes a local one (``args.master``, named ``app_name``), stopped on
    exit. The converters' caches are deleted on exit, whatever happened inside.
    """
    own_session = spark is None
    if own_session:
        from pyspark.sql import SparkSession

        # Spark's Python workers run this interpreter (where petastorm is installed), not the python3 on PATH
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        spark = (SparkSession.builder.master(args.master).appName(app_name)
                 .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
                 .getOrCreate())
    try:
        spark.conf.set(SparkDatasetConverter.PARENT_CACHE_DIR_URL_CONF, args.cache_dir_url)
        df_train, df_test = split(mnist_dataframe(spark, args.libsvm_path, args.rows, args.seed), args.partitions,
                                  args.seed)
        # Each DataFrame is written once to the cache; a second make_spark_converter(df_train) reuses it.
        converter_train = make_spark_converter(df_train)
        converter_test = make_spark_converter(df_test)
        print(f"converter: {len(converter_train)} train rows, {len(converter_test)} test rows, "
              f"cached in {converter_train.cache_dir_url}", flush=True)
        try:
            yield converter_train, converter_test
        finally:
            converter_train.delete()
            converter_test.delete()
    finally:
        if own_session:
            spark.stop()
