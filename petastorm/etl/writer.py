"""The embedded writer: :func:`write_dataset` writes a Petastorm dataset with pyarrow alone (no JVM).

Pipeline: the input (row dicts, or already encoded Arrow/pandas blocks) -> :mod:`petastorm.etl.encode_pool`
(codecs in a process pool, Arrow record batches back in input order) -> Parquet files here, with row
groups cut by size like ``materialize_dataset`` (the Parquet block size) -> ``_common_metadata`` through
:func:`petastorm.etl.dataset_metadata.write_petastorm_metadata` -> atomic publish.

Atomic publish
--------------
Everything is written under a temporary sibling of the target, ``<target>.__petastorm_tmp_<uuid>``.

- Filesystems with an atomic directory rename (local, HDFS): the finished directory is renamed onto the
  target. With ``overwrite=True`` the old dataset is first renamed aside and deleted only after the new
  one is in place (it is put back if the rename fails). Writers publishing to one target at the same
  instant publish one after the other with ``overwrite=True`` (the last one's dataset stays); without it
  the later ones get a PetastormWriteError. No ``<target>.__petastorm_old_*`` directory is left behind.
- Object stores (S3, GCS, Azure...), where there is no directory rename: the finished files are moved to
  the target, data files first and ``_common_metadata`` last, so the target looks like a Petastorm
  dataset only once it is complete. With ``overwrite=True`` the old ``_common_metadata`` is deleted
  first, then the old files. Nothing serialises two writers there: do not write one target from two
  jobs at once (their files would mix).

On any failure before the publish (a bad row, a dead worker, Ctrl-C) the temporary directory is deleted
and the target is left as it was.

Partitioning
------------
``partition_by`` writes Hive-style directories ``<field>=<value>/`` as Spark's ``partitionBy`` does: the
partition fields are *not* stored in the Parquet files, their values come back from the path (a null
value, or an empty string, is ``__HIVE_DEFAULT_PARTITION__``; booleans are ``true``/``false``; other values
are escaped as Spark escapes them: ``%XX`` for control characters and ``"#%'*/:=?\\{[]^``, everything else
as is, so that a reader which does not unescape sees the values it would see for a Spark-written dataset).
A partition field's name may not hold ``/``, ``=``, ``%``, ``\\`` or control characters.
The Unischema stored in ``_common_metadata`` still has every field, partition fields included.

Modules: this one is the public API (the original's path); :mod:`petastorm.etl.write_args` checks the
arguments, :mod:`petastorm.etl.parquet_sink` writes the Parquet files, :mod:`petastorm.etl.publish` publishes.
"""
from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Iterable, Mapping, Optional, Sequence

import pyarrow as pa
import pyarrow.fs as pafs

from petastorm.errors import PetastormArgumentError, PetastormError, PetastormWriteError
from petastorm.etl.dataset_metadata import write_petastorm_metadata
from petastorm.etl.encode_pool import dataset_arrow_schema, encoded_batches, is_encoded_input
from petastorm.etl.parquet_sink import DatasetSink, Layout, SinkThread
from petastorm.etl.publish import check_target, delete_quietly, publish, resolve_target
from petastorm.etl.write_args import (
    ensure_compression,
    ensure_field_names,
    ensure_files_args,
    ensure_partition_by,
    ensure_positive_int,
    ensure_row_group_bytes,
    ensure_workers,
    known_row_count,
)
from petastorm.unischema import Unischema

__all__ = ["write_dataset", "WriteResult"]

_TMP_MARK = ".__petastorm_tmp_"


@dataclass(frozen=True)
class WriteResult:
    """What :func:`write_dataset` wrote.

    Attributes
    ----------
    dataset_url : str
        The URL as given.
    dataset_path : str
        The dataset directory on its filesystem.
    files : tuple of str
        Data files, relative to the dataset directory (``/``-separated), in name order.
    num_rows : int
        Rows written.
    num_row_groups_per_file : dict of str to int
        Row groups in each data file (what ``_common_metadata`` records).
    rows_per_file : dict of str to int
        Rows in each data file.
    """

    dataset_url: str
    dataset_path: str
    files: tuple
    num_rows: int
    num_row_groups_per_file: dict = field(default_factory=dict)
    rows_per_file: dict = field(default_factory=dict)


def write_dataset(dataset_url: str, schema: Unischema, rows: Iterable[Any], row_group_size_mb: float = 256, *,
                  workers_count: Optional[int] = None, progress: bool = True,
                  partition_by: Optional[Sequence[str]] = None, num_files: Optional[int] = None,
                  rows_per_file: Optional[int] = None, compression: Optional[str] = "snappy",
                  overwrite: bool = False, storage_options: Optional[dict] = None, filesystem: Any = None,
                  chunk_rows: int = 64) -> WriteResult:
    """Write a Petastorm dataset (Parquet files and ``_common_metadata``) without Spark.

    Parameters
    ----------
    dataset_url : str or os.PathLike
        Target directory: a path (``str`` or ``pathlib.Path``), ``file://``, ``s3://``, ``hdfs://``, ``gs://``... URL.
    schema : Unischema
        Fields and codecs of the rows.
    rows : iterable
        Row dicts (field name -> value; encoded here with the codecs), and/or pyarrow RecordBatches,
        Tables or pandas DataFrames whose columns are already encoded (checked against the schema's
        Arrow types, not re-encoded). A single RecordBatch/Table/DataFrame is accepted as well.
    row_group_size_mb : float
        Target size of a row group in MiB (the Parquet block size of ``materialize_dataset``), measured
        on the encoded, uncompressed Arrow data. A file's last row group may be smaller.
    workers_count : int, optional
        Processes that encode row dicts; None means one per CPU this process may use
        (``os.cpu_count()`` where CPU affinity is unknown); 1 encodes in this process. Worker processes
        import the main module: a script needs an ``if __name__ == "__main__":`` guard.
    progress : bool
        Show a tqdm progress bar (rows).
    partition_by : list of str, optional
        Scalar fields to partition by (Hive-style ``field=value`` directories; see the module docs).
    num_files : int, optional
        Data files (per partition directory). With a list of rows and no ``partition_by`` the rows are
        split in contiguous, balanced ranges; otherwise rows are dealt to the files in turn. Fewer files
        are written when there are fewer rows.
    rows_per_file : int, optional
        Start a new file after this many rows (per partition directory). Exclusive with ``num_files``.
    compression : str or None
        Parquet compression: ``'snappy'`` (default), ``'zstd'``, ``'gzip'``, ``'brotli'``, ``'lz4'``,
        or None / ``'none'``.
    overwrite : bool
        Replace a non-empty target directory (only once the new dataset is complete). Without it, a
        non-empty target is an error.
    storage_options : dict, optional
        Filesystem options (s3fs-style for S3), as for the readers.
    filesystem : pyarrow.fs.FileSystem or fsspec filesystem, optional
        Use this filesystem; the URL then only gives the path.
    chunk_rows : int
        Row dicts sent to a worker process at a time.

    Returns
    -------
    WriteResult

    Raises
    ------
    PetastormSchemaError
        A row that does not fit the schema (naming the row index and the field); nothing is published.
    PetastormWorkerError
        An encoding process died; nothing is published.
    PetastormWriteError
        The target is not empty (and ``overwrite`` is False), or the write or the publish failed (an
        ``OSError`` such as a full disk is its ``__cause__``).
    PetastormArgumentError
        An argument is out of range.
    """
    if not isinstance(schema, Unischema):
        raise PetastormArgumentError(f"schema must be a Unischema, got {type(schema).__name__}")
    if rows is None:
        raise PetastormArgumentError("rows must be an iterable of row dicts or of encoded batches, got None")
    row_group_bytes = ensure_row_group_bytes(row_group_size_mb)
    workers = ensure_workers(workers_count)
    partition_cols = ensure_partition_by(schema, partition_by)
    ensure_field_names(schema)
    num_files, rows_per_file = ensure_files_args(num_files, rows_per_file)
    compression = ensure_compression(compression)
    chunk_rows = ensure_positive_int("chunk_rows", chunk_rows)
    if is_encoded_input(rows):
        rows = [rows]
    elif isinstance(rows, (Mapping, str, bytes)) or not isinstance(rows, Iterable):
        what = "a single dict (one row? pass [row])" if isinstance(rows, Mapping) else type(rows).__name__
        raise PetastormArgumentError(f"rows must be an iterable of row dicts or of encoded batches, got {what}")
    if isinstance(dataset_url, os.PathLike):
        dataset_url = os.fspath(dataset_url)
    total_rows = known_row_count(rows)

    fs, path = resolve_target(dataset_url, storage_options, filesystem)
    path = path.rstrip("/") or path
    if isinstance(fs, pafs.LocalFileSystem) and os.path.islink(path):
        # a link to the dataset (current -> v1): publish at the directory it names (the rename would replace
        # the link itself, and leave the old dataset behind), so the link names the new dataset
        path = os.path.realpath(path)
    check_target(fs, path, dataset_url, overwrite)
    tmp_path = f"{path}{_TMP_MARK}{uuid.uuid4().hex}"

    arrow_schema = dataset_arrow_schema(schema)
    file_schema = pa.schema([f for f in arrow_schema if f.name not in partition_cols])
    layout = Layout.for_files(num_files, rows_per_file, total_rows if not partition_cols else None)
    sink = DatasetSink(fs, tmp_path, file_schema, partition_cols, layout, row_group_bytes, compression)
    progress_bar = _progress_bar(progress, total_rows)
    batches = encoded_batches(schema, rows, workers_count=workers, chunk_rows=chunk_rows)
    writer = SinkThread(sink)
    try:
        fs.create_dir(tmp_path, recursive=True)
        for batch, _ in batches:
            writer.put(batch)
            progress_bar.update(batch.num_rows)
        writer.finish()
        written = sink.close()
        write_petastorm_metadata(fs, tmp_path, schema, {name: groups for name, _, groups in written},
                                 arrow_schema=file_schema)
        publish(fs, tmp_path, path, dataset_url, overwrite, [name for name, _, _ in written])
    except BaseException as e:
        try:
            batches.close()  # stops the worker processes when the failure is on this side
        finally:
            writer.finish(stop=True)
            sink.abort()
            delete_quietly(fs, tmp_path)
        if isinstance(e, OSError) and not isinstance(e, PetastormError):  # disk full, file too large, permission...: say which dataset
            raise PetastormWriteError(f"writing the dataset {dataset_url!r} failed: {type(e).__name__}: {e}; "
                                      f"nothing was published") from e
        raise
    finally:
        progress_bar.close()
    files = tuple(sorted(name for name, _, _ in written))
    return WriteResult(dataset_url=dataset_url, dataset_path=path, files=files,
                       num_rows=sum(n for _, n, _ in written),
                       num_row_groups_per_file={name: groups for name, _, groups in written},
                       rows_per_file={name: n for name, n, _ in written})


def _progress_bar(progress: bool, total: Optional[int]) -> Any:
    if not progress:  # not even a disabled tqdm: it would create its process-wide multiprocessing lock
        return SimpleNamespace(update=lambda n: None, close=lambda: None)
    from tqdm.auto import tqdm

    return tqdm(total=total, unit=" rows", desc="write_dataset")
