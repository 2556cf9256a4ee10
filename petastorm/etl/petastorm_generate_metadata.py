"""Add (or regenerate) the Petastorm metadata of an existing Parquet dataset.

Command line (console script ``petastorm-generate-metadata``)::

    petastorm-generate-metadata --dataset_url file:///data/hello_world \\
        --unischema_class examples.hello_world.generate_hello_world_dataset.HelloWorldSchema

Without ``--unischema_class`` the schema already stored in the dataset is reused (to refresh the
row-group counts after files were added or removed). The row-group counts are read from the Parquet
footers with pyarrow; no JVM is needed. With ``--master`` (or ``--spark-driver-memory``) a Spark
session is started and the footers are read in Spark tasks, as the original tool did.

Bad input (a missing dataset, a ``--unischema_class`` that is not a Unischema, no stored schema) is one line
``petastorm-generate-metadata: error: ...`` on stderr and exit status 1; a refused command line, status 2.
The footers are counted under a tqdm progress bar on stderr (``--no-progress`` hides it).
"""
from __future__ import annotations

import argparse
import importlib.util
import posixpath
import sys
from pydoc import locate
from typing import Any, Optional

from petastorm.cli_support import run_cli
from petastorm.errors import DatasetNotFoundError, PetastormArgumentError
from petastorm.etl.dataset_metadata import (
    COMMON_METADATA_FILE,
    count_row_groups_per_file,
    get_schema_from_dataset_url,
    list_data_files,
    write_petastorm_metadata,
    write_summary_metadata,
)
from petastorm.etl.spark_progress import spark_progress
from petastorm.fs_utils import get_filesystem_and_path_or_paths

__all__ = ["generate_petastorm_metadata", "main"]

_PROG = "petastorm-generate-metadata"
_FILES_PER_UPDATE = 64

_EXAMPLE = """Example (some replacement required):

Locally:
petastorm-generate-metadata \\
    --dataset_url hdfs:///path/to/my/hello_world_dataset \\
    --unischema_class examples.hello_world.generate_hello_world_dataset.HelloWorldSchema

On Spark:
spark-submit \\
    --master spark://ip:port \\
    $(which petastorm-generate-metadata) \\
    --dataset_url hdfs:///path/to/my/hello_world_dataset \\
    --unischema_class examples.hello_world.generate_hello_world_dataset.HelloWorldSchema
"""


def _locate_schema(unischema_class: Any) -> Any:
    from petastorm.unischema import Unischema

    schema = unischema_class if isinstance(unischema_class, Unischema) else locate(unischema_class)
    if not isinstance(schema, Unischema):
        hint = ""
        module = unischema_class.split(".")[0] if isinstance(unischema_class, str) else ""
        if schema is None and module and importlib.util.find_spec(module) is None:
            hint = (f" Module {module!r} could not be imported: it is not on sys.path (a console script does not "
                    f"search the current directory; run with PYTHONPATH=. or install the module).")
        raise PetastormArgumentError(
            f"The specified class {unischema_class} is not an instance of a petastorm.Unischema object. "
            f"(unischema_class must be the dotted path of a Unischema instance, e.g. "
            f"my_package.my_module.MySchema){hint}")
    return schema


def _count_with_spark(spark: Any, dataset_url: str, hdfs_driver: str, storage_options: Optional[dict],
                      rels: list[str], progress: bool) -> dict[str, int]:
    def count(part: Any) -> Any:
        fs, path = get_filesystem_and_path_or_paths(dataset_url, hdfs_driver=hdfs_driver,
                                                    storage_options=storage_options)
        return list(count_row_groups_per_file(fs, path, list(part)).items())

    slices = max(1, min(len(rels), spark.sparkContext.defaultParallelism * 4))
    with spark_progress(spark, enabled=progress, desc=_PROG):
        return dict(spark.sparkContext.parallelize(rels, slices).mapPartitions(count).collect())


def _count_here(filesystem: Any, path: str, rels: list[str], progress: bool) -> dict[str, int]:
    """Row groups per file read from the footers in this process, under a progress bar of files."""
    if not progress:
        return count_row_groups_per_file(filesystem, path, rels)
    from tqdm.auto import tqdm

    counts: dict[str, int] = {}
    with tqdm(total=len(rels), unit=" files", desc=_PROG) as bar:
        for start in range(0, len(rels), _FILES_PER_UPDATE):
            chunk = rels[start:start + _FILES_PER_UPDATE]
            counts.update(count_row_groups_per_file(filesystem, path, chunk))
            bar.update(len(chunk))
    return counts


def _ensure_dataset_exists(filesystem: Any, path: str, dataset_url: str) -> None:
    import pyarrow.fs as pafs

    if filesystem.get_file_info(path).type == pafs.FileType.NotFound:
        raise DatasetNotFoundError(f"dataset_url {dataset_url}: no such directory")


def generate_petastorm_metadata(spark: Any, dataset_url: str, unischema_class: Optional[str] = None,
                                use_summary_metadata: bool = False, hdfs_driver: str = "libhdfs3",
                                storage_options: Optional[dict] = None, *, progress: bool = False) -> None:
    """Write the Petastorm keys into ``<dataset_url>/_common_metadata``.

    Parameters
    ----------
    spark : pyspark.sql.SparkSession or None
        When given, footers are read in Spark tasks; with ``None``, in this process (pyarrow only).
    dataset_url : str
    unischema_class : str or Unischema, optional
        Dotted path of the dataset's Unischema (imported: it is code you choose). By default the schema
        stored in the dataset is reused.
    use_summary_metadata : bool
        Also write the Parquet ``_metadata`` summary file.
    hdfs_driver : str
    storage_options : dict, optional
        Filesystem options (s3fs style) for ``dataset_url``; petastorm's addition to the original signature.
    progress : bool
        Show a tqdm progress bar (files, or Spark tasks) on stderr; petastorm's addition (the CLI sets it).

    Raises
    ------
    DatasetNotFoundError
        (An ``OSError``.) Nothing at ``dataset_url``.
    PetastormMetadataError
        No ``unischema_class`` and no schema stored in the dataset.
    PetastormArgumentError
        ``unischema_class`` does not name a Unischema.
    """
    filesystem, path = get_filesystem_and_path_or_paths(dataset_url, hdfs_driver=hdfs_driver,
                                                        storage_options=storage_options)
    _ensure_dataset_exists(filesystem, path, dataset_url)
    if unischema_class:
        schema = _locate_schema(unischema_class)
    else:
        schema = get_schema_from_dataset_url(dataset_url, filesystem=filesystem)
    rels = list_data_files(filesystem, path)
    if spark is not None and rels:
        counts = _count_with_spark(spark, dataset_url, hdfs_driver, storage_options, rels, progress)
    else:
        counts = _count_here(filesystem, path, rels, progress)
    counts = {rel: counts[rel] for rel in rels}
    if use_summary_metadata:
        write_summary_metadata(filesystem, path, rels)
    write_petastorm_metadata(filesystem, path, schema, counts)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=_PROG, description="Add necessary petastorm metadata to an existing dataset",
        epilog=_EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset_url", required=True, help="the url to the dataset base directory")
    parser.add_argument("--unischema_class", default=None,
                        help="the fully qualified class of the dataset unischema. If not specified will attempt "
                             "to reuse schema already in dataset. (e.g. "
                             "examples.hello_world.generate_hello_world_dataset.HelloWorldSchema)")
    parser.add_argument("--master", default=None,
                        help="Spark master. If given, a Spark session reads the footers; without it pyarrow "
                             "does, in this process")
    parser.add_argument("--spark-driver-memory", default=None,
                        help="The amount of memory the driver process will have (starts a Spark session)")
    parser.add_argument("--use-summary-metadata", action="store_true",
                        help="Whether to use the parquet summary metadata format. Not scalable for large "
                             "amounts of columns and/or row groups.")
    parser.add_argument("--hdfs-driver", default="libhdfs3",
                        help="A string denoting the hdfs driver to use (if using a dataset on hdfs). Current "
                             "choices are libhdfs (java through JNI) or libhdfs3 (C++)")
    parser.add_argument("--no-progress", action="store_true", help="Do not show the progress bar on stderr")
    return parser


def _run(args: argparse.Namespace) -> None:
    spark, created = None, False
    if args.master or args.spark_driver_memory:
        from pyspark.sql import SparkSession

        created = SparkSession.getActiveSession() is None
        builder = SparkSession.builder.appName(_PROG)
        if args.master:
            builder = builder.master(args.master)
        if args.spark_driver_memory:
            builder = builder.config("spark.driver.memory", args.spark_driver_memory)
        spark = builder.getOrCreate()
    try:
        generate_petastorm_metadata(spark, args.dataset_url, args.unischema_class, args.use_summary_metadata,
                                    args.hdfs_driver, progress=not args.no_progress)
    finally:
        if spark is not None and created:
            spark.stop()
    print(f"wrote {posixpath.join(args.dataset_url.rstrip('/'), COMMON_METADATA_FILE)}")


def _main(argv: Optional[list[str]]) -> int:
    """Run ``petastorm-generate-metadata`` with ``argv`` (without the program name); return the exit status:
    0, 1 for bad input (one line on stderr), 2 for a refused command line."""
    return run_cli(_PROG, _parser(), argv, _run)


def main(argv: Optional[list[str]] = None) -> int:
    """Entry point of ``petastorm-generate-metadata``; returns the exit status (see :func:`_main`)."""
    return _main(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
