"""The argument checks of :func:`petastorm.etl.writer.write_dataset`: each names the argument and the value.
"""
from __future__ import annotations

import math
import numbers
import os
from typing import Any, Optional

import numpy as np
import pyarrow as pa

from petastorm.errors import PetastormArgumentError, PetastormSchemaError
from petastorm.etl.encode_pool import is_encoded_input
from petastorm.unischema import Unischema

__all__ = [
    "ensure_positive_int",
    "ensure_row_group_bytes",
    "ensure_workers",
    "ensure_files_args",
    "ensure_compression",
    "ensure_partition_by",
    "known_row_count",
    "ensure_field_names",
]

_COMPRESSIONS = {"snappy": "snappy", "gzip": "gzip", "brotli": "brotli", "zstd": "zstd", "lz4": "lz4",
                 "none": "none", "uncompressed": "none"}


def ensure_positive_int(name: str, value: Any) -> int:
    """``value`` as an ``int`` >= 1 (a numpy integer too; ``bool`` refused), or an error naming ``name``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < 1:
        raise PetastormArgumentError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def ensure_row_group_bytes(row_group_size_mb: Any) -> int:
    """``row_group_size_mb`` (MiB, a finite number > 0) in bytes, or an error naming it."""
    if isinstance(row_group_size_mb, (bool, np.bool_)) or not isinstance(row_group_size_mb, numbers.Real) \
            or not row_group_size_mb > 0 or math.isinf(row_group_size_mb):
        raise PetastormArgumentError(f"row_group_size_mb must be a positive number of MiB, got {row_group_size_mb!r}")
    return max(1, int(float(row_group_size_mb) * (1 << 20)))


def ensure_workers(workers_count: Any) -> int:
    """Encoding processes to start: ``workers_count``, or the CPUs this process may run on for None."""
    if workers_count is None:  # the CPUs this process may run on
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return ensure_positive_int("workers_count", workers_count)


def ensure_files_args(num_files: Any, rows_per_file: Any) -> tuple[Optional[int], Optional[int]]:
    """``(num_files, rows_per_file)`` as ints or None; refuse both at once (they exclude each other) and values
    that are not positive integers, naming the argument."""
    if num_files is not None and rows_per_file is not None:
        raise PetastormArgumentError(f"num_files ({num_files}) and rows_per_file ({rows_per_file}) exclude "
                                     f"each other: give one of them")
    return (None if num_files is None else ensure_positive_int("num_files", num_files),
            None if rows_per_file is None else ensure_positive_int("rows_per_file", rows_per_file))


def ensure_compression(compression: Optional[str]) -> str:
    """The Parquet codec name for ``compression`` (case-insensitive; None: no compression), or an error naming
    the choices or saying that this pyarrow build lacks it."""
    key = "none" if compression is None else str(compression).lower()
    if key not in _COMPRESSIONS:
        raise PetastormArgumentError(f"compression must be one of {sorted(_COMPRESSIONS)} or None, "
                                     f"got {compression!r}")
    name = _COMPRESSIONS[key]
    if name != "none" and not pa.Codec.is_available(name):
        raise PetastormArgumentError(f"compression {compression!r} is not available in this pyarrow build")
    return name


def ensure_partition_by(schema: Unischema, partition_by: Any) -> list[str]:
    """The field names of ``partition_by`` (a name or a sequence of names), each a scalar field of ``schema``;
    an error names the field that cannot be a Hive partition key."""
    if partition_by is None:
        return []
    names = [partition_by] if isinstance(partition_by, str) else list(partition_by)
    from petastorm.codecs import ScalarCodec

    for name in names:
        if not isinstance(name, str) or name not in schema.fields:
            raise PetastormArgumentError(f"partition_by: {name!r} is not a field of the schema {schema._name!r} "
                                         f"(fields: {list(schema.fields)})")
        bad = sorted(set(name) & set("/=%\\") | {c for c in name if ord(c) < 0x20})
        if bad:
            raise PetastormArgumentError(f"partition_by: field {name!r} has {bad} in its name, which a Hive "
                                         f"directory name '<field>=<value>' cannot hold; rename the field")
        f = schema.fields[name]
        if tuple(f.shape or ()) != () or not (f.codec is None or isinstance(f.codec, ScalarCodec)):
            raise PetastormArgumentError(f"partition_by: field {name!r} must be a scalar without an array or "
                                         f"image codec, got shape {f.shape} and codec {f.codec!r}")
    if len(set(names)) != len(names):
        raise PetastormArgumentError(f"partition_by names a field twice: {names}")
    if len(names) >= len(schema.fields):
        raise PetastormArgumentError("partition_by names every field: the data files would have no column")
    return names


def ensure_field_names(schema: Unischema) -> None:
    """Refuse a schema with a field that the readers' row namedtuples cannot hold (``'a b'``, ``'class'``,
    ``'_x'``): the dataset could be written but not read by make_reader/make_batch_reader (nor 0.12.1)."""
    from petastorm.unischema import namedtuple_field_problem

    for name in schema.fields:
        problem = namedtuple_field_problem(name)
        if problem:
            raise PetastormSchemaError(f"schema {schema._name!r}: field {name!r} {problem}; make_reader and "
                                       f"make_batch_reader return rows as namedtuples and could not read the "
                                       f"dataset back: rename the field")


def known_row_count(rows: Any) -> Optional[int]:
    """Rows in ``rows`` when it is a list or tuple (an encoded block counts its rows), else None (an
    iterator: unknown before it is read)."""
    if not isinstance(rows, (list, tuple)):
        return None
    return sum(len(r) if is_encoded_input(r) else 1 for r in rows)
