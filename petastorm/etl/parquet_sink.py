"""The data files of :func:`petastorm.etl.writer.write_dataset`: encoded Arrow batches -> Parquet files.

- :class:`DatasetSink`: every data file under the (temporary) dataset root: routes rows to their Hive-style
  partition directory (``<field>=<value>/``, as Spark's ``partitionBy``), names the files, cuts row groups
  by size (the Parquet block size of ``materialize_dataset``, measured on the encoded Arrow data).
- :class:`Layout`: how the rows of one partition directory are spread over files (a new file every N rows,
  contiguous balanced files, or N files dealt row by row).
- :class:`SinkThread`: runs the sink in a thread, so that encoding goes on while a row group is written.
"""
from __future__ import annotations

import math
import posixpath
import queue
import threading
import uuid
from dataclasses import dataclass
from typing import Any, Optional

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from petastorm.errors import PetastormSchemaError

__all__ = ["Layout", "DatasetSink", "SinkThread"]

_HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"


@dataclass(frozen=True)
class Layout:
    """How the rows of one partition directory are spread over files (at most one option is set)."""

    rows_per_file: Optional[int] = None   # a new file every N rows
    sizes: Optional[list] = None          # contiguous files of these row counts (the last one takes any excess)
    round_robin: Optional[int] = None     # N files, row i goes to file i % N

    @classmethod
    def for_files(cls, num_files: Optional[int], rows_per_file: Optional[int],
                  total_rows: Optional[int]) -> "Layout":
        """The layout of ``write_dataset``'s ``num_files`` / ``rows_per_file`` (at most one is given).

        ``num_files`` with a known ``total_rows`` (a list of rows, no partitioning) gives contiguous files
        of balanced sizes (empty ones dropped); without it, rows are dealt to the files in turn.
        """
        sizes = None
        if num_files is not None and total_rows is not None:
            sizes = [(k + 1) * total_rows // num_files - k * total_rows // num_files for k in range(num_files)]
            sizes = [s for s in sizes if s > 0]
        return cls(rows_per_file=rows_per_file, sizes=sizes,
                   round_robin=num_files if (num_files is not None and sizes is None) else None)


class _ParquetFile:
    """One data file: buffers batches and writes a row group each time ``row_group_bytes`` are there."""

    def __init__(self, sink: "DatasetSink", relative_path: str) -> None:
        self._sink = sink
        self.relative_path = relative_path
        self._writer: Optional[pq.ParquetWriter] = None
        self._stream: Any = None
        self._buffer: list[pa.RecordBatch] = []
        self._buffered_bytes = 0.0
        self.num_rows = 0
        self.num_row_groups = 0

    def add(self, batch: pa.RecordBatch) -> None:
        target = self._sink.row_group_bytes
        while batch.num_rows:
            per_row = max(1.0, batch.nbytes / batch.num_rows)
            take = max(1, math.ceil((target - self._buffered_bytes) / per_row))
            head, batch = (batch, batch.slice(0, 0)) if take >= batch.num_rows \
                else (batch.slice(0, take), batch.slice(take))
            self._buffer.append(head)
            self._buffered_bytes += head.num_rows * per_row
            self.num_rows += head.num_rows
            if self._buffered_bytes >= target:
                self._flush()

    def _flush(self) -> None:
        if not self._buffer:
            return
        table = pa.Table.from_batches(self._buffer)
        self._buffer, self._buffered_bytes = [], 0.0
        if self._writer is None:
            self._open()
        self._writer.write_table(table, row_group_size=max(1, table.num_rows))
        self.num_row_groups += 1

    def _open(self) -> None:
        sink = self._sink
        full_path = f"{sink.root}/{self.relative_path}"
        sink.fs.create_dir(posixpath.dirname(full_path), recursive=True)
        self._stream = sink.fs.open_output_stream(full_path)
        # The system allocator: first touch of fresh memory costs several times less than with mimalloc,
        # and a row group is all fresh memory (figures in benchmarks/README.md).
        self._writer = pq.ParquetWriter(self._stream, sink.file_schema, compression=sink.compression,
                                        use_dictionary=sink.native_columns, write_statistics=sink.native_columns,
                                        memory_pool=pa.system_memory_pool())

    def close(self) -> None:
        self._flush()
        if self._writer is None:  # no rows: an empty file still carries the schema
            self._open()
        self._writer.close()
        self._stream.close()

    def abort(self) -> None:
        for closable in (self._writer, self._stream):
            try:
                if closable is not None:
                    closable.close()
            except Exception:  # already failing: the temporary directory is deleted next
                pass


class _PartitionFiles:
    """The data files of one partition directory; routes rows to files following a :class:`Layout`."""

    def __init__(self, sink: "DatasetSink", directory: str) -> None:
        self._sink = sink
        self._directory = directory
        self._layout = sink.layout
        self.closed: list[_ParquetFile] = []
        self._current: Optional[_ParquetFile] = None
        self._slots: list[Optional[_ParquetFile]] = [None] * (self._layout.round_robin or 0)
        self._rows = 0

    def _new_file(self) -> _ParquetFile:
        name = self._sink.next_file_name()
        return _ParquetFile(self._sink, f"{self._directory}/{name}" if self._directory else name)

    def _file_capacity(self) -> Optional[int]:
        layout = self._layout
        if layout.rows_per_file is not None:
            return layout.rows_per_file
        if layout.sizes is not None:
            index = len(self.closed)
            return layout.sizes[index] if index < len(layout.sizes) - 1 else None
        return None

    def add(self, batch: pa.RecordBatch) -> None:
        if self._layout.round_robin:
            self._deal(batch)
            return
        while batch.num_rows:
            if self._current is None:
                self._current = self._new_file()
            capacity = self._file_capacity()
            room = batch.num_rows if capacity is None else capacity - self._current.num_rows
            self._current.add(batch.slice(0, room))
            batch = batch.slice(room)
            if capacity is not None and self._current.num_rows >= capacity:
                self._current.close()
                self.closed.append(self._current)
                self._current = None

    def _deal(self, batch: pa.RecordBatch) -> None:
        import numpy as np

        n = len(self._slots)
        for k in range(n):
            indices = np.arange((k - self._rows) % n, batch.num_rows, n)
            if len(indices):
                if self._slots[k] is None:
                    self._slots[k] = self._new_file()
                self._slots[k].add(batch.take(pa.array(indices)))
        self._rows += batch.num_rows

    def start_file(self) -> None:
        if self._current is None:
            self._current = self._new_file()

    def open_files(self) -> list[_ParquetFile]:
        return [f for f in [self._current] + self._slots if f is not None]

    def close(self) -> list[_ParquetFile]:
        for f in self.open_files():
            f.close()
            self.closed.append(f)
        self._current, self._slots = None, [None] * len(self._slots)
        return self.closed


class SinkThread(threading.Thread):
    """Runs ``sink.write`` in a thread, so that encoding goes on while a row group is being written
    (pyarrow releases the GIL) instead of every worker idling through each flush. At most ``max_batches``
    wait (chunks are <= 4 MiB of arrays); an error in the thread is raised in the caller."""

    def __init__(self, sink: "DatasetSink", max_batches: int = 32) -> None:
        super().__init__(name="petastorm-write_dataset-sink", daemon=True)
        self._sink, self._queue = sink, queue.Queue(max_batches)
        self._error: Optional[BaseException] = None
        self._stopped = False
        self.start()

    def run(self) -> None:
        while (batch := self._queue.get()) is not None:
            if self._error is None and not self._stopped:
                try:
                    self._sink.write(batch)
                except BaseException as e:  # handed to the caller
                    self._error = e

    def put(self, batch: pa.RecordBatch) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(batch)

    def finish(self, stop: bool = False) -> None:
        """Wait until every batch is written (``stop``: drop those not written yet)."""
        self._stopped = stop
        self._queue.put(None)
        self.join()
        if self._error is not None and not stop:
            raise self._error


class DatasetSink:
    """All data files of the dataset under ``root``: partition directories, file names, row groups."""

    def __init__(self, fs: pafs.FileSystem, root: str, file_schema: pa.Schema, partition_cols: list[str],
                 layout: Layout, row_group_bytes: int, compression: str) -> None:
        self.fs = fs
        self.root = root
        self.file_schema = file_schema
        self.layout = layout
        self.row_group_bytes = row_group_bytes
        self.compression = compression
        # Dictionaries and min/max statistics help native columns; on encoded blobs they only cost time.
        self.native_columns = [f.name for f in file_schema if not _is_blob(f.type)]
        self._partition_cols = partition_cols
        self._partitions: dict[tuple, _PartitionFiles] = {}
        self._job = uuid.uuid4().hex
        self._file_count = 0
        self._rows_seen = 0

    def next_file_name(self) -> str:
        name = f"part-{self._file_count:05d}-{self._job}.parquet"
        self._file_count += 1
        return name

    def _partition(self, key: tuple) -> _PartitionFiles:
        files = self._partitions.get(key)
        if files is None:
            directory = "/".join(f"{name}={_partition_segment(name, value)}"
                                 for name, value in zip(self._partition_cols, key))
            files = self._partitions[key] = _PartitionFiles(self, directory)
        return files

    def write(self, batch: pa.RecordBatch) -> None:
        """Add encoded rows (a batch with every column of the dataset, partition columns included)."""
        first_row, self._rows_seen = self._rows_seen, self._rows_seen + batch.num_rows
        if not self._partition_cols:
            self._partition(()).add(batch)
            return
        keys = list(zip(*(batch.column(name).to_pylist() for name in self._partition_cols)))
        data = batch.select(self.file_schema.names)
        groups: dict[tuple, list[int]] = {}
        for i, key in enumerate(keys):
            groups.setdefault(key, []).append(i)
        for key, indices in groups.items():
            _check_not_null_alike(batch.schema, self._partition_cols, key, first_row + indices[0])
            part = data if len(indices) == batch.num_rows else data.take(pa.array(indices))
            self._partition(key).add(part)

    def close(self) -> list[tuple[str, int, int]]:
        """Close every file; ``[(relative path, rows, row groups)]``."""
        if not self._partitions:  # no rows at all: one empty file still carries the schema
            self._partition(()).start_file()
        written = []
        for files in self._partitions.values():
            for f in files.close():
                written.append((f.relative_path, f.num_rows, f.num_row_groups))
        return written

    def abort(self) -> None:
        for files in self._partitions.values():
            for f in files.open_files():
                f.abort()


def _is_blob(arrow_type: pa.DataType) -> bool:
    return pa.types.is_binary(arrow_type) or pa.types.is_large_binary(arrow_type)


def _check_not_null_alike(schema: pa.Schema, names: list[str], key: tuple, row: int) -> None:
    """Refuse an empty string in a non-nullable partition field: like Spark, it is written as the Hive
    default (null) partition, so it would read back as a null that the field does not allow."""
    for name, value in zip(names, key):
        if value == "" and not schema.field(name).nullable:
            raise PetastormSchemaError(f"row {row} of the input: field {name!r}: an empty string cannot be the "
                                       f"value of a non-nullable partition field (it is written, as Spark does, as "
                                       f"the null partition {_HIVE_NULL})")


def _partition_segment(name: str, value: Any) -> str:
    """A partition value of the field ``name`` as a Hive directory name component."""
    if value is None:
        return _HIVE_NULL
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes):
        raise PetastormSchemaError(f"partition_by: field {name!r} holds binary values, which cannot name a "
                                   f"directory")
    text = str(value)
    if text == "":
        return _HIVE_NULL
    return escape_path_name(text)


# The characters Spark's ExternalCatalogUtils.escapePathName escapes (plus NUL, which no path may hold):
# control characters, '"#%'*/:=?\{[]^' and DEL. Everything else, non-ASCII letters and spaces included, is
# written as is, so a reader that does not unescape (0.12.1's legacy pyarrow dataset) sees the same value as
# for a Spark-written dataset, and '1e+20' stays a number it can parse.
_SPARK_ESCAPED = frozenset([chr(c) for c in range(0x20)] + list("\"#%'*/:=?\\{[]^") + ["\x7f"])


def escape_path_name(text: str) -> str:
    """``text`` as Spark escapes a Hive partition directory name: ``%XX`` (upper-case hex) for each character
    of Spark's set, the rest unchanged."""
    return "".join(f"%{ord(c):02X}" if c in _SPARK_ESCAPED else c for c in text)
