"""``DataLoader``: batches of tensors from a petastorm reader, the original's API and semantics.

Two paths, chosen by ``collate_fn``:

- **Columns** (the default ``decimal_friendly_collate``): the shared :class:`~petastorm.adapters.BatchPipeline`
  re-cuts the reader's output to ``batch_size`` rows by slicing whole columns (``make_batch_reader``) or by
  gathering rows into columns (``make_reader``), shuffles on whole columns, and turns each batch into tensors
  (:func:`~petastorm.pytorch_impl.collate.columns_to_torch`) on a background thread, two batches ahead of
  the training loop. The result is what the default collate gives from the same rows (but ``uint16``/``uint32``
  scalar fields are promoted too: see :mod:`~petastorm.pytorch_impl.collate`); no Python step per row.
- **Rows** (a user ``collate_fn``): the function gets a list of ``batch_size`` row dicts, as the original gives
  them (recorded from 0.12.1): over ``make_reader`` ``row._asdict()`` per row; over ``make_batch_reader`` one
  dict per row of each column batch (values are numpy scalars and sub-arrays). Values pass through the
  original's promotions (:mod:`~petastorm.pytorch_impl.dtypes`) first; ``None`` is the original's ``TypeError``.
  Unlike the original, string and object values reach the ``collate_fn`` instead of breaking the loader.
  Rows are shuffled through a :class:`~petastorm.reader_impl.shuffling_buffer.RandomShufflingBuffer`.

In both paths the shuffling is seeded from the reader's seed (and the pass number), so a reader made with a
``seed`` gives the same batches on every run; over a reader made without one, from a seed drawn once from
numpy's global RNG, as the original shuffled (``numpy.random.seed(...)`` makes the order reproducible; recorded
from 0.12.1); and ``state_dict()`` / ``load_state_dict()`` continue a pass with
no row lost or repeated (reader cursor, buffered rows, RNG, batches prefetched but not yet yielded).
"""
from __future__ import annotations

from functools import partial
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional

import numpy as np

from petastorm.adapters.buffer_quality import pass_seed
from petastorm.adapters.checks import ensure_int
from petastorm.adapters.nulls import batch_nulls_as_nan
from petastorm.errors import PetastormArgumentError, PetastormArgumentTypeError, PetastormStateError
from petastorm.pytorch_impl.collate import columns_block_to_torch, columns_to_torch, decimal_friendly_collate
from petastorm.pytorch_impl.dtypes import (
    promote_array,
    refuse_nulls_columns,
    refuse_string_arrays,
    sanitize_row,
)
from petastorm.pytorch_impl.loader_base import LoaderBase, ensure_reader
from petastorm.reader_impl.shuffling_buffer import NoopShufflingBuffer, RandomShufflingBuffer

__all__ = ["DataLoader"]

_PREFETCH = 2

_K_PATH = "path"
_K_PIPELINE = "pipeline"
_K_READER = "reader"
_K_BUFFER = "buffer"
_K_PARTIAL = "partial_batch"
_K_FINISHED = "finished"


def _refuse_nulls_and_strings(columns: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """Rows of ``make_reader`` gathered into columns: a ``None``, or a field of string arrays, is the original's
    ``TypeError`` naming the field, before batching and shuffling."""
    return refuse_string_arrays(refuse_nulls_columns(columns))


def _nan_for_nulls_refuse_strings(nulls_as_nan: Callable, columns: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """A ``make_batch_reader`` batch: numbers with nulls as floats with NaN; a field of string arrays is the
    original's ``TypeError`` naming it (the batch reader gives it as 2-D ``S`` arrays in some batches and as
    object arrays of arrays in others: batching them together failed as "cells of different shapes")."""
    return refuse_string_arrays(nulls_as_nan(columns))


class _RowPass:
    """The row path of one pass: reader rows -> shuffling buffer -> lists of ``batch_size`` rows."""

    def __init__(self, reader: Any, batch_size: int, capacity: int, seed: Optional[list]) -> None:
        self.reader = reader
        self.batch_size = batch_size
        self.capacity = capacity
        self.buffer: Any = (RandomShufflingBuffer(capacity, capacity - 1, extra_capacity=None, random_seed=seed)
                            if capacity > 0 else NoopShufflingBuffer())
        self.partial: List[dict] = []
        self.finished = False
        self.is_batched = bool(getattr(reader, "is_batched_reader", False))
        # numbers with nulls as floats with NaN, as the column path (a column of an array field holding only
        # nulls is kept: its rows are the nullable TypeError, not NaN scalars)
        self.nulls_as_nan = batch_nulls_as_nan(reader) if self.is_batched else None

    def _rows_of(self, item: Any) -> List[dict]:
        if self.is_batched:
            columns = item._asdict() if hasattr(item, "_asdict") else dict(item)
            converted = self.nulls_as_nan({k: v for k, v in columns.items() if isinstance(v, np.ndarray)})
            columns = {k: converted.get(k, v) for k, v in columns.items()}
            columns = {k: promote_array(k, v, strings_ok=True) if isinstance(v, np.ndarray) else v
                       for k, v in columns.items()}
            names = list(columns)
            return [sanitize_row(dict(zip(names, values)), strings_ok=True) for values in zip(*columns.values())]
        if not hasattr(item, "_asdict"):
            raise PetastormArgumentError(f"reader: DataLoader reads rows (namedtuples) or column batches, the "
                                         f"reader gave a {type(item).__name__} (ngram readers are not supported)")
        return [sanitize_row(item._asdict(), strings_ok=True)]

    def _drain(self) -> Iterator[List[dict]]:
        buffer = self.buffer
        while buffer.can_retrieve():
            self.partial.append(buffer.retrieve())
            if len(self.partial) == self.batch_size:
                rows, self.partial = self.partial, []
                yield rows

    def batches(self) -> Iterator[List[dict]]:
        """Lists of rows, ``batch_size`` each (the last one shorter)."""
        if len(self.partial) >= self.batch_size:  # a batch whose collate_fn was interrupted (see DataLoader)
            rows, self.partial = self.partial, []
            yield rows
        if not self.finished:
            yield from self._drain()  # a restored buffer may already hold enough rows
            for item in self.reader:
                self.buffer.add_many(self._rows_of(item))
                yield from self._drain()
            self.finished = True
            self.buffer.finish()
        yield from self._drain()
        if self.partial:
            rows, self.partial = self.partial, []
            yield rows

    def state_dict(self) -> dict:
        return {_K_PATH: "rows", _K_READER: self.reader.state_dict(), _K_BUFFER: self.buffer.state_dict(),
                _K_PARTIAL: list(self.partial), _K_FINISHED: self.finished}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        partial, finished = state.get(_K_PARTIAL), state.get(_K_FINISHED)
        problems = [f"{k!r} is missing" for k in (_K_READER, _K_BUFFER, _K_PARTIAL, _K_FINISHED) if k not in state]
        if not isinstance(state.get(_K_BUFFER, {}), Mapping):
            problems.append(f"{_K_BUFFER!r} is not a dict")
        if not isinstance(finished, bool) and _K_FINISHED in state:
            problems.append(f"{_K_FINISHED!r} is not True or False")
        if _K_PARTIAL in state and (not isinstance(partial, list) or len(partial) > self.batch_size
                                    or not all(isinstance(row, Mapping) for row in partial)):
            problems.append(f"{_K_PARTIAL!r} is not a list of at most batch_size row dicts")
        if problems:
            raise PetastormStateError(f"malformed DataLoader state (rows path): {'; '.join(problems)}")
        self.reader.load_state_dict(state[_K_READER])
        self.buffer.load_state_dict(state[_K_BUFFER])
        self.partial = list(partial)
        self.finished = finished


class DataLoader(LoaderBase):
    """Batches of tensors from a petastorm reader (``make_reader`` or ``make_batch_reader``).

    Parameters
    ----------
    reader : petastorm Reader
        Rows (``make_reader``) or column batches (``make_batch_reader``).
    batch_size : int
        Rows per batch (>= 1); the last batch of a pass may be shorter.
    collate_fn : callable
        ``decimal_friendly_collate`` (default): each batch is a dict of tensors of shape ``(batch_size, ...)``,
        ``Decimal``/``str`` fields as Python lists, with the original's type promotions (``bool -> uint8``,
        ``uint16 -> int32``, ``uint32 -> int64``). Another function gets a list of row dicts and returns the
        batch.
    shuffling_queue_capacity : int
        0: reader order. > 0: rows are shuffled through a buffer of about this many rows (seeded from the
        reader's seed; over a reader made without one, from numpy's global RNG, as the original).

    Raises
    ------
    PetastormArgumentError
        (a ``ValueError``) for ``batch_size < 1`` or ``shuffling_queue_capacity < 0``, naming the argument.
        (The original silently yielded the whole reader as one batch for ``batch_size <= 0``.)
    PetastormArgumentTypeError
        (a ``TypeError``, as the original's at the first batch, and a ``ValueError``) for a ``collate_fn`` that
        is not callable.
    """

    def __init__(self, reader: Any, batch_size: int = 1, collate_fn: Callable = decimal_friendly_collate,
                 shuffling_queue_capacity: int = 0) -> None:
        super().__init__()
        self.batch_size = ensure_int("batch_size", batch_size, 1, integral_float=True)
        self.shuffling_queue_capacity = ensure_int("shuffling_queue_capacity", shuffling_queue_capacity, 0,
                                                   integral_float=True)
        if not callable(collate_fn):
            raise PetastormArgumentTypeError(f"collate_fn must be callable, got {collate_fn!r}")
        ensure_reader(reader, "DataLoader")
        self.reader = reader
        self.collate_fn = collate_fn
        self._columns = collate_fn is decimal_friendly_collate
        self._current: Any = None  # BatchPipeline (columns) or _RowPass (rows) of the running pass

    # --- one pass ------------------------------------------------------------------------------------------

    def _pass_buffer_seed(self) -> Optional[list]:
        return pass_seed(self._shuffle_seed(), self._passes_done)

    def _new_pass(self) -> Any:
        # the reader's seed is read per pass: a reader restored by load_state_dict plans with the saved seed
        seed = self._pass_buffer_seed() if self.shuffling_queue_capacity > 0 else None
        if self._columns:
            from petastorm.adapters import BatchPipeline

            # rows of make_reader: a None is the original's TypeError, before it can reach the shuffling buffer
            convert, convert_block, chunk_fn = columns_to_torch, columns_block_to_torch, _refuse_nulls_and_strings
            if getattr(self.reader, "is_batched_reader", False):
                # nulls in numbers: NaN, as the original; per reader batch, so all its batches have one dtype
                convert = partial(columns_to_torch, nulls_as_nan=True)
                convert_block = partial(columns_block_to_torch, nulls_as_nan=True)
                chunk_fn = partial(_nan_for_nulls_refuse_strings, batch_nulls_as_nan(self.reader))
            return BatchPipeline(self.reader, self.batch_size, shuffling_queue_capacity=self.shuffling_queue_capacity,
                                 seed=seed, convert=convert, prefetch=_PREFETCH, convert_block=convert_block,
                                 chunk_fn=chunk_fn)
        return _RowPass(self.reader, self.batch_size, self.shuffling_queue_capacity, seed)

    def _iter_impl(self) -> Iterator[Any]:
        if self._current is None or not self._resume_in_pass:
            self._close_pass()
            self._current = self._new_pass()
        current = self._current
        if self._columns:
            yield from current
        else:
            for rows in current.batches():
                try:
                    batch = self.collate_fn(rows)
                except BaseException:
                    # Ctrl-C (or any exit) inside collate_fn: the rows go back, so a state saved now serves them
                    current.partial = rows + current.partial
                    raise
                yield batch

    def _pass_rows_held(self) -> int:
        current = self._current
        if current is None:
            return 0
        if isinstance(current, _RowPass):
            return current.buffer.size + len(current.partial)
        return current.rows_held

    def _close_pass(self) -> None:
        current = self._current
        if current is not None and hasattr(current, "close"):
            current.close()

    # --- state ---------------------------------------------------------------------------------------------

    def _settings(self) -> Dict[str, Any]:
        return {"batch_size": self.batch_size, "shuffling_queue_capacity": self.shuffling_queue_capacity,
                "collate_fn": "decimal_friendly_collate" if self._columns else "custom",
                "reader": "make_batch_reader" if getattr(self.reader, "is_batched_reader", False) else "make_reader"}

    def _pass_state(self) -> dict:
        if self._current is None:  # restored but not started, or started and not advanced yet
            self._current = self._new_pass()
        if self._columns:
            return {_K_PATH: "columns", _K_PIPELINE: self._current.state_dict()}
        return self._current.state_dict()

    def _load_job_pass(self, job: Mapping[str, Any]) -> None:
        current = self._new_pass()
        if self._columns:
            current.load_job_state({**job, "settings": current.settings})
        else:
            from petastorm.adapters.elastic import held_share

            if job.get("held") and not isinstance(job["held"], list):
                raise PetastormStateError("the job state holds column batches of a DataLoader with the default "
                                          "collate_fn: resume it with such a DataLoader")
            current.reader.load_state_dict(job["reader"])
            share = held_share(job, current.reader)
            if share:
                current.buffer.add_many(list(share))
        self._current = current

    def _load_pass_state(self, body: Mapping[str, Any]) -> None:
        path = "columns" if self._columns else "rows"
        if not isinstance(body, Mapping) or body.get(_K_PATH) != path:
            raise PetastormStateError(f"collate_fn: the state was saved by a DataLoader on the "
                                      f"{body.get(_K_PATH) if isinstance(body, Mapping) else '?'} path, this one "
                                      f"is on the {path} path")
        current = self._new_pass()
        if self._columns:
            current.load_state_dict(body[_K_PIPELINE])
        else:
            current.load_state_dict(body)
        self._current = current
