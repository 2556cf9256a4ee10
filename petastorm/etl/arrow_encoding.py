"""Rows to Arrow for the embedded writer: encode row dicts with the codecs into one record batch, and
check batches that come already encoded against the dataset's Arrow schema.

Pure functions, run in the writer's worker processes (:mod:`petastorm.etl.encode_pool`) or in-process.
"""
from __future__ import annotations

import sys
from typing import Any, Mapping, Optional

import numpy as np
import pyarrow as pa

from petastorm.arrow_types import arrow_type_for_field
from petastorm.errors import PetastormSchemaError
from petastorm.unischema import Unischema, encode_row

__all__ = ["dataset_arrow_schema", "encode_rows_to_batch", "validate_encoded_batch", "is_encoded_input"]


def dataset_arrow_schema(schema: Unischema) -> pa.Schema:
    """Arrow schema of the Parquet columns that store the fields of ``schema``, in field order.

    Column types are :func:`petastorm.arrow_types.arrow_type_for_field`; a field that is not nullable
    becomes a non-nullable (Parquet ``REQUIRED``) column.
    """
    return pa.schema([pa.field(f.name, arrow_type_for_field(f), nullable=bool(f.nullable))
                      for f in schema.fields.values()])


# --- encoding one chunk of row dicts ------------------------------------------------------------------------

def encode_rows_to_batch(schema: Unischema, arrow_schema: pa.Schema, rows: list,
                         first_row: int) -> pa.RecordBatch:
    """Encode row dicts (field name -> value) with the fields' codecs into one batch of ``arrow_schema``
    (the :func:`dataset_arrow_schema` of ``schema``). ``first_row`` is the input index of ``rows[0]``.

    Raises
    ------
    PetastormSchemaError
        Naming the row index in the input and the field, when a value does not fit its field.
    """
    names = list(schema.fields)
    columns: list[list] = [[] for _ in names]
    for i, row in enumerate(rows):
        if type(row) is not dict and isinstance(row, Mapping):
            row = dict(row)
        encoded = encode_row(schema, row, first_row + i)
        for column, name in zip(columns, names):
            column.append(encoded[name])
    arrays = [_to_arrow(name, arrow_schema.field(name).type, values, first_row)
              for name, values in zip(names, columns)]
    return pa.RecordBatch.from_arrays(arrays, schema=arrow_schema)


def _to_arrow(name: str, arrow_type: pa.DataType, values: list, first_row: int) -> pa.Array:
    """Encoded cell values of one field -> an Arrow array; a value that does not convert is named."""
    if pa.types.is_binary(arrow_type) and all(v is None or isinstance(v, (bytes, bytearray)) for v in values):
        array = _binary_array(values)
        if array is not None:
            return array
    try:
        return pa.array(values, type=arrow_type)
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        pass
    if pa.types.is_timestamp(arrow_type) or pa.types.is_date(arrow_type):
        try:
            return _timestamp_array(values, arrow_type)
        except (pa.ArrowException, TypeError, ValueError, OverflowError):
            pass
    for i, value in enumerate(values):
        try:
            if pa.types.is_date(arrow_type) and isinstance(value, np.datetime64):
                _timestamp_array([value], arrow_type)
            else:
                pa.array([value], type=arrow_type)
        except (pa.ArrowException, TypeError, ValueError, OverflowError) as e:
            shown = repr(value)
            shown = shown if len(shown) <= 80 else shown[:77] + "..."
            raise PetastormSchemaError(
                f"row {first_row + i:,} of the input: field {name!r}: value {shown} does not fit the "
                f"column type {arrow_type}: {e}") from None
    raise PetastormSchemaError(f"rows {first_row:,}..{first_row + len(values) - 1:,} of the input: field "
                               f"{name!r}: values do not convert to the column type {arrow_type}")


def _binary_array(values: list) -> Optional[pa.Array]:
    """Bytes cells -> a ``binary`` array with one copy (``pa.array`` is slow on bytearrays); None at 2 GiB
    or more (the limit of ``binary``'s int32 offsets)."""
    n = len(values)
    lengths = np.fromiter((0 if v is None else len(v) for v in values), dtype=np.int64, count=n)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    if offsets[-1] >= 2 ** 31:
        return None
    data = b"".join(v for v in values if v is not None)
    validity = None
    if any(v is None for v in values):
        valid = np.fromiter((v is not None for v in values), dtype=bool, count=n)
        validity = pa.py_buffer(np.packbits(valid, bitorder="little"))
    return pa.Array.from_buffers(pa.binary(), n, [validity, pa.py_buffer(offsets.astype(np.int32)),
                                                  pa.py_buffer(data)])


def _timestamp_array(values: list, arrow_type: pa.DataType) -> pa.Array:
    """Timestamps given as ``datetime``, ``date``, ``numpy.datetime64`` or integer nanoseconds; or dates given as
    ``numpy.datetime64`` (a value with a time of day other than midnight does not fit a date: ValueError)."""

    date = pa.types.is_date(arrow_type)
    unit = "D" if date else arrow_type.unit
    cells = [np.datetime64("NaT", unit) if v is None
             else np.datetime64(v, "ns") if isinstance(v, (int, np.integer)) and not isinstance(v, bool)
             else np.datetime64(v) for v in values]
    arr = np.array(cells)
    mask = np.array([v is None for v in values], dtype=bool)
    if date and np.any((arr != arr.astype("datetime64[D]")) & ~mask):
        raise ValueError("a time of day does not fit a date")
    arr = arr.astype(f"datetime64[{unit}]")
    if date:
        return pa.array(arr, mask=mask, type=pa.date32()).cast(arrow_type)
    return pa.array(arr, mask=mask, type=pa.timestamp(unit)).cast(arrow_type)


# --- validating input that is already encoded ---------------------------------------------------------------

def _as_record_batch(item: Any, first_row: int) -> Optional[pa.RecordBatch]:
    """A RecordBatch, Table or pandas DataFrame -> one RecordBatch (None when it has no rows)."""
    pd = sys.modules.get("pandas")
    if pd is not None and isinstance(item, pd.DataFrame):
        try:
            item = pa.Table.from_pandas(item, preserve_index=False)
        except (pa.ArrowException, TypeError, ValueError) as e:
            raise PetastormSchemaError(
                f"rows {first_row:,}.. of the input: a pandas DataFrame could not be converted to Arrow "
                f"({e}); DataFrame columns must hold already encoded values (bytes for codec fields)") from e
    if isinstance(item, pa.Table):
        if item.num_rows == 0:
            return None
        item = item.combine_chunks()
        return pa.RecordBatch.from_arrays([c.chunk(0) for c in item.columns], schema=item.schema)
    return item if item.num_rows else None


def is_encoded_input(item: Any) -> bool:
    """Whether ``item`` is a block of already encoded rows (RecordBatch, Table or pandas DataFrame)."""
    if isinstance(item, (pa.RecordBatch, pa.Table)):
        return True
    pd = sys.modules.get("pandas")
    return pd is not None and isinstance(item, pd.DataFrame)


def validate_encoded_batch(schema: Unischema, arrow_schema: pa.Schema, item: Any,
                           first_row: int) -> Optional[pa.RecordBatch]:
    """Check a block of already encoded rows against the schema and return it with ``arrow_schema``.

    Columns are matched by name. A column of another Arrow type is cast when the cast is safe (no
    overflow, no truncation); missing nullable fields become null columns. Values are not re-encoded.

    Raises
    ------
    PetastormSchemaError
        Naming the rows and the field: unknown column, missing field that is not nullable, a type that
        does not cast safely, a null in a field that is not nullable.
    """
    batch = _as_record_batch(item, first_row)
    if batch is None:
        return None
    last_row = first_row + batch.num_rows - 1
    where = f"rows {first_row:,}..{last_row:,} of the input"
    unknown = [n for n in batch.schema.names if n not in schema.fields]
    if unknown:
        raise PetastormSchemaError(f"{where}: columns {unknown} are not in the schema {schema._name!r} "
                                   f"(schema fields: {list(schema.fields)})")
    arrays = []
    for target in arrow_schema:
        name = target.name
        if name not in batch.schema.names:
            if not schema.fields[name].nullable:
                raise PetastormSchemaError(f"{where}: field {name!r} is missing and is not nullable")
            arrays.append(pa.nulls(batch.num_rows, type=target.type))
            continue
        column = batch.column(name)
        if column.type != target.type:
            try:
                column = column.cast(target.type, safe=True)
            except (pa.ArrowException, TypeError, ValueError) as e:
                raise PetastormSchemaError(
                    f"{where}: field {name!r} needs Arrow type {target.type}, got {column.type} "
                    f"(no safe cast: {e})") from None
        if column.null_count and not target.nullable:
            first_null = int(column.is_null().to_numpy(zero_copy_only=False).argmax())
            raise PetastormSchemaError(f"row {first_row + first_null:,} of the input: field {name!r} is not "
                                       f"nullable, but got a null value")
        arrays.append(column)
    return pa.RecordBatch.from_arrays(arrays, schema=arrow_schema)


# --- moving chunks between processes: array data through reused shared memory --------------------------------
#
# Pickling chunks through a pipe (4 copies per array) and fresh memory (a page fault per page) cost as much
# as the encoding. So each chunk in flight owns a *slot*: two named shared-memory blocks, reused for the
# whole write and kept mapped by the workers. The main process copies the large arrays into the input
# block and sends their offsets; the worker encodes views of it and writes its batch (Arrow IPC) into the
# output block, copied out once. A bigger batch uses a one-off block (and the slot grows). Without shared
# memory, chunks travel by pickle.
