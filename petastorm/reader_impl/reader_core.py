"""The :class:`Reader`: epochs of planned work items -> pool -> ordered batches -> rows, batches or ngrams.

It holds no decoding and no I/O: the plan says what to read and in which order, the pool runs the
worker and gives results back in plan order, and the Reader turns each :class:`ColumnBatch` into the
output form while keeping a cursor ``(epoch, position, rows_into_item)`` that ``state_dict`` saves.

The iteration state lives in a :class:`_Pipeline` that the Reader owns and that never refers back to the
Reader, so an abandoned Reader is freed by reference counting alone and its ``__del__`` stops the pool.
"""
from __future__ import annotations

import itertools
import threading
import warnings
from typing import Any, Callable, Iterator, Optional

import numpy as np

from petastorm.errors import PetastormReaderError, PetastormTypeError
from petastorm.reader_impl.work_item import ColumnBatch, WorkItem

__all__ = ["Reader"]

_STOPPED_MESSAGE = ("Trying to read a sample after a reader created by make_reader/make_batch_reader has stopped. "
                    "This may happen if the make_reader/make_batch_reader context manager has exited but you try to "
                    "fetch a sample from it anyway")


class _Pipeline:
    """Cursor, plans and output forming of one Reader (no reference to the Reader itself)."""

    def __init__(self, *, pool: Any, plan_rows: np.ndarray, plan_options: Any, num_epochs: Optional[int],
                 schema: Any, ngram: Any, ngram_schema: Any, is_batched: bool, first_plan: Optional[list]) -> None:
        self.pool = pool
        self.plan_rows = plan_rows
        self.plan_options = plan_options
        self.num_epochs = num_epochs
        self.epoch_limit = num_epochs
        self.schema = schema
        self.field_names = list(schema.fields)
        self.namedtuple = schema._get_namedtuple()
        self.ngram = ngram
        self.ngram_schema = ngram_schema
        self.ngram_slices: dict = {}  # (epoch, position) -> (row_start, row_stop, rows) of sliced ngram items
        self.is_batched = is_batched
        self.plans = {0: first_plan} if first_plan is not None else {}
        self.epoch = 0
        self.position = 0
        self.rows_into_item = 0
        self.skip_first = 0
        self.exhausted = False
        self.rows_yielded = 0
        self.items_done = 0
        self.may_be_empty: set = set()  # epochs dealt by an elastic resume, which may hold no row for this rank
        self.warned_empty = False       # an endless pass told that a whole epoch yielded no row

    def plan(self, epoch: int) -> list:
        from petastorm.reader_impl.plan import make_epoch_plan

        plan = self.plans.pop(epoch, None)
        return plan if plan is not None else make_epoch_plan(self.plan_rows, self.plan_options, epoch)

    def items(self, epoch: int, position: int) -> Iterator[WorkItem]:
        while self.epoch_limit is None or epoch < self.epoch_limit:
            plan = self.plan(epoch)
            if not plan and epoch not in self.may_be_empty:  # nothing selected (every epoch is empty): end,
                return                                          # even with num_epochs=None
            for item in plan[position:]:
                yield item if self.ngram is None else self.ngram_item(item)
            epoch += 1
            position = 0

    def outputs(self) -> Iterator[Any]:
        """Yield outputs and keep the cursor pointing at the next one to yield."""
        skip, self.skip_first = self.skip_first, 0
        # num_epochs=None: a whole epoch that yields no row (a predicate or row filter that keeps none) is told
        # once; the reader goes on, as 0.12.1's did (a later epoch may yield rows: a balanced shard is dealt
        # other rows each epoch, a predicate may keep state), so such a reader never ends
        warn_empty = self.epoch_limit is None and not self.warned_empty
        epoch_rows: Optional[int] = 0 if self.position == 0 and not skip else None  # None: a partial epoch
        for batch in self.pool.imap(self.items(self.epoch, self.position)):
            item = batch.item
            if warn_empty and item.epoch != self.epoch:
                if epoch_rows == 0 and self.epoch not in self.may_be_empty:
                    self.warned_empty = warn_empty = True
                    warnings.warn(f"epoch {self.epoch} of this reader (num_epochs=None) yielded no row: its "
                                  f"predicate or filters keep none. It reads on, epoch after epoch, and never ends "
                                  f"if none ever matches: pass num_epochs=, or check the predicate", UserWarning,
                                  stacklevel=2)
                epoch_rows = 0 if item.position == 0 else None
            self.epoch, self.position, self.rows_into_item = item.epoch, item.position, 0
            self.items_done += 1
            if self.ngram is not None:
                outputs: Any = self.ngrams(batch)
            elif self.is_batched:
                outputs = [self.namedtuple(**batch.columns)] if batch.num_rows else []
            else:
                outputs = self.rows(batch)
            if skip:
                outputs = outputs[skip:] if isinstance(outputs, list) else itertools.islice(outputs, skip, None)
                self.rows_into_item = skip
                skip = 0
            for out in outputs:
                self.rows_into_item += 1
                self.rows_yielded += 1
                if epoch_rows is not None:
                    epoch_rows += 1
                yield out
            self.position += 1
            self.rows_into_item = 0
        self.exhausted = True

    def rows(self, batch: ColumnBatch) -> Iterator[tuple]:
        cols = [batch.columns[name] for name in self.field_names]
        if not cols:
            return iter([])
        return map(self.namedtuple._make, zip(*cols))

    def ngram_item(self, item: WorkItem) -> WorkItem:
        """The item a worker reads for ngrams: rows in file order (windows are shuffled instead), and the
        whole row group when the item is a slice of it (windows may run past the slice's end; the slice
        is kept in ``ngram_slices`` to deal the windows out)."""
        rows = int(self.plan_rows[item.row_group])
        if item.row_start == 0 and item.row_stop >= rows:
            return item._replace(row_seed=None) if item.row_seed is not None else item
        self.ngram_slices[(item.epoch, item.position)] = (item.row_start, item.row_stop, rows)
        return item._replace(row_start=0, row_stop=rows, row_seed=None)

    def ngrams(self, batch: ColumnBatch) -> list:
        row_slice = self.ngram_slices.pop((batch.item.epoch, batch.item.position), None)
        ngrams = self.ngram.form_ngrams_from_columns(batch.columns, batch.num_rows, self.ngram_schema,
                                                     row_slice=row_slice)
        if self.plan_options.shuffle_rows and len(ngrams) > 1:
            seed = (self.plan_options.seed, batch.item.epoch, batch.item.position)
            order = np.random.default_rng(seed).permutation(len(ngrams))
            ngrams = [ngrams[i] for i in order]
        return [self.ngram.make_namedtuple(self.ngram_schema, ng) for ng in ngrams]


class Reader:
    """Iterator over a dataset: namedtuples of rows (``make_reader``) or of column batches
    (``make_batch_reader``), or ngram dicts.

    Build it with :func:`petastorm.make_reader` or :func:`petastorm.make_batch_reader`. One Reader may be
    read from several threads (each ``next()`` is serialised).

    Attributes
    ----------
    schema : Unischema
        Schema of what the reader yields (after ``schema_fields`` and ``transform_spec``).
    dataset : DatasetInfo
    ngram : NGram or None
    is_batched_reader : bool
    batched_output : bool
    last_row_consumed : bool
        True once the last row of the last epoch was returned.
    """

    def __init__(self, *, dataset: Any, schema: Any, plan_rows: np.ndarray, plan_options: Any, num_epochs: Optional[int],
                 pool: Any, worker_factory: Callable, is_batched_reader: bool, ngram: Any = None,
                 ngram_schema: Any = None, cache: Any = None, options_fingerprint: str = "",
                 options: Optional[dict] = None, explicit_seed: Optional[int] = None,
                 resume_from: Optional[dict] = None,
                 first_plan: Optional[list] = None, selection_log: Any = None,
                 explain_setup: Optional[dict] = None) -> None:
        self.dataset = dataset
        self.schema = schema
        self.ngram = ngram
        self.is_batched_reader = is_batched_reader
        self.batched_output = is_batched_reader
        self.last_row_consumed = False
        self._pool = pool
        self._cache = cache
        self._options_fingerprint = options_fingerprint
        self._options = options or {}
        self._explicit_seed = explicit_seed
        self._explain_log = selection_log  # what each selection stage pruned, for explain()
        self._explain_setup = explain_setup or {}
        self._stopped = False
        self._failed: Optional[str] = None  # the error that ended the pass (further reads raise)
        self._output: Optional[Iterator] = None
        self._lock = threading.RLock()
        self._p = _Pipeline(pool=pool, plan_rows=plan_rows, plan_options=plan_options, num_epochs=num_epochs,
                            schema=schema, ngram=ngram, ngram_schema=ngram_schema, is_batched=is_batched_reader,
                            first_plan=first_plan)
        if resume_from is not None:
            self.load_state_dict(resume_from)
        pool.start(worker_factory)

    @property
    def num_epochs(self) -> Optional[int]:
        """Epochs per pass (``make_reader(num_epochs=...)``; None: the reader never ends)."""
        return self._p.num_epochs

    # --- iteration ---------------------------------------------------------------------------------------

    def __iter__(self) -> "Reader":
        return self

    def __next__(self) -> Any:
        with self._lock:
            if self._failed is not None:
                raise PetastormReaderError(
                    f"the reader stopped after an error of its pass ({self._failed}); the rows after it are not "
                    f"read: make a new reader (resume_from=reader.state_dict() continues at the item that failed)")
            if self._stopped:
                raise PetastormReaderError(_STOPPED_MESSAGE)
            if self._output is None:
                self._output = self._p.outputs()
            try:
                return next(self._output)
            except StopIteration:
                if self._stopped:  # stop() (or join()) from another thread ended the pool: not the data's end
                    raise PetastormReaderError(_STOPPED_MESSAGE) from None
                self.last_row_consumed = True
                raise
            except Exception as exc:
                # the pass's generator is over: reading on must not look like the end of the data (rows lost
                # without a word); the error stops the reader, its workers are let go
                self._failed = f"{type(exc).__name__}: {exc}"  # (not the exception: its frames hold files)
                self._pool.stop()
                raise
            except BaseException:
                # Ctrl-C inside the pass (waiting for the pool, or a dummy pool's item): the generator is over,
                # its cursor is not: the next call goes on from the row after the last one returned
                self._p.skip_first = self._p.rows_into_item
                self._output = None
                raise

    def next(self) -> Any:
        """The next row/batch (the original's method name)."""
        return self.__next__()

    # --- state ---------------------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """A small JSON-serialisable dict from which ``make_reader(..., resume_from=state)`` continues exactly."""
        from petastorm.reader_impl.reader_state import ReaderCursor, make_state_dict

        with self._lock:
            p = self._p
            rows = p.rows_into_item if self._output is not None else p.skip_first
            cursor = ReaderCursor(epoch=p.epoch, position=p.position, rows_into_item=rows)
            extra: dict = {"epoch_limit": p.epoch_limit}
            if p.plan_options.sharded and p.plan_options.shard_mode == "balanced" and p.ngram is None:
                from petastorm.reader_impl.elastic import state_extra

                dealt = cursor.epoch in getattr(self, "_elastic_deals", ())  # an epoch dealt by an elastic resume
                extra["global_row"] = None if dealt else self._global_row(cursor)
                extra.update(state_extra(self, cursor, extra["global_row"]))
            return make_state_dict(cursor, self.dataset.fingerprint(), self._options_fingerprint,
                                   int(p.plan_options.seed), extra, options=self._options)

    def _global_row(self, cursor: Any) -> Optional[int]:
        """Balanced shard mode: offset of the next row in the epoch's global row sequence (for elastic
        resume; saved in the state's ``extra["global_row"]``). None past the last epoch."""
        from petastorm.reader_impl.elastic import global_row

        return global_row(self, cursor)

    def load_state_dict(self, state: dict) -> None:
        """Continue from a state saved by :meth:`state_dict`; call before iterating.

        Raises
        ------
        PetastormStateError
            When the state comes from another dataset or other options, is malformed, or points outside
            the plan of its epoch.
        """
        from petastorm.reader_impl import elastic
        from petastorm.reader_impl.reader_state import check_cursor_in_plan, check_state_dict

        with self._lock:
            if self._output is not None:
                raise PetastormReaderError("load_state_dict must be called before the reader yields its first row")
            if elastic.is_job_state(state):  # merged by petastorm.merge_state_dicts: elastic resume
                elastic.load_job_state(self, state)
                return
            cursor = check_state_dict(state, self.dataset.fingerprint(), self._options_fingerprint,
                                      options=self._options, seed=self._explicit_seed)
            p = self._p
            if self._explicit_seed is None and cursor.seed is not None and cursor.seed != p.plan_options.seed:
                # made with seed=None: plan with the saved seed, as make_reader(resume_from=state) does
                import dataclasses

                p.plan_options = dataclasses.replace(p.plan_options, seed=int(cursor.seed))
                p.plans.clear()
            extra = state.get("extra") or {}
            elastic.restore_deals(self, extra)  # the rank was reading an epoch dealt by an elastic resume
            epoch_limit = extra.get("epoch_limit", p.epoch_limit)
            if epoch_limit is None or cursor.epoch < epoch_limit:
                plan = p.plan(cursor.epoch)
                p.plans[cursor.epoch] = plan
                check_cursor_in_plan(cursor, plan)
            p.epoch, p.position, p.skip_first = cursor.epoch, cursor.position, cursor.rows_into_item
            p.epoch_limit = epoch_limit

    # --- lifecycle -----------------------------------------------------------------------------------------

    def reset(self) -> None:
        """Start another pass of ``num_epochs`` epochs once every sample of the last pass was consumed."""
        with self._lock:
            p = self._p
            if not p.exhausted:
                raise NotImplementedError("Currently do not support resetting a reader while in the middle of "
                                          "iteration. You can call reset only after all samples were consumed.")
            if p.num_epochs is None:
                raise NotImplementedError("reset() is meaningless with num_epochs=None (the reader never ends)")
            p.epoch_limit = (p.epoch_limit or 0) + p.num_epochs
            p.epoch = p.epoch_limit - p.num_epochs
            p.position = p.rows_into_item = p.skip_first = 0
            p.exhausted = False
            self.last_row_consumed = False
            self._output = None

    @property
    def reader_pool_type(self) -> str:
        """Where the workers run: ``'thread'``, ``'process'`` or ``'dummy'`` (the calling thread), as given to
        ``make_reader(reader_pool_type=...)`` (0.12.1 had no public way to tell)."""
        return self._pool.pool_type

    @property
    def seeded(self) -> bool:
        """True when the reader was made with a ``seed``: its order is the same on every run (with ``seed=None``
        a seed is drawn once per reader; its ``state_dict()`` holds it)."""
        return self._explicit_seed is not None

    @property
    def has_transform_spec(self) -> bool:
        """True when the reader was made with a ``transform_spec`` (its function may change values and types)."""
        return self._options.get("transform") is not None

    @property
    def stopped(self) -> bool:
        """True once :meth:`stop` or :meth:`join` was called: further reads raise."""
        return self._stopped

    def stop(self) -> None:
        """Stop the workers; further reads raise."""
        self._stopped = True
        self._pool.stop()

    def join(self) -> None:
        """Wait for every worker thread/process to end (``join()`` stops the workers first if ``stop()`` was
        not called: further reads raise, as after ``stop()``)."""
        self._stopped = True
        self._pool.join()

    def cleanup_cache(self) -> None:
        """Remove the local disk cache (``cache_type='local-disk'``)."""
        if self._cache is not None and hasattr(self._cache, "cleanup"):
            self._cache.cleanup()

    @property
    def diagnostics(self) -> dict:
        """Counters of the pipeline: rows/batches yielded, cursor and pool statistics (``pool_*``), and the
        original's keys: ``output_queue_size`` (0.12.1's thread pool: results waiting for the consumer),
        ``items_consumed``, ``items_produced``, ``items_inprocess`` (its process pool: items handed to the
        workers, results returned, items in flight)."""
        p = self._p
        diag = {"rows_yielded": p.rows_yielded, "items_done": p.items_done, "epoch": p.epoch,
                "position": p.position}
        pool: dict = {}
        try:
            pool = dict(self._pool.diagnostics)
            diag.update({f"pool_{k}": v for k, v in pool.items()})
        except Exception:  # pragma: no cover - diagnostics must never fail a caller
            pass
        # output_queue_size: finished results waiting for the consumer (the thread pool's queue and the results
        # that came early, out of order); 0.12.1's thread pool reported its results queue's size
        diag.update({"output_queue_size": pool.get("reorder_buffered", 0) + pool.get("results_waiting", 0),
                     "items_consumed": pool.get("items_submitted", 0),
                     "items_produced": pool.get("items_completed", 0),
                     "items_inprocess": pool.get("in_flight", 0)})
        return diag

    def explain(self, epoch: Optional[int] = None, *, row_counts: bool = False, shuffling_queue_capacity: int = 0,
                batch_size: int = 1) -> Any:
        """What this reader reads, before reading any data: a
        :class:`~petastorm.reader_impl.explain.ReadPlan` (``print()`` it for a table, ``to_dict()`` for
        programs). See :func:`petastorm.reader_impl.explain.explain_reader` for the parameters."""
        from petastorm.reader_impl.explain import explain_reader

        return explain_reader(self, epoch, row_counts=row_counts, shuffling_queue_capacity=shuffling_queue_capacity,
                              batch_size=batch_size)

    def __reduce__(self) -> Any:
        raise PetastormTypeError(
            "a petastorm Reader cannot be pickled (it holds open files and its pool's worker threads or "
            "processes): make the reader in the process that reads it, e.g. in a torch Dataset's __iter__ "
            "(torch.utils.data.get_worker_info() gives cur_shard/shard_count), not in its __init__")

    def __enter__(self) -> "Reader":
        return self

    def __exit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        """Stop and join the workers, then remove the local disk cache (``cache_type='local-disk'``), as
        petastorm 0.13 does; ``stop()`` and ``join()`` alone keep it for a later reader."""
        self.stop()
        self.join()
        self.cleanup_cache()

    def __del__(self) -> None:
        try:
            if not self._stopped:
                self._pool.stop()
        except Exception:
            pass


def warn_deprecated(name: str) -> None:
    """Warn that an argument of the original library no longer has any effect."""
    warnings.warn(f"{name} is deprecated and has no effect in this version of petastorm", DeprecationWarning,
                  stacklevel=3)
