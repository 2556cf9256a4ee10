"""``materialize_dataset``: the context manager around a Spark write of a Petastorm dataset.

Re-exported by :mod:`petastorm.etl.dataset_metadata`, where the original has it.
"""
from __future__ import annotations

import posixpath
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional

from petastorm.errors import PetastormArgumentError, PetastormMetadataGenerationError

__all__ = ["materialize_dataset"]

_BLOCK_SIZE = "parquet.block.size"
_SUMMARY_LEVEL = "parquet.summary.metadata.level"
_SUMMARY_LEGACY = "parquet.enable.summary-metadata"


def _set_hadoop_conf(hadoop_conf: Any, changes: dict[str, Optional[str]]) -> dict[str, Optional[str]]:
    previous = {key: hadoop_conf.get(key) for key in changes}
    for key, value in changes.items():
        if value is None:
            hadoop_conf.unset(key)
        else:
            hadoop_conf.set(key, value)
    return previous


def _filesystem_from_factory(filesystem_factory: Callable) -> Any:
    import pyarrow.fs as pafs

    fs = filesystem_factory()
    if isinstance(fs, pafs.FileSystem):
        return fs
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs))


@contextmanager
def materialize_dataset(spark: Any, dataset_url: str, schema: Any, row_group_size_mb: Optional[int] = None,
                        use_summary_metadata: bool = False,
                        filesystem_factory: Optional[Callable] = None) -> Iterator[None]:
    """Wrap a Spark write of a Petastorm dataset; on exit, write the Petastorm metadata.

    Inside the block the Hadoop configuration of ``spark`` has ``parquet.block.size`` set to
    ``row_group_size_mb`` MiB (when given) and Parquet summary files switched on or off per
    ``use_summary_metadata``; the previous values are restored on exit. After a block that did not raise,
    ``<dataset_url>/_common_metadata`` gets the schema and the row-group count of each written file
    (read from the files' footers).

    Parameters
    ----------
    spark : pyspark.sql.SparkSession
    dataset_url : str
        Where the block writes the dataset (``file://``, ``hdfs://``, ``s3://``...).
    schema : Unischema
    row_group_size_mb : int, optional
        Target row-group size in MiB.
    use_summary_metadata : bool
        Let Parquet write the ``_metadata`` summary file too.
    filesystem_factory : callable, optional
        Returns the filesystem (pyarrow or fsspec) to write the metadata with; by default it is resolved
        from ``dataset_url``.

    Example
    -------
    >>> with materialize_dataset(spark, url, MySchema, 64):
    ...     spark.createDataFrame(rows, MySchema.as_spark_schema()).write.parquet(url)
    """
    from petastorm.etl.dataset_metadata import (
        SUMMARY_METADATA_FILE,
        _exists,
        _resolve,
        count_row_groups_per_file,
        write_petastorm_metadata,
        write_summary_metadata,
    )

    hadoop_conf = spark.sparkContext._jsc.hadoopConfiguration()
    changes: dict[str, Optional[str]] = {
        _SUMMARY_LEVEL: "ALL" if use_summary_metadata else "NONE",
        _SUMMARY_LEGACY: "true" if use_summary_metadata else "false",
    }
    if row_group_size_mb is not None:
        if not isinstance(row_group_size_mb, (int, float)) or row_group_size_mb <= 0:
            raise PetastormArgumentError(f"row_group_size_mb must be a positive number, got {row_group_size_mb!r}")
        changes[_BLOCK_SIZE] = str(int(row_group_size_mb * 1024 * 1024))
    previous = _set_hadoop_conf(hadoop_conf, changes)
    try:
        yield
    finally:
        _set_hadoop_conf(hadoop_conf, previous)
    if filesystem_factory is not None:
        fs, path = _resolve(dataset_url, filesystem=_filesystem_from_factory(filesystem_factory))
    else:
        fs, path = _resolve(dataset_url)
    counts = count_row_groups_per_file(fs, path)
    if not counts:
        raise PetastormMetadataGenerationError(f"{dataset_url}: the block wrote no Parquet files")
    if use_summary_metadata and not _exists(fs, posixpath.join(path, SUMMARY_METADATA_FILE)):
        write_summary_metadata(fs, path, list(counts))
    write_petastorm_metadata(fs, path, schema, counts)
