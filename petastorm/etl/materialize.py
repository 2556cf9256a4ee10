"""``materialize_dataset``: the context manager around a Spark write of a Petastorm dataset.

Re-exported by :mod:`petastorm.etl.dataset_metadata`, where the original has it.

The Parquet write settings (row-group size, summary files) are set through the session's runtime
configuration, ``spark.conf`` - a public API that classic sessions and Spark Connect sessions both serve:
Spark copies the session's SQL configuration into the Hadoop configuration of every DataFrame write, so
``df.write.parquet(url)`` inside the block sees them (options given to the writer still win). The only
classic-only call is :func:`_classic_only_hadoop_conf`: on a classic session the SparkContext's Hadoop
configuration gets the same values, as the original set them there, for writes that read it directly (the RDD
API's ``saveAsNewAPIHadoopFile``); Spark Connect has no SparkContext and nothing public reaches it.
"""
from __future__ import annotations

import numbers
import posixpath
import warnings
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional

from petastorm.errors import (
    DatasetNotFoundError,
    PetastormArgumentError,
    PetastormMetadataGenerationError,
    PetastormSchemaError,
)

__all__ = ["materialize_dataset"]

_BLOCK_SIZE = "parquet.block.size"
_SUMMARY_LEVEL = "parquet.summary.metadata.level"
_SUMMARY_LEGACY = "parquet.enable.summary-metadata"


class _Conf:
    """``get`` / ``set`` / ``unset`` of string settings, over ``spark.conf`` or a Hadoop ``Configuration``."""

    def __init__(self, target: Any, runtime: bool) -> None:
        self._target = target
        self.runtime = runtime

    def get(self, key: str) -> Optional[str]:
        if self.runtime:
            value = self._target.get(key, None)
            return None if value is None else str(value)
        return self._target.get(key)

    def set(self, key: str, value: Optional[str]) -> None:
        if value is not None:
            self._target.set(key, value)
        else:
            self._target.unset(key)


def _classic_only_hadoop_conf(spark: Any) -> Optional[Any]:
    """The SparkContext's Hadoop ``Configuration`` on a classic session; None on Spark Connect (whose
    sessions have no SparkContext: reaching it raises) and on anything else without one."""
    if type(spark).__module__.startswith("pyspark.sql.connect"):
        return None
    try:
        return spark.sparkContext._jsc.hadoopConfiguration()
    except Exception:  # noqa: BLE001 - no JVM behind this session
        return None


def _apply(confs: list[_Conf], changes: dict[str, Optional[str]]) -> list[dict[str, Optional[str]]]:
    """Set ``changes`` in each conf; return each conf's previous values of the keys it took.

    A session that refuses a runtime setting (a shared or serverless Spark Connect cluster allows only some
    keys) gets a warning naming it, and the write goes on without it.
    """
    previous = []
    for conf in confs:
        taken: dict[str, Optional[str]] = {}
        for key, value in changes.items():
            try:
                before = conf.get(key)
                conf.set(key, value)
            except Exception as e:  # noqa: BLE001 - the server's refusal, whatever its class
                if not conf.runtime:
                    raise
                warnings.warn(f"materialize_dataset: the Spark session refused the setting {key}={value} "
                              f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); the write "
                              f"goes on without it (pass .option({key!r}, ...) to the DataFrame writer instead)",
                              UserWarning, stacklevel=4)
                continue
            taken[key] = before
        previous.append(taken)
    return previous


def _restore(confs: list[_Conf], previous: list[dict[str, Optional[str]]]) -> None:
    for conf, values in zip(confs, previous):
        for key, value in values.items():
            conf.set(key, value)


def _filesystem_from_factory(filesystem_factory: Callable) -> Any:
    import pyarrow.fs as pafs

    fs = filesystem_factory()
    if isinstance(fs, pafs.FileSystem):
        return fs
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs))


def _drop_stale_checksum(fs: Any, path: str, name: str) -> None:
    """Remove ``.<name>.crc``, the checksum Hadoop's local filesystem wrote beside a file we have rewritten
    (Parquet writes ``_common_metadata`` with summary metadata on): left there, Spark refuses to read the
    dataset (``FAILED_READ_FILE``, a checksum error)."""
    crc = posixpath.join(path, f".{name}.crc")
    if _exists_file(fs, crc):
        fs.delete_file(crc)


def _refresh_stale_summary(fs: Any, path: str, rels: list[str]) -> None:
    """Rewrite a ``_metadata`` summary left by an earlier write when it does not list exactly the files there
    now (an ``append`` without summary files): readers that prefer it - 0.12.1's ``make_reader``, Spark - would
    silently skip the appended files. A summary that cannot be rebuilt (files of different schemas) is removed."""
    import pyarrow.parquet as pq

    from petastorm.etl.dataset_metadata import SUMMARY_METADATA_FILE, write_summary_metadata

    summary = posixpath.join(path, SUMMARY_METADATA_FILE)
    if not _exists_file(fs, summary):
        return
    try:
        with fs.open_input_file(summary) as f:
            metadata = pq.read_metadata(f)
        listed = {metadata.row_group(i).column(0).file_path for i in range(metadata.num_row_groups)
                  if metadata.row_group(i).num_columns}
    except Exception:  # noqa: BLE001 - an unreadable summary is stale too
        listed = None
    if listed == set(rels):
        return
    try:
        write_summary_metadata(fs, path, rels)
    except Exception:  # noqa: BLE001 - files of different schemas cannot share one summary
        fs.delete_file(summary)
    _drop_stale_checksum(fs, path, SUMMARY_METADATA_FILE)


def _exists_file(fs: Any, path: str) -> bool:
    import pyarrow.fs as pafs

    return fs.get_file_info(path).type == pafs.FileType.File


def _family(arrow_type: Any) -> Optional[str]:
    """A coarse kind of an Arrow type, for telling a column that cannot hold a field from one that can
    (int64 holds an int32 field: the reader casts it, as the original's did)."""
    import pyarrow.types as pat

    if (pat.is_integer(arrow_type) or pat.is_floating(arrow_type) or pat.is_boolean(arrow_type)
            or pat.is_decimal(arrow_type)):
        return "number"
    if (pat.is_string(arrow_type) or pat.is_large_string(arrow_type) or pat.is_binary(arrow_type)
            or pat.is_large_binary(arrow_type) or pat.is_fixed_size_binary(arrow_type)):
        return "string or binary"
    if pat.is_timestamp(arrow_type) or pat.is_date(arrow_type):
        return "timestamp or date"
    if pat.is_list(arrow_type) or pat.is_large_list(arrow_type) or pat.is_fixed_size_list(arrow_type):
        return "list"
    return None


def _expected_arrow_type(field: Any) -> Optional[Any]:
    codec = field.codec
    if codec is None or not hasattr(codec, "arrow_type"):
        return None
    try:
        return codec.arrow_type(field)
    except Exception:  # noqa: BLE001 - a codec that cannot name its type is not checked
        return None


def _check_written_columns(fs: Any, path: str, rels: list[str], schema: Any, dataset_url: str) -> None:
    """Every field of ``schema`` is a column of the written files (or a partition key), of a type that can
    hold it.

    Raises
    ------
    PetastormSchemaError
        Naming the first field that is missing or whose column cannot hold it (the original wrote the
        metadata anyway and failed later, when the dataset was read).
    """
    import pyarrow.parquet as pq

    from petastorm.etl.dataset_files import hive_partition_keys

    first = posixpath.join(path, rels[0])
    with fs.open_input_file(first) as f:
        written = pq.ParquetFile(f).schema_arrow
    partition_keys = {key for rel in rels for key, _ in hive_partition_keys(rel)}
    fields = getattr(schema, "fields", None)
    if not isinstance(fields, dict):
        raise PetastormArgumentError(f"schema must be a Unischema, got {type(schema).__name__}")
    hint = ("the Petastorm metadata was not written; write a DataFrame made with "
            f"{getattr(schema, '_name', 'the schema')}.as_spark_schema() (dict_to_spark_row encodes the rows)")
    for name, field in fields.items():
        if name in partition_keys:
            continue
        if name not in written.names:
            raise PetastormSchemaError(
                f"materialize_dataset({dataset_url!r}): field {name!r} of the Unischema is not a column of the "
                f"written Parquet files ({rels[0]} has {', '.join(written.names) or 'no columns'}): {hint}")
        expected = _expected_arrow_type(field)
        actual = written.field(name).type
        want, got = (_family(expected) if expected is not None else None), _family(actual)
        if want is not None and got is not None and want != got:
            raise PetastormSchemaError(
                f"materialize_dataset({dataset_url!r}): field {name!r} is {want} ({expected}) in the Unischema "
                f"but the written column is {got} ({actual}): {hint}")


@contextmanager
def materialize_dataset(spark: Any, dataset_url: str, schema: Any, row_group_size_mb: Optional[int] = None,
                        use_summary_metadata: bool = False,
                        filesystem_factory: Optional[Callable] = None) -> Iterator[None]:
    """Wrap a Spark write of a Petastorm dataset; on exit, write the Petastorm metadata.

    Inside the block the session's runtime configuration (``spark.conf``, served by classic and Spark
    Connect sessions alike) has ``parquet.block.size`` set to ``row_group_size_mb`` MiB (when given) and
    Parquet summary files switched on or off per ``use_summary_metadata``; on a classic session the
    SparkContext's Hadoop configuration gets the same values, as in the original. The previous values are
    restored on exit. After a block that did not raise, the written files are checked against ``schema``
    and ``<dataset_url>/_common_metadata`` gets the schema and the row-group count of each written file
    (read from the files' footers).

    Parameters
    ----------
    spark : pyspark.sql.SparkSession
        A classic session or a Spark Connect one (``SparkSession.builder.remote(...)``); the driver must see
        ``dataset_url`` too, to write the metadata.
    dataset_url : str
        Where the block writes the dataset (``file://``, ``hdfs://``, ``s3://``...).
    schema : Unischema
    row_group_size_mb : int or float, optional
        Target row-group size in MiB (numpy numbers too); None or 0 leave Parquet's setting as it is.
    use_summary_metadata : bool
        Let Parquet write the ``_metadata`` summary file too.
    filesystem_factory : callable, optional
        Returns the filesystem (pyarrow or fsspec) to write the metadata with; by default it is resolved
        from ``dataset_url``.

    Raises
    ------
    PetastormArgumentError
        ``row_group_size_mb`` is not a positive number.
    DatasetNotFoundError
        Nothing exists at ``dataset_url`` after the block (a ``FileNotFoundError``; 0.12.1 raised ``OSError``).
    PetastormMetadataGenerationError
        The block wrote no Parquet file at ``dataset_url``.
    PetastormSchemaError
        A field of ``schema`` is not a column of the written files, or its column cannot hold it (a string
        column for a numeric field...): the message names the field; no metadata is written.

    Example
    -------
    >>> with materialize_dataset(spark, url, MySchema, 64):
    ...     spark.createDataFrame(rows, MySchema.as_spark_schema()).write.parquet(url)
    """
    from petastorm.etl.dataset_metadata import (
        COMMON_METADATA_FILE,
        SUMMARY_METADATA_FILE,
        count_row_groups_per_file,
        file_exists,
        resolve_dataset_url,
        write_petastorm_metadata,
        write_summary_metadata,
    )

    changes: dict[str, Optional[str]] = {
        _SUMMARY_LEVEL: "ALL" if use_summary_metadata else "NONE",
        _SUMMARY_LEGACY: "true" if use_summary_metadata else "false",
    }
    if row_group_size_mb is not None:
        # numpy numbers are accepted, as 0.12.1 did; 0 leaves the block size alone, as 0.12.1 did (it tested truth)
        if isinstance(row_group_size_mb, str) or not isinstance(row_group_size_mb, numbers.Real) \
                or not 0 <= row_group_size_mb < float("inf"):
            raise PetastormArgumentError(f"row_group_size_mb must be a positive number, got {row_group_size_mb!r}")
        if row_group_size_mb:
            changes[_BLOCK_SIZE] = str(int(row_group_size_mb * 1024 * 1024))
    confs = [_Conf(spark.conf, runtime=True)]
    hadoop_conf = _classic_only_hadoop_conf(spark)
    if hadoop_conf is not None:
        confs.append(_Conf(hadoop_conf, runtime=False))
    previous = _apply(confs, changes)
    try:
        yield
    finally:
        _restore(confs, previous)
    if filesystem_factory is not None:
        fs, path = resolve_dataset_url(dataset_url, filesystem=_filesystem_from_factory(filesystem_factory))
    else:
        fs, path = resolve_dataset_url(dataset_url)
    import pyarrow.fs as pafs

    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        hint = "" if "://" in str(dataset_url) or filesystem_factory is not None else (
            "; a path without a scheme is looked for on the local filesystem: pass the full URL (hdfs://...) "
            "if Spark's default filesystem is another")
        raise DatasetNotFoundError(
            f"materialize_dataset({dataset_url!r}): the block wrote nothing there ({path} does not exist); write "
            f"the DataFrame to the URL given to materialize_dataset, inside the with block{hint}")
    counts = count_row_groups_per_file(fs, path)
    if not counts:
        raise PetastormMetadataGenerationError(f"{dataset_url}: the block wrote no Parquet files")
    _check_written_columns(fs, path, list(counts), schema, dataset_url)
    if use_summary_metadata and not file_exists(fs, posixpath.join(path, SUMMARY_METADATA_FILE)):
        write_summary_metadata(fs, path, list(counts))
    elif not use_summary_metadata:
        _refresh_stale_summary(fs, path, list(counts))
    write_petastorm_metadata(fs, path, schema, counts)
    _drop_stale_checksum(fs, path, COMMON_METADATA_FILE)
