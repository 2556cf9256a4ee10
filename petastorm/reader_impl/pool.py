"""The pool stage's contract: run :class:`WorkItem` s on workers and hand back their results in submission order.

:class:`Pool` is what every executor shares; the executors are
:class:`~petastorm.reader_impl.thread_pool.DummyPool` (each item in the caller's thread, when the caller asks
for the next result: exceptions propagate as they are, breakpoints work),
:class:`~petastorm.reader_impl.thread_pool.ThreadPool` (daemon worker threads fed by one shared task queue)
and :class:`~petastorm.reader_impl.process.ProcessPool` (worker processes; results come back through shared
memory). :func:`~petastorm.reader_impl.pool_factory.make_pool` builds the one a reader asks for.

``imap(items)`` pulls items lazily, keeps at most ``workers_count + results_queue_size`` of them submitted
but not yet yielded (so memory is bounded by ``results_queue_size``, not by the dataset), and yields the
results in the order of ``items`` whichever worker finishes first (a reorder buffer keyed by submission
order). A worker exception is re-raised in the caller at that item's turn, with the worker's formatted
traceback in a ``worker_traceback`` attribute.
"""
from __future__ import annotations

import itertools
import os
from typing import Any, Callable, Dict, Iterable, Iterator, Optional

from petastorm.errors import PetastormArgumentError, PetastormReaderError, PetastormWorkerError
from petastorm.reader_impl.work_item import ColumnBatch, WorkItem
from petastorm.settings import settings

__all__ = ["Pool", "POOL_TYPES", "JOIN_TIMEOUT_S", "WorkerFactory", "Failure", "ensure_count", "RemoteTraceback",
           "annotate_worker_exception", "close_worker", "results_budget_bytes"]

WorkerFactory = Callable[[], Callable[[WorkItem], ColumnBatch]]

#: Accepted values of ``reader_pool_type``.
POOL_TYPES = ("thread", "process", "dummy")

#: Seconds ``join()`` waits for a worker to finish its current item before giving up on it.
JOIN_TIMEOUT_S = 5.0


def ensure_count(name: str, value: Any, minimum: int) -> None:
    """Raise :class:`PetastormArgumentError` naming ``name`` unless ``value`` is an int >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise PetastormArgumentError(f"{name} must be an integer >= {minimum}, got {value!r}")


class RemoteTraceback(Exception):
    """Carries a worker's formatted traceback as the ``__cause__`` of a re-raised exception."""

    def __init__(self, tb: str):
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return "\n\nworker traceback:\n" + self.tb


def annotate_worker_exception(exc: BaseException, tb: str, set_cause: bool) -> BaseException:
    """Attach ``worker_traceback`` (and, across processes, a ``__cause__`` holding it) to ``exc``."""
    try:
        exc.worker_traceback = tb
    except Exception:  # an exception type that refuses new attributes: wrap it
        wrapped = PetastormWorkerError(f"{type(exc).__name__}: {exc}\n\nworker traceback:\n{tb}")
        wrapped.worker_traceback = tb
        return wrapped
    if set_cause:
        exc.__cause__ = RemoteTraceback(tb)
    return exc

def close_worker(worker: Any) -> None:
    """Call ``worker.close()`` if the worker has one (open files...); errors there are not worth raising."""
    close = getattr(worker, "close", None)
    if callable(close):
        try:
            close()
        except Exception:  # noqa: BLE001 - shutting down
            pass


class Failure:
    """A worker exception waiting in the reorder buffer for its turn (executors store it as an outcome)."""

    __slots__ = ("exc",)

    def __init__(self, exc: BaseException):
        self.exc = exc


def results_budget_bytes() -> int:
    """Bytes of finished results a pool lets wait for the consumer, on top of ``results_queue_size``, which
    bounds their number (``$PETASTORM_RESULTS_BUDGET_MB``, see :mod:`petastorm.settings`)."""
    return settings().results_budget_bytes


def _batch_nbytes(outcome: Any) -> int:
    """Bytes of the numpy columns of a result (object columns count their pointers only)."""
    columns = getattr(outcome, "columns", None)
    if not isinstance(columns, dict):
        return 0
    return sum(int(getattr(col, "nbytes", 0) or 0) for col in columns.values())


class Pool:
    """Common part of every executor: argument checks, the ordered bounded ``imap``, diagnostics.

    Subclasses implement ``_submit(gen, seq, item)``, ``_wait(results)`` (block until at least one
    outcome is stored in ``results`` keyed by ``seq``, or raise), ``_abandon(gen)`` and ``stop/join``.
    """

    pool_type = "base"
    #: Whether the pool still works in a child made by ``os.fork()`` (only the dummy pool: the workers of the
    #: others are threads or processes of the process that made the pool, see :meth:`_check_owner`).
    usable_after_fork = False

    def __init__(self, workers_count: int, results_queue_size: int):
        ensure_count("workers_count", workers_count, minimum=1)
        ensure_count("results_queue_size", results_queue_size, minimum=0)
        self.workers_count = workers_count
        self.results_queue_size = results_queue_size
        self._started = False
        self._stopped = False
        self._gen_counter = itertools.count(1)
        self._active_gen = 0
        #: (gen, results) of the running imap: its finished outcomes not yet yielded (see ProcessPool.diagnostics)
        self._live_results: Optional[tuple] = None
        #: the process that made the pool: its workers serve that process only
        self.owner_pid = os.getpid()
        # $PETASTORM_RESULTS_BUDGET_MB as the pool starts (docs/settings.md: each pool takes the environment
        # of the moment it starts; read at each larger result, a value changed mid-pass applied mid-pass)
        self._budget_bytes = results_budget_bytes()
        self._stats = {"items_submitted": 0, "items_completed": 0, "items_yielded": 0,
                       "items_failed": 0, "max_in_flight": 0, "in_flight": 0, "reorder_buffered": 0}

    # ---- lifecycle --------------------------------------------------------------------------------
    def _check_start(self, worker_factory: Any) -> None:
        if not callable(worker_factory):
            raise PetastormArgumentError(
                f"worker_factory must be a callable returning the worker callable, got {worker_factory!r}")
        if self._started:
            raise PetastormReaderError(f"{type(self).__name__}.start() was already called")
        if self._stopped:
            raise PetastormReaderError(f"{type(self).__name__} was stopped: build a new pool")
        self._started = True

    def _check_owner(self) -> None:
        """Raise :class:`PetastormReaderError` in a child made by ``os.fork()`` (a DataLoader worker, a
        ``multiprocessing`` 'fork' child) of the process that made a thread or process pool: the child has
        no worker threads (a fork copies only the forking thread) and the worker processes serve the parent
        over connections the child must not touch. The thread pool reported "all worker threads of the pool
        have ended" a second later; the process pool hung. (0.12.1, recorded: both hung.)"""
        if not self.usable_after_fork and os.getpid() != self.owner_pid:
            raise PetastormReaderError(
                f"this reader's {self.pool_type} pool was made in process {self.owner_pid} and cannot be used in "
                f"process {os.getpid()}, a child made by os.fork() (a DataLoader worker, a multiprocessing "
                f"'fork' child): its worker {'threads' if self.pool_type == 'thread' else 'processes'} serve the "
                f"parent only. Make the reader in the process that reads it (e.g. in the Dataset's __iter__), "
                f"or use reader_pool_type='dummy'")

    def start(self, worker_factory: WorkerFactory) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def stop(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def join(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def max_in_flight(self) -> int:
        """Most items submitted but not yet yielded: ``workers_count + results_queue_size``."""
        return self.workers_count + self.results_queue_size

    #: Items in flight beyond one per worker that the results budget never takes away: one for threads (a
    #: worker that finishes finds its next item queued); process workers get one each, to hide the latency
    #: of the round trip through the parent.
    _SPARE_PER_WORKER = 0

    def _in_flight_floor(self) -> int:
        return min(self.max_in_flight, self.workers_count * (1 + self._SPARE_PER_WORKER) + 1)

    def in_flight_limit(self, batch_bytes: int) -> int:
        """In-flight bound once results of ``batch_bytes`` bytes are seen: :attr:`max_in_flight`, lowered so
        that finished results waiting for the consumer stay within :func:`results_budget_bytes` (taken when
        the pool is made), but never below :meth:`_in_flight_floor` (every worker busy, one more item ready
        or queued)."""
        if batch_bytes <= 0:
            return self.max_in_flight
        floor = self._in_flight_floor()
        return max(floor, min(self.max_in_flight, self._budget_bytes // batch_bytes))

    @property
    def diagnostics(self) -> dict:
        """Counters: items submitted/completed/yielded/failed, in-flight now and at most, buffered."""
        d = {"pool_type": self.pool_type, "workers_count": self.workers_count,
             "results_queue_size": self.results_queue_size, "in_flight_limit": self.max_in_flight}
        # (the running imap's limit, lowered to the results budget once result sizes are known, overrides)
        d.update(self._stats)
        return d

    # ---- ordered, bounded map ---------------------------------------------------------------------
    def imap(self, items: Iterable[WorkItem]) -> Iterator[ColumnBatch]:
        """Run ``items`` on the workers; yield their results in the order of ``items``.

        Items are pulled from ``items`` lazily: at most :attr:`max_in_flight` are submitted but not yet
        yielded. Calling ``imap`` again abandons the previous, unfinished one (its generator then raises
        :class:`PetastormReaderError`). After :meth:`stop` the generator ends.
        """
        if not self._started:
            raise PetastormReaderError(f"{type(self).__name__}.imap() called before start()")
        if self._stopped:
            raise PetastormReaderError(f"{type(self).__name__}.imap() called after stop()")
        self._check_owner()
        gen = next(self._gen_counter)
        if self._active_gen:
            self._abandon(self._active_gen)
        self._active_gen = gen
        return self._imap(gen, iter(items))

    def _imap(self, gen: int, items: Iterator[WorkItem]) -> Iterator[ColumnBatch]:
        stats = self._stats
        results: Dict[int, Any] = {}
        self._live_results = (gen, results)
        submitted = 0
        yielded = 0
        exhausted = False
        # until the first result shows how big results are: every worker busy, one more item queued
        limit = self._in_flight_floor()
        biggest = -1
        try:
            while True:
                if self._active_gen != gen:
                    raise PetastormReaderError("this imap() was superseded by a later imap() call on the pool")
                self._check_owner()
                while not exhausted and submitted - yielded < limit and not self._stopped:
                    try:
                        item = next(items)
                    except StopIteration:
                        exhausted = True
                        break
                    self._submit(gen, submitted, item)
                    submitted += 1
                    stats["items_submitted"] += 1
                    stats["in_flight"] = submitted - yielded
                    stats["max_in_flight"] = max(stats["max_in_flight"], submitted - yielded)
                if self._stopped:
                    return
                if exhausted and yielded == submitted:
                    return
                self._pump(gen, results)
                while yielded not in results:
                    if not self._wait(gen, results):  # stopped while waiting
                        return
                    stats["reorder_buffered"] = len(results)
                outcome = results.pop(yielded)
                yielded += 1
                stats["in_flight"] = submitted - yielded
                stats["reorder_buffered"] = len(results)
                if isinstance(outcome, Failure):
                    stats["items_failed"] += 1
                    raise outcome.exc
                stats["items_yielded"] += 1
                size = _batch_nbytes(outcome)
                if size > biggest:
                    biggest = size
                    limit = self.in_flight_limit(biggest)
                    stats["in_flight_limit"] = limit
                yield outcome
        finally:
            results.clear()
            if self._live_results is not None and self._live_results[1] is results:
                self._live_results = None
            if self._active_gen == gen:
                self._active_gen = 0
                if submitted != yielded and not self._stopped and os.getpid() == self.owner_pid:
                    self._abandon(gen)  # (not in a forked child: the workers' items are the parent's)

    def _submit(self, gen: int, seq: int, item: WorkItem) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _pump(self, gen: int, results: Dict[int, Any]) -> None:
        """Non-blocking housekeeping on every ``imap`` step (the process pool feeds its workers here)."""

    def _wait(self, gen: int, results: Dict[int, Any]) -> bool:  # pragma: no cover - abstract
        """Block until an outcome of ``gen`` lands in ``results``; False if the pool was stopped."""
        raise NotImplementedError

    def _abandon(self, gen: int) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def __enter__(self) -> "Pool":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()
        self.join()
