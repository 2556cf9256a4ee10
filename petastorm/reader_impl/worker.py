"""Worker stage: one :class:`WorkItem` -> one :class:`ColumnBatch`.

Read the needed columns of one row group (through the cache), slice the item's rows, apply ``filters``,
evaluate the predicate on the predicate's columns only, then read and decode the other columns for the
rows that passed (vectorised, per column), permute rows when ``shuffle_rows``, and apply the
``TransformSpec``. The same worker serves ``make_reader`` (``output_mode='rows'``) and
``make_batch_reader`` (``output_mode='batch'``); they differ only in how the transform sees the data.

Row groups of local files whose columns read take at least 2 MiB are read from a memory map of the file made
for that one read (:func:`petastorm.reader_impl.parquet_io.mapped_row_group_file`; the footer parsed once per
file, the descriptor opened with it, so a file replaced under its path is not read): the pages are read where
the page cache holds them, not copied into Arrow's buffers first (about a sixth of a pass's CPU over 20 float
columns). Below ~1 MB the map costs more than that copy. The map is closed after the read (the pages do not
stay in the RSS); a file cut short after its footer was read is an error naming the file and the row group.
Per column, no ``Table.column_names`` where the column count says every column was found, no ``Table.slice``
of a whole row group.
"""
from __future__ import annotations

import os
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from petastorm.errors import (
    PetastormDatasetError,
    PetastormDecodeError,
    PetastormError,
    PetastormSchemaError,
    add_note,
)
from petastorm.reader_impl.row_filters import filter_mask, partition_scalar
from petastorm.reader_impl.work_item import ColumnBatch, WorkItem

__all__ = ["ReadSpec", "RowGroupWorker", "WorkerFactory"]

_OPEN_FILES = 8
#: Without pre-buffering, column chunks are streamed through a buffer of this size instead of read whole
#: (peak Arrow memory of reading one 8 MB binary row group: 26 MB instead of 34 MB).
_READ_BUFFER_BYTES = 1 << 20
#: Row groups whose columns read take fewer bytes in the file are read through the open file, not a memory map:
#: mapping and unmapping cost more than the copy they save below ~1 MB (8 float columns, Snappy).
_MAP_MIN_BYTES = 2 << 20


@dataclass
class ReadSpec:
    """Everything a worker needs, picklable (shipped to worker processes with cloudpickle).

    Attributes
    ----------
    filesystem : pyarrow.fs.FileSystem
    row_groups : list of RowGroupInfo
        The selected row groups; ``WorkItem.row_group`` indexes this list.
    schema : Unischema
        The dataset's schema (fields to read are looked up here).
    fields : list of str
        Fields to decode and hand to the transform / output, in output order.
    partition_types : dict of str to pyarrow.DataType
        Arrow type of each Hive partition column.
    predicate : PredicateBase or None
    transform_spec : TransformSpec or None
    filter_expression : pyarrow.compute.Expression or None
        Row filter from ``filters`` (DNF), evaluated before the predicate.
    output_mode : {'rows', 'batch'}
    cache : CacheBase or None
    dataset_fingerprint : str
        Part of cache keys.
    direct_read : bool
        Read fixed-shape ndarray fields of local files straight from their Parquet pages (see
        :mod:`petastorm.reader_impl.fixed_binary`; ``$PETASTORM_DIRECT_READ`` in the reader's process).
    settings : petastorm.settings.Settings or None
        The reader's settings, taken when it starts (workers read files with its ``arrow_pool``); None:
        those of the worker's process.
    convert_early_to_numpy : bool
        The ``convert_early_to_numpy`` argument of the reader factories (petastorm 0.13). In 0.13.1 it moved
        the conversion of a batch to numpy from the reader's thread into the worker, with no effect on what
        the reader yields or what a ``TransformSpec`` func receives (recorded: a ``DataFrame`` either
        way). This worker always hands numpy columns over, so it changes nothing here.
    """

    filesystem: Any
    row_groups: list
    schema: Any
    fields: list
    partition_types: dict = field(default_factory=dict)
    predicate: Any = None
    transform_spec: Any = None
    filter_expression: Any = None
    output_mode: str = "rows"
    cache: Any = None
    dataset_fingerprint: str = ""
    output_schema: Any = None
    filter_columns: list = field(default_factory=list)
    direct_read: bool = True
    convert_early_to_numpy: bool = False
    settings: Any = None


class RowGroupWorker:
    """Callable run by each pool worker; keeps a few Parquet files open between items."""

    def __init__(self, spec: ReadSpec) -> None:
        self._spec = spec
        self._files: "OrderedDict[str, Any]" = OrderedDict()
        import pyarrow.fs as pafs

        # pyarrow's pre-buffering (coalesced column-chunk reads) pays off on remote filesystems. On a local
        # one it gains nothing, and each open ParquetFile keeps its last pre-buffered row group alive until
        # its next read: with the open files of two workers, a large share of the peak RSS.
        self._pre_buffer = not isinstance(spec.filesystem, pafs.LocalFileSystem)
        self._map_files = not self._pre_buffer and getattr(spec.settings, "mmap_read", True)
        self._group_bytes: dict = {}  # path of an open file -> {row group: {column: stored bytes}}
        self._fds: dict = {}  # path of an open file -> the descriptor mapped reads map (the file as opened)
        # a worker dropped without close() (a dummy-pool reader abandoned mid-pass) must not keep them open
        weakref.finalize(self, _close_fds, self._fds)
        from petastorm.codecs import CompressedImageCodec, CompressedNdarrayCodec

        self._decode_bound = any(isinstance(getattr(spec.schema.fields.get(name), "codec", None),
                                            (CompressedImageCodec, CompressedNdarrayCodec)) for name in spec.fields)
        self._direct = _direct_fields(spec)
        self._direct_columns: dict = {}  # path -> {field name: (column index, max definition level)}
        self._direct_failed: set = set()  # (path, field name) whose layout pyarrow reads instead
        self._read_buffer: Any = None
        from petastorm.value_types import retyped_fields

        #: fields whose decoded values get the original's types (numpy.str_ in rows, ...)
        self._retyped = retyped_fields(spec.schema, list(dict.fromkeys(
            list(spec.fields) + (sorted(spec.predicate.get_fields()) if spec.predicate is not None else []))))

    # --- I/O ---------------------------------------------------------------------------------------------

    def _parquet_file(self, path: str) -> Any:
        from petastorm.reader_impl.parquet_io import open_row_group_file

        pf = self._files.get(path)
        if pf is not None:
            self._files.move_to_end(path)
            return pf
        fd = None  # what mapped reads map, opened first: the file read here even if its path is replaced later
        try:
            if self._map_files:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            pf = open_row_group_file(self._spec.filesystem, path, pre_buffer=self._pre_buffer,
                                     buffer_size=0 if self._pre_buffer else _READ_BUFFER_BYTES,
                                     decode_bound=self._decode_bound, config=self._spec.settings)
        except BaseException as e:  # a Ctrl-C during the open too: the descriptor is nobody's yet
            if fd is not None:
                os.close(fd)
            if not isinstance(e, Exception):
                raise
            raise PetastormDatasetError(f"cannot open Parquet file {path!r}: {e}") from e
        self._files[path] = pf
        if fd is not None:
            self._fds[path] = fd
        if len(self._files) > _OPEN_FILES:
            old_path, old = self._files.popitem(last=False)
            self._forget(old_path, old)
        return pf

    def _forget(self, path: str, pf: Any) -> None:
        """Close an open file (the source was opened here: close it too) and what is kept for it."""
        self._group_bytes.pop(path, None)  # kept for the open files only (bounded memory)
        fd = self._fds.pop(path, None)
        if fd is not None:
            os.close(fd)
        pf.close(force=True)

    def _read_row_group(self, rg: Any, columns: list) -> Any:
        """Arrow table of the stored ``columns`` of one row group: from a memory map of a local file (opened
        for this read, the footer parsed once per file) when they take at least :data:`_MAP_MIN_BYTES` in
        it, else through the open ``ParquetFile``."""
        pf = self._parquet_file(rg.path)
        if not self._map_files or self._stored_bytes(pf, rg, columns) < _MAP_MIN_BYTES:
            return pf.read_row_group(rg.row_group, columns=columns, use_threads=False)
        from petastorm.reader_impl.parquet_io import mapped_row_group_file

        with mapped_row_group_file(self._fds[rg.path], pf.metadata, decode_bound=self._decode_bound,
                                   config=self._spec.settings) as mapped:
            try:
                return mapped.read_row_group(rg.row_group, columns=columns, use_threads=False)
            except Exception as e:  # raised outside the block: its traceback's frames would hold the map open
                error = e.with_traceback(None)
            del mapped
        raise error

    def _stored_bytes(self, pf: Any, rg: Any, columns: list) -> int:
        """Bytes that ``columns`` (top-level names) of row group ``rg`` take in its file (the sizes of its
        column chunks are looked up once per row group while its file is open)."""
        groups = self._group_bytes.setdefault(rg.path, {})
        sizes = groups.get(rg.row_group)
        if sizes is None:
            group = pf.metadata.row_group(rg.row_group)
            sizes = {}
            for j in range(group.num_columns):
                chunk = group.column(j)
                name = chunk.path_in_schema.split(".", 1)[0]
                sizes[name] = sizes.get(name, 0) + chunk.total_compressed_size
            groups[rg.row_group] = sizes
        return sum(sizes.get(name, 0) for name in columns)

    def _read_columns(self, rg: Any, columns: list) -> Any:
        """Arrow table of ``columns`` (stored ones and partition ones) of one whole row group."""
        import pyarrow as pa

        stored = [c for c in columns if c not in self._spec.partition_types]

        def load() -> Any:
            try:
                table = self._read_row_group(rg, stored)
            except PetastormDatasetError:
                raise
            except Exception as e:
                raise PetastormDatasetError(
                    f"cannot read row group {rg.row_group} of Parquet file {rg.path!r}: {e}") from e
            if table.num_columns == len(stored):  # every column found (Table.column_names costs ~0.5 us a name)
                return table
            have = set(table.column_names)
            missing = [c for c in stored if c not in have]
            if missing:
                raise PetastormSchemaError(
                    f"Parquet file {rg.path!r} has no column {', '.join(map(repr, missing))}, which the dataset's "
                    f"schema has (files of the dataset disagree; select the common fields with schema_fields)")
            return table

        cache = self._spec.cache
        if cache is not None and stored:
            key = f"{self._spec.dataset_fingerprint}:{rg.relative_path}:{rg.row_group}:{','.join(stored)}"
            table = cache.get(key, load)
        else:
            if stored:
                table = load()
            else:
                num_rows = self._parquet_file(rg.path).metadata.row_group(rg.row_group).num_rows
                table = pa.table({"__rows__": pa.nulls(num_rows)})
        partition = dict(rg.partition)
        for name in columns:
            if name in self._spec.partition_types:
                typ = self._spec.partition_types[name]
                value = partition.get(name)
                table = table.append_column(name, pa.array([partition_scalar(value, typ, name)] * table.num_rows,
                                                           type=typ))
        return table

    def _read_direct(self, rg: Any, names: list) -> dict:
        """Fixed-shape ndarray fields of one whole row group read straight from their pages (see
        :mod:`petastorm.reader_impl.fixed_binary`): field name -> ``(num_rows,) + shape`` array. Fields whose
        layout that path does not handle are left out (for pyarrow), and not tried again in that file."""
        from petastorm.reader_impl.fixed_binary import ReadBuffer, read_fixed_binary

        names = [n for n in names if (rg.path, n) not in self._direct_failed]
        if not names:
            return {}
        pf = self._parquet_file(rg.path)
        columns = self._direct_columns.get(rg.path)
        if columns is None:
            schema = pf.metadata.schema
            columns = {}
            for j in range(len(schema)):
                c = schema.column(j)
                if c.max_repetition_level == 0 and c.path in self._direct:
                    columns[c.path] = (j, c.max_definition_level)
            self._direct_columns[rg.path] = columns
        group = pf.metadata.row_group(rg.row_group)
        if self._read_buffer is None:
            self._read_buffer = ReadBuffer(_batch_bytes)
        out = {}
        for name in names:
            found = columns.get(name)
            cells = read_fixed_binary(rg.path, group.column(found[0]), found[1], _batch_bytes,
                                      self._read_buffer) if found else None
            f = self._spec.schema.fields[name]
            try:
                array = f.codec.decode_fixed_cells(f, cells) if cells is not None else None
            except PetastormDecodeError as e:  # rows of the whole row group
                raise _placed(e, name, rg, e.row) from e
            if array is None:
                self._direct_failed.add((rg.path, name))
            else:
                out[name] = array
        return out

    # --- decoding ----------------------------------------------------------------------------------------

    def _decode_at(self, table: Any, names: list, rg: Any, row_start: int, rows: Optional[np.ndarray]) -> dict:
        """:meth:`_decode` of ``table``, whose row ``r`` is row ``row_start + r`` of row group ``rg`` (or
        ``row_start + rows[r]`` when ``rows`` is given): errors name the file, the row group and that row."""
        try:
            return self._decode(table, names)
        except PetastormDecodeError as e:
            row = None if e.row is None else row_start + int(e.row if rows is None else rows[e.row])
            raise _placed(e, getattr(e, "field", "?"), rg, row) from e
        except PetastormSchemaError as e:  # a column of another type than the field's: name the file
            raise PetastormSchemaError(f"{e} (row group {rg.row_group} of Parquet file {rg.path!r})") from e
        except Exception as e:  # a codec of the user's: its own exception, with the place
            if not isinstance(e, PetastormError):
                add_note(e, f"decoding row group {rg.row_group} of Parquet file {rg.path!r}")
            raise

    def _decode(self, table: Any, names: list) -> dict:
        from petastorm.codecs import decode_native_column
        from petastorm.value_types import as_original_values

        out = {}
        batch = self._spec.output_mode == "batch"
        for name in names:
            f = self._spec.schema.fields[name]
            column = table.column(name)
            try:
                if f.codec is not None:
                    out[name] = f.codec.decode_column(f, column)
                else:
                    out[name] = decode_native_column(f, column)
            except PetastormDecodeError as e:
                e.field = name
                raise
            except PetastormSchemaError as e:
                if f"field {name!r}" in str(e):
                    raise
                raise PetastormSchemaError(f"field {name!r}: {e}") from e
            except Exception as e:  # a codec of the user's: its own exception, naming the field
                if not isinstance(e, PetastormError):
                    add_note(e, f"decoding field {name!r}")
                raise
            kind = self._retyped.get(name)
            if kind is not None:
                out[name] = as_original_values(kind, out[name], batch, column)
        return out

    # --- one item ------------------------------------------------------------------------------------------

    def __call__(self, item: WorkItem) -> ColumnBatch:
        spec = self._spec
        rg = spec.row_groups[item.row_group]
        pred_fields = sorted(spec.predicate.get_fields()) if spec.predicate is not None else []
        filter_cols = list(spec.filter_columns) if spec.filter_expression is not None else []
        first_cols = list(dict.fromkeys(pred_fields + filter_cols))
        read = first_cols if first_cols else [
            f for f in spec.fields if f not in self._direct or (rg.path, f) in self._direct_failed]
        table = self._read_columns(rg, read)
        if item.row_start or item.num_rows < table.num_rows:
            table = table.slice(item.row_start, item.num_rows)
        # every row in order: no index arrays (np.arange + compare: ~20% of a worker's time on plain columns)
        all_rows = spec.filter_expression is None and not pred_fields and (item.row_seed is None or table.num_rows < 2)
        indices = None if all_rows else np.arange(table.num_rows)
        if spec.filter_expression is not None:
            indices = indices[filter_mask(table, spec.filter_expression)]
        decoded: dict = {}
        if pred_fields:
            from petastorm.predicates import evaluate_predicate

            taken = len(indices) != table.num_rows
            decoded = self._decode_at(table.take(indices) if taken else table, pred_fields, rg, item.row_start,
                                      indices if taken else None)
            mask = np.asarray(evaluate_predicate(spec.predicate, decoded, len(indices),
                                                 batch=spec.output_mode == "batch"), dtype=bool)
            indices = indices[mask]
            decoded = {k: v[mask] for k, v in decoded.items()}
        if item.row_seed is not None and indices is not None and len(indices) > 1:
            perm = np.random.default_rng(item.row_seed).permutation(len(indices))
            indices = indices[perm]
            decoded = {k: v[perm] for k, v in decoded.items()}
        remaining = [f for f in spec.fields if f not in decoded]
        if remaining:
            have = set(read)  # the columns of table (_read_columns raises if one is missing)
            in_first = [f for f in remaining if f in have]
            to_read = [f for f in remaining if f not in have]
            identity = all_rows or (len(indices) == table.num_rows
                                    and bool((indices == np.arange(table.num_rows)).all()))
            if not (table.num_rows if all_rows else len(indices)):
                decoded.update(self._empty_columns(remaining))
            else:
                if in_first:
                    decoded.update(self._decode_at(table if identity else table.take(indices), in_first, rg,
                                                   item.row_start, None if identity else indices))
                direct = self._read_direct(rg, [f for f in to_read if f in self._direct])
                for name, array in direct.items():
                    decoded[name] = _rows_of(array, item.row_start, item.num_rows, None if identity else indices)
                to_read = [f for f in to_read if f not in direct]
                if to_read:
                    rest = self._read_columns(rg, to_read).slice(item.row_start, item.num_rows)
                    decoded.update(self._decode_at(rest if identity else rest.take(indices), to_read, rg,
                                                   item.row_start, None if identity else indices))
        columns = {name: decoded[name] for name in spec.fields}
        num_rows = table.num_rows if all_rows else len(indices)
        if spec.transform_spec is not None:
            columns, num_rows = self._transform(columns, num_rows)
        return ColumnBatch(columns, num_rows, item)

    def _empty_columns(self, names: list) -> dict:
        import pyarrow as pa

        from petastorm.arrow_types import arrow_type_for_field

        out = {}
        for name in names:
            f = self._spec.schema.fields[name]
            typ = self._spec.partition_types.get(name) or arrow_type_for_field(f)
            out.update(self._decode(pa.table({name: pa.array([], type=typ)}), [name]))
        return out

    def _transform(self, columns: dict, num_rows: int) -> tuple:
        from petastorm.codecs import stack_or_object
        from petastorm.transform import apply_batch_transform, apply_row_transform

        spec = self._spec
        if spec.output_mode == "batch":
            out = apply_batch_transform(spec.transform_spec, columns, spec.output_schema)
            return out, (len(next(iter(out.values()))) if out else 0)
        names = list(columns)
        rows = [apply_row_transform(spec.transform_spec, {k: columns[k][i] for k in names}, spec.output_schema)
                for i in range(num_rows)]
        out_names = list(spec.output_schema.fields) if spec.output_schema is not None else \
            (list(rows[0]) if rows else [])
        out = {name: stack_or_object([r[name] for r in rows]) if rows else np.empty(0, dtype=object)
               for name in out_names}
        return out, num_rows

    def close(self) -> None:
        """Close the open Parquet files."""
        for path, pf in list(self._files.items()):
            try:
                self._forget(path, pf)
            except Exception:  # pragma: no cover
                pass
        self._files.clear()
        self._read_buffer = None


def _close_fds(fds: dict) -> None:
    """Close the descriptors a worker opened for mapped reads (its finalizer: it was dropped unclosed)."""
    for fd in list(fds.values()):
        try:
            os.close(fd)
        except OSError:
            pass
    fds.clear()


def _direct_fields(spec: ReadSpec) -> frozenset:
    """Fields read straight from their Parquet pages: fixed-shape ``NdarrayCodec`` ones (not a subclass,
    which may decode differently) of a local dataset read without a cache (the cache holds Arrow tables)."""
    import pyarrow.fs as pafs

    from petastorm.codecs import NdarrayCodec

    if spec.cache is not None or not isinstance(spec.filesystem, pafs.LocalFileSystem) or not spec.direct_read:
        return frozenset()
    out = set()
    for name in spec.fields:
        f = spec.schema.fields.get(name)
        shape = getattr(f, "shape", None)
        if (f is not None and type(f.codec) is NdarrayCodec and name not in spec.partition_types
                and shape is not None and all(isinstance(d, int) for d in shape)):
            out.add(name)
    return frozenset(out)


def _placed(error: PetastormDecodeError, name: str, rg: Any, row: Optional[int]) -> PetastormDecodeError:
    """``error`` (a cell of field ``name`` that cannot be decoded) naming the file, the row group and the row."""
    where = f"row {row} of " if row is not None else ""
    return PetastormDecodeError(f"field {name!r}, {where}row group {rg.row_group} of Parquet file {rg.path!r}: "
                                f"{error.detail}", row=row, detail=error.detail)


def _batch_bytes(nbytes: int) -> np.ndarray:
    from petastorm.batch_memory import empty_batch

    return empty_batch((nbytes,), np.uint8)


def _rows_of(array: np.ndarray, start: int, count: int, indices: Optional[np.ndarray]) -> np.ndarray:
    """Rows ``start:start + count`` of a whole row group's array, then ``indices`` of those (None: all, in
    order; ``count`` may run past the end, as ``WorkItem.num_rows`` does for "every row"): the array itself
    when that is every row, else a compact copy (a view of a part would keep the whole row group's memory
    alive)."""
    count = max(0, min(count, len(array) - start))
    if start == 0 and count == len(array) and indices is None:
        return array
    from petastorm.batch_memory import empty_batch

    part = array[start:start + count]
    rows = len(part) if indices is None else len(indices)
    out = empty_batch((rows,) + array.shape[1:], array.dtype)
    if indices is None:
        np.copyto(out, part)
    else:
        np.take(part, indices, axis=0, out=out)
    return out


class WorkerFactory:
    """Picklable factory: builds a :class:`RowGroupWorker` in each worker thread or process (it lives here,
    not in :mod:`petastorm.reader`, so that unpickling it in a worker process imports only this module)."""

    def __init__(self, spec: ReadSpec) -> None:
        self.spec = spec

    def __call__(self) -> RowGroupWorker:
        return RowGroupWorker(self.spec)
