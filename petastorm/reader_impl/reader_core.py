"""The :class:`Reader`: epochs of planned work items -> pool -> ordered batches -> rows, batches or ngrams.

It holds no decoding and no I/O: the plan says what to read and in which order, the pool runs the
worker and gives results back in plan order, and the Reader turns each :class:`ColumnBatch` into the
output form while keeping a cursor ``(epoch, position, rows_into_item)`` that ``state_dict`` saves.
"""
from __future__ import annotations

import dataclasses
import threading
import warnings
from typing import Any, Callable, Iterator, Optional

import numpy as np

from petastorm.errors import PetastormReaderError
from petastorm.reader_impl.work_item import ColumnBatch, WorkItem

__all__ = ["Reader"]

_STOPPED_MESSAGE = ("Trying to read a sample after a reader created by make_reader/make_batch_reader has stopped. "
                    "This may happen if the make_reader/make_batch_reader context manager has exited but you try to "
                    "fetch a sample from it anyway")


class Reader:
    """Iterator over a dataset: namedtuples of rows (``make_reader``) or of column batches
    (``make_batch_reader``), or ngram dicts.

    Build it with :func:`petastorm.make_reader` or :func:`petastorm.make_batch_reader`.

    Attributes
    ----------
    schema : Unischema
        Schema of what the reader yields (after ``schema_fields`` and ``transform_spec``).
    dataset : DatasetInfo
    ngram : NGram or None
    is_batched_reader : bool
    batched_output : bool
    """

    def __init__(self, *, dataset: Any, schema: Any, plan_rows: np.ndarray, plan_options: Any, num_epochs: Optional[int],
                 pool: Any, worker_factory: Callable, is_batched_reader: bool, ngram: Any = None,
                 cache: Any = None, options_fingerprint: str = "", options: Optional[dict] = None,
                 explicit_seed: Optional[int] = None, resume_from: Optional[dict] = None,
                 row_group_ids: Optional[list] = None, first_plan: Optional[list] = None) -> None:
        from petastorm.reader_impl.plan import make_epoch_plan  # noqa: F401 - fail early if missing

        self.dataset = dataset
        self.schema = schema
        self.ngram = ngram
        self.is_batched_reader = is_batched_reader
        self.batched_output = is_batched_reader
        self._plan_rows = plan_rows
        self._plan_options = plan_options
        self._num_epochs = num_epochs
        self._pool = pool
        self._cache = cache
        self._options_fingerprint = options_fingerprint
        self._options = options or {}
        self._explicit_seed = explicit_seed
        self._row_group_ids = row_group_ids
        self._plans = {0: first_plan} if first_plan is not None else {}
        self._epoch_limit = num_epochs
        self._epoch = 0
        self._position = 0
        self._rows_into_item = 0
        self._skip_first = 0
        self._started = False
        self._stopped = False
        self._exhausted = False
        self._output: Optional[Iterator] = None
        self._lock = threading.Lock()
        self._rows_yielded = 0
        self._batches_done = 0
        self.last_row_consumed = False
        self._namedtuple = schema._get_namedtuple()
        if resume_from is not None:
            self.load_state_dict(resume_from)
        pool.start(worker_factory)

    # --- iteration ---------------------------------------------------------------------------------------

    def _items(self, epoch: int, position: int) -> Iterator[WorkItem]:
        from petastorm.reader_impl.plan import make_epoch_plan

        while self._epoch_limit is None or epoch < self._epoch_limit:
            plan = self._plans.pop(epoch, None)
            if plan is None:
                plan = make_epoch_plan(self._plan_rows, self._plan_options, epoch)
            for item in plan[position:]:
                if self.ngram is not None and item.row_seed is not None:
                    yield dataclasses.replace(item, row_seed=None, position=item.position)
                else:
                    yield item
            epoch += 1
            position = 0

    def _outputs(self) -> Iterator[Any]:
        """Yield outputs and keep the cursor pointing at the next one to yield."""
        skip = self._skip_first
        plan_seeds: dict = {}
        for batch in self._pool.imap(self._items(self._epoch, self._position)):
            item = batch.item
            self._epoch, self._position, self._rows_into_item = item.epoch, item.position, 0
            self._batches_done += 1
            if self.ngram is not None:
                outputs = self._ngrams(batch, plan_seeds)
            elif self.is_batched_reader:
                outputs = [self._namedtuple(**batch.columns)] if batch.num_rows else []
            else:
                outputs = self._rows(batch)
            if skip:
                outputs = outputs[skip:] if isinstance(outputs, list) else _islice(outputs, skip)
                self._rows_into_item = skip
                skip = 0
            for out in outputs:
                self._rows_into_item += 1
                self._rows_yielded += 1
                yield out
            self._position += 1
            self._rows_into_item = 0
        self._exhausted = True

    def _rows(self, batch: ColumnBatch) -> Iterator[tuple]:
        cols = [batch.columns[name] for name in self.schema.fields]
        if not cols:
            return iter([])
        return map(self._namedtuple._make, zip(*cols))

    def _ngrams(self, batch: ColumnBatch, _cache: dict) -> list:
        ngrams = self.ngram.form_ngrams_from_columns(batch.columns, batch.num_rows, self._ngram_source_schema)
        if self._plan_options.shuffle_rows and len(ngrams) > 1:
            seed = (self._plan_options.seed, batch.item.epoch, batch.item.position)
            order = np.random.default_rng(seed).permutation(len(ngrams))
            ngrams = [ngrams[i] for i in order]
        return [self.ngram.make_namedtuple(self._ngram_source_schema, ng) for ng in ngrams]

    def __iter__(self) -> "Reader":
        return self

    def __next__(self) -> Any:
        if self._stopped:
            raise PetastormReaderError(_STOPPED_MESSAGE)
        if self._output is None:
            self._started = True
            self._output = self._outputs()
        try:
            return next(self._output)
        except StopIteration:
            self.last_row_consumed = True
            raise

    def next(self) -> Any:
        """The next row/batch (the original's method name)."""
        return self.__next__()

    # --- state ---------------------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """A small JSON-serialisable dict from which ``make_reader(..., resume_from=state)`` continues exactly."""
        from petastorm.reader_impl.reader_state import ReaderCursor, make_state_dict

        cursor = ReaderCursor(epoch=self._epoch, position=self._position, rows_into_item=self._rows_into_item)
        if self._output is None:
            cursor = ReaderCursor(epoch=self._epoch, position=self._position, rows_into_item=self._skip_first)
        return make_state_dict(cursor, self.dataset.fingerprint(), self._options_fingerprint,
                               int(self._plan_options.seed), {"epoch_limit": self._epoch_limit},
                               options=self._options)

    def load_state_dict(self, state: dict) -> None:
        """Continue from a state saved by :meth:`state_dict`; call before iterating.

        Raises
        ------
        PetastormStateError
            When the state comes from another dataset or other options, or is malformed.
        """
        from petastorm.reader_impl.reader_state import check_state_dict

        if self._output is not None:
            raise PetastormReaderError("load_state_dict must be called before the reader yields its first row")
        cursor = check_state_dict(state, self.dataset.fingerprint(), self._options_fingerprint,
                                  options=self._options, seed=self._explicit_seed)
        self._epoch, self._position, self._skip_first = cursor.epoch, cursor.position, cursor.rows_into_item
        extra = state.get("extra") or {}
        if "epoch_limit" in extra:
            self._epoch_limit = extra["epoch_limit"]

    # --- lifecycle -----------------------------------------------------------------------------------------

    def reset(self) -> None:
        """Start another pass of ``num_epochs`` epochs once every sample of the last pass was consumed."""
        if not self._exhausted:
            raise NotImplementedError("Currently do not support resetting a reader while in the middle of iteration. "
                                      "You can call reset only after all samples were consumed.")
        if self._num_epochs is None:
            raise NotImplementedError("reset() is meaningless with num_epochs=None (the reader never ends)")
        self._epoch_limit = (self._epoch_limit or 0) + self._num_epochs
        self._epoch = self._epoch_limit - self._num_epochs
        self._position = self._rows_into_item = self._skip_first = 0
        self._exhausted = False
        self.last_row_consumed = False
        self._output = None

    def stop(self) -> None:
        """Stop the workers; further reads raise."""
        self._stopped = True
        self._pool.stop()

    def join(self) -> None:
        """Wait for every worker thread/process to end."""
        self._pool.join()

    def cleanup_cache(self) -> None:
        """Remove the local disk cache (``cache_type='local-disk'``)."""
        if self._cache is not None and hasattr(self._cache, "cleanup"):
            self._cache.cleanup()

    @property
    def diagnostics(self) -> dict:
        """Counters of the pipeline: rows/batches yielded, cursor and pool statistics."""
        diag = {"rows_yielded": self._rows_yielded, "items_done": self._batches_done, "epoch": self._epoch,
                "position": self._position}
        try:
            diag.update({f"pool_{k}": v for k, v in dict(self._pool.diagnostics).items()})
        except Exception:  # pragma: no cover - diagnostics must never fail a caller
            pass
        return diag

    def __enter__(self) -> "Reader":
        return self

    def __exit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        self.stop()
        self.join()

    def __del__(self) -> None:
        try:
            if not self._stopped:
                self._pool.stop()
        except Exception:
            pass


def _islice(it: Iterator, skip: int) -> Iterator:
    import itertools

    return itertools.islice(it, skip, None)


def warn_deprecated(name: str) -> None:
    """Warn that an argument of the original library no longer has any effect."""
    warnings.warn(f"{name} is deprecated and has no effect in this version of petastorm", DeprecationWarning,
                  stacklevel=3)
