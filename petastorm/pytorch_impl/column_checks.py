"""What the batched loaders run on each reader batch before batching: ``transform_fn`` per column (the
original's call, with its type promotions first), then the checks that refuse, naming the field, what no
tensor can hold (strings, ``None`` in ``make_reader`` rows) before a batch is cut."""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional

import numpy as np

from petastorm.adapters.checks import ensure_aligned
from petastorm.adapters.nulls import batch_nulls_as_nan
from petastorm.errors import PetastormBatchShapeError, PetastormTypeError
from petastorm.pytorch_impl.batched_buffers import column_as_numpy
from petastorm.pytorch_impl.device import NULLS_HINT, STRINGS_HINT, string_column_error
from petastorm.pytorch_impl.dtypes import (
    first_present,
    promote_array,
    refuse_nulls_columns,
    refuse_string_arrays,
)

__all__ = ["make_chunk_fn", "is_batch_reader"]


def is_batch_reader(reader: Any) -> bool:
    """True for a ``make_batch_reader`` reader (column batches), False for ``make_reader`` rows."""
    return bool(getattr(reader, "is_batched_reader", getattr(reader, "batched_output", False)))


def _column_of(name: str, value: Any) -> np.ndarray:
    """What ``transform_fn`` returned for field ``name``, as a numpy array (an error naming the field if not)."""
    try:
        return column_as_numpy(value)
    except Exception as e:  # noqa: BLE001
        raise PetastormTypeError(f"transform_fn returned a {type(value).__name__} for field {name!r}, which is not "
                                 f"an array ({e})") from None


def make_chunk_fn(transform_fn: Optional[Callable], reader: Any) -> Optional[Callable]:
    """What runs on each reader batch before batching: for ``make_batch_reader``, numbers with nulls become floats
    with NaN (:func:`~petastorm.adapters.nulls.nulls_as_nan_columns`, as the original's batch reader gave
    them, so every batch of a reader batch has one dtype), then ``transform_fn`` per column (:func:`_per_column`);
    for ``make_reader``, ``transform_fn``, then a ``None`` left is the original's nullable ``TypeError``."""
    per_column = _per_column(transform_fn)
    if not is_batch_reader(reader):  # None in a row's value: the original's TypeError, after transform_fn (it may fill them)
        if per_column is None:
            return _refuse_nulls
        return lambda columns: _refuse_nulls(per_column(columns))
    nulls_as_nan = batch_nulls_as_nan(reader)
    if per_column is None:
        return lambda columns: _refuse_strings(nulls_as_nan(columns))
    return lambda columns: _refuse_strings(per_column(nulls_as_nan(columns)))


def _refuse_nulls(columns: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """A field of ``make_reader`` rows no tensor can hold: strings (with ``None`` or not) are refused as strings
    (0.12.1 failed on them with torch's ``ValueError`` before any ``None`` was seen), then ``None`` and arrays
    of strings with the original's ``TypeError``."""
    for name, col in columns.items():
        if col.dtype.kind == "O" and col.ndim == 1 and isinstance(first_present(col), (str, bytes)):
            raise string_column_error(name)
    return refuse_string_arrays(refuse_nulls_columns(columns, NULLS_HINT), STRINGS_HINT)


def _refuse_strings(columns: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """Fields of string arrays: the original's error naming the field, per reader batch (after ``transform_fn``,
    which may turn them into numbers), before batching could fail on them as cells of different shapes."""
    return refuse_string_arrays(columns, STRINGS_HINT)


def _per_column(transform_fn: Optional[Callable]) -> Optional[Callable]:
    """The original's ``transform_fn`` semantics: called once per field on the reader's column batch, with the
    original's type promotions applied (:func:`~petastorm.pytorch_impl.dtypes.promote_array`)."""
    if transform_fn is None:
        return None

    def apply(columns: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        out = {}
        for name, col in columns.items():
            # the original's promotions first (bool -> uint8, uint16 -> int32, uint32 -> int64; recorded from
            # 0.12.1): ``x * 2`` of a uint16 column overflowed before the loader promoted it
            value = transform_fn(promote_array(name, col, strings_ok=True))
            out[name] = column = _column_of(name, value)
            if column.ndim == 0:  # a TypeError, and the RuntimeError torch gave the original for a None
                raise PetastormBatchShapeError(
                    f"transform_fn returned a {type(value).__name__} for field {name!r}, not a column: it gets the "
                    f"field's column of a reader batch (shape (rows, ...)) and must return the new column")
        ensure_aligned(out, "transform_fn returned columns")
        return out

    return apply
