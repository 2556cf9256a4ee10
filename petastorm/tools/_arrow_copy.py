"""The copy of :func:`petastorm.tools.copy_dataset.copy_dataset` without Spark (``spark=None``).

pyarrow reads the selected columns of the source file by file (Hive partition values become columns of the
Unischema's type), drops the rows with a null in ``not_null_fields``, and writes flat Parquet files whose row
groups are cut at ``row_group_size_mb`` of Arrow data (Spark's 128 MiB block size by default), uncompressed as
the Spark copy. Encoded cells are copied as they are: nothing is decoded. The Petastorm metadata is written
last, from the new files' footers.
"""
from __future__ import annotations

import math
import posixpath
import uuid
from typing import Any, Optional

__all__ = ["copy_with_pyarrow"]

_DEFAULT_ROW_GROUP_MB = 128  # Spark's parquet.block.size default
_MIB = 1024 * 1024


class _FileSink:
    """Writes record batches into numbered Parquet files, one row group per ``target_bytes`` of data."""

    def __init__(self, filesystem: Any, directory: str, schema: Any, target_bytes: int) -> None:
        self._fs = filesystem
        self._dir = directory
        self._schema = schema
        self._target_bytes = target_bytes
        self._job = uuid.uuid4().hex[:12]
        self._files = 0
        self._writer: Any = None
        self._buffer: list = []
        self._buffered_bytes = 0.0
        self.rows_in_file = 0

    def new_file(self) -> None:
        import pyarrow.parquet as pq

        self.close_file()
        path = posixpath.join(self._dir, f"part-{self._files:05d}-{self._job}.parquet")
        self._files += 1
        self._writer = pq.ParquetWriter(self._fs.open_output_stream(path), self._schema, compression="none")
        self.rows_in_file = 0

    def is_full(self, rows_per_file: int) -> bool:
        """No file is open, or the open one holds ``rows_per_file`` rows."""
        return self._writer is None or self.rows_in_file >= rows_per_file

    def write(self, batch: Any) -> None:
        """Append ``batch`` to the open file (one is opened if none is)."""
        if batch.num_rows == 0:
            return
        if self._writer is None:
            self.new_file()
        row_bytes = max(1.0, batch.nbytes / batch.num_rows)
        offset = 0
        while offset < batch.num_rows:  # a batch larger than the room left in the row group is cut
            room = max(1, int((self._target_bytes - self._buffered_bytes) / row_bytes))
            piece = batch.slice(offset, room)
            self._buffer.append(piece)
            self._buffered_bytes += piece.num_rows * row_bytes
            self.rows_in_file += piece.num_rows
            offset += piece.num_rows
            if self._buffered_bytes >= self._target_bytes:
                self._flush_row_group()

    def _flush_row_group(self) -> None:
        import pyarrow as pa

        if self._buffer:
            table = pa.Table.from_batches(self._buffer, schema=self._schema)
            self._writer.write_table(table, row_group_size=max(1, table.num_rows))
        self._buffer, self._buffered_bytes = [], 0.0

    def close_file(self) -> None:
        if self._writer is not None:
            self._flush_row_group()
            self._writer.close()
            self._writer = None

    def close(self) -> None:
        if self._files == 0:  # nothing selected: one file with the schema and no rows, as Spark writes
            self.new_file()
        self.close_file()


def _source_dataset(filesystem: Any, path: str, schema: Any) -> Any:
    """The source as a pyarrow dataset; Hive partition values are typed as their Unischema fields."""
    import pyarrow as pa
    import pyarrow.dataset as pads

    from petastorm.arrow_types import arrow_type_for_field
    from petastorm.etl.dataset_files import list_data_files

    rels = list_data_files(filesystem, path)
    keys: list[str] = []
    for rel in rels:
        for segment in rel.split("/")[:-1]:
            name, sep, _ = segment.partition("=")
            if sep and name not in keys:
                keys.append(name)
    partition_fields = [pa.field(k, arrow_type_for_field(schema.fields[k]) if k in schema.fields else pa.string())
                        for k in keys]
    partitioning = pads.partitioning(pa.schema(partition_fields), flavor="hive") if keys else None
    return pads.dataset([posixpath.join(path, rel) for rel in rels], filesystem=filesystem, format="parquet",
                        partitioning=partitioning, partition_base_dir=path)


def copy_with_pyarrow(source_url: str, target_url: str, target_schema: Any, source_schema: Any, names: list[str],
                      not_null: list[str], overwrite_output: bool, partitions_count: Optional[int],
                      row_group_size_mb: Optional[float], hdfs_driver: str, progress: bool) -> None:
    """Copy ``names`` columns of the rows without nulls in ``not_null`` (see the module doc).

    Without ``partitions_count`` each source file gives one target file; with it, the rows are dealt in order
    into that many files of (nearly) equal row counts.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.fs as pafs

    from petastorm.etl.dataset_metadata import count_row_groups_per_file, write_petastorm_metadata
    from petastorm.fs_utils import get_filesystem_and_path_or_paths

    source_fs, source_path = get_filesystem_and_path_or_paths(source_url, hdfs_driver=hdfs_driver)
    target_fs, target_path = get_filesystem_and_path_or_paths(target_url, hdfs_driver=hdfs_driver)
    dataset = _source_dataset(source_fs, source_path, source_schema)
    condition = None
    for name in not_null:
        term = pc.field(name).is_valid()
        condition = term if condition is None else condition & term
    existed = target_fs.get_file_info(target_path).type != pafs.FileType.NotFound
    if existed and overwrite_output:
        target_fs.delete_dir(target_path)
    target_fs.create_dir(target_path, recursive=True)
    fragments = sorted(dataset.get_fragments(), key=lambda f: f.path)
    rows_per_file = None
    if partitions_count is not None:
        total = dataset.count_rows(filter=condition) if condition is not None else dataset.count_rows()
        rows_per_file = max(1, math.ceil(total / partitions_count))
    target_bytes = int((row_group_size_mb or _DEFAULT_ROW_GROUP_MB) * _MIB)
    arrow_schema = dataset.schema
    out_schema = pa.schema([arrow_schema.field(n) for n in names])
    sink = _FileSink(target_fs, target_path, out_schema, target_bytes)
    bar = _bar(progress, len(fragments))
    try:
        for fragment in fragments:
            if rows_per_file is None:
                sink.close_file()
            for batch in fragment.to_batches(schema=arrow_schema, columns=names, filter=condition):
                _write_dealt(sink, batch, rows_per_file)
            bar.update(1)
        sink.close()
    except BaseException:
        sink.close_file()
        target_fs.delete_dir(target_path)  # no partial copy is left (the target was free or replaced)
        raise
    finally:
        bar.close()
    write_petastorm_metadata(target_fs, target_path, target_schema, count_row_groups_per_file(target_fs, target_path))


def _write_dealt(sink: _FileSink, batch: Any, rows_per_file: Optional[int]) -> None:
    """Write ``batch``; with ``rows_per_file``, start a new file whenever the current one is full."""
    if rows_per_file is None:
        sink.write(batch)
        return
    offset = 0
    while offset < batch.num_rows:
        if sink.is_full(rows_per_file):
            sink.new_file()
        take = min(rows_per_file - sink.rows_in_file, batch.num_rows - offset)
        sink.write(batch.slice(offset, take))
        offset += take


def _bar(progress: bool, total: int) -> Any:
    if not progress:
        from types import SimpleNamespace

        return SimpleNamespace(update=lambda n=1: None, close=lambda: None)
    from tqdm.auto import tqdm

    return tqdm(total=total, unit=" files", desc="petastorm-copy-dataset")
