"""The pool stage: run :class:`WorkItem` s on workers and hand back their results in submission order.

Three executors share one contract (:class:`Pool`):

- :class:`DummyPool` runs each item in the caller's thread when the caller asks for the next result
  (for debugging: exceptions propagate as they are, breakpoints work).
- :class:`ThreadPool` runs items on daemon worker threads fed by one shared task queue.
- :class:`~petastorm.reader_impl.process_pool.ProcessPool` runs items on worker processes; results come
  back through shared memory (see :mod:`petastorm.reader_impl.shm_transport`).

``imap(items)`` pulls items lazily, keeps at most ``workers_count + results_queue_size`` of them submitted
but not yet yielded (so memory is bounded by ``results_queue_size``, not by the dataset), and yields the
results in the order of ``items`` whichever worker finishes first (a reorder buffer keyed by submission
order). A worker exception is re-raised in the caller at that item's turn, with the worker's formatted
traceback in a ``worker_traceback`` attribute.
"""
from __future__ import annotations

import itertools
import os
import queue
import threading
import traceback
import warnings
import weakref
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional

from petastorm.errors import PetastormArgumentError, PetastormReaderError, PetastormWorkerError
from petastorm.reader_impl.work_item import ColumnBatch, WorkItem

__all__ = ["Pool", "DummyPool", "ThreadPool", "make_pool", "POOL_TYPES"]

WorkerFactory = Callable[[], Callable[[WorkItem], ColumnBatch]]

#: Accepted values of ``reader_pool_type``.
POOL_TYPES = ("thread", "process", "dummy")

#: Seconds ``join()`` waits for a worker to finish its current item before giving up on it.
JOIN_TIMEOUT_S = 5.0


def make_pool(reader_pool_type: str, workers_count: int, results_queue_size: int, *,
              startup_lane: Any = False) -> "Pool":
    """Build the executor named by ``reader_pool_type``.

    Parameters
    ----------
    reader_pool_type : {'thread', 'process', 'dummy'}
    workers_count : int
        Worker threads or processes (>= 1). Ignored by 'dummy', but still checked.
    results_queue_size : int
        Results that may wait, done but not yet consumed, on top of one item per worker (>= 0).
    startup_lane : {False, 'cold', True}
        'process' only: run the first items in a thread of this process while the workers start (see
        :class:`~petastorm.reader_impl.process_pool.ProcessPool`). Only for worker factories that run no
        user code.

    Raises
    ------
    PetastormArgumentError
        On an unknown pool type or a count that is not a non-negative integer.
    """
    _ensure_count("workers_count", workers_count, minimum=1)
    _ensure_count("results_queue_size", results_queue_size, minimum=0)
    if reader_pool_type == "thread":
        return ThreadPool(workers_count, results_queue_size)
    if reader_pool_type == "process":
        from petastorm.reader_impl.process_pool import ProcessPool
        return ProcessPool(workers_count, results_queue_size, startup_lane=startup_lane)
    if reader_pool_type == "dummy":
        return DummyPool(workers_count, results_queue_size)
    raise PetastormArgumentError(
        f"reader_pool_type={reader_pool_type!r} is not a known pool type: use one of {', '.join(POOL_TYPES)}")


def _ensure_count(name: str, value: Any, minimum: int) -> None:
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


def exception_payload(exc: BaseException) -> tuple:
    """``(type name, message, traceback text, cloudpickle bytes or None)`` of a worker's exception, to
    send to the parent (which rebuilds it with :func:`rebuild_exception`)."""
    import pickle

    import cloudpickle

    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        data = cloudpickle.dumps(exc)
        pickle.loads(data)
    except Exception:  # noqa: BLE001 - an exception that does not survive pickling: send its text
        data = None
    return (type(exc).__qualname__, str(exc), tb, data)


def rebuild_exception(payload: tuple) -> BaseException:
    """The worker's exception, same type when it unpickles, with its traceback attached."""
    import pickle

    type_name, message, tb, data = payload
    exc: Optional[BaseException] = None
    if data is not None:
        try:
            exc = pickle.loads(data)
        except Exception:  # noqa: BLE001 - its class is not importable here
            exc = None
    if not isinstance(exc, BaseException):
        exc = PetastormWorkerError(f"{type_name}: {message}\n\nworker traceback:\n{tb}")
        exc.worker_traceback = tb
        return exc
    return annotate_worker_exception(exc, tb, set_cause=True)


def close_worker(worker: Any) -> None:
    """Call ``worker.close()`` if the worker has one (open files...); errors there are not worth raising."""
    close = getattr(worker, "close", None)
    if callable(close):
        try:
            close()
        except Exception:  # noqa: BLE001 - shutting down
            pass


class _Failure:
    """A worker exception waiting in the reorder buffer for its turn."""

    __slots__ = ("exc",)

    def __init__(self, exc: BaseException):
        self.exc = exc


#: Default of ``$PETASTORM_RESULTS_BUDGET_MB``: megabytes of finished results a pool lets wait for the
#: consumer (on top of ``results_queue_size``, which bounds their number).
RESULTS_BUDGET_MB = 64


def results_budget_bytes() -> int:
    """``$PETASTORM_RESULTS_BUDGET_MB`` (default :data:`RESULTS_BUDGET_MB`) in bytes."""
    try:
        mb = float(os.environ.get("PETASTORM_RESULTS_BUDGET_MB", RESULTS_BUDGET_MB))
    except ValueError:
        mb = RESULTS_BUDGET_MB
    return max(0, int(mb * (1 << 20)))


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

    def __init__(self, workers_count: int, results_queue_size: int):
        _ensure_count("workers_count", workers_count, minimum=1)
        _ensure_count("results_queue_size", results_queue_size, minimum=0)
        self.workers_count = workers_count
        self.results_queue_size = results_queue_size
        self._started = False
        self._stopped = False
        self._gen_counter = itertools.count(1)
        self._active_gen = 0
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
        that finished results waiting for the consumer stay within :func:`results_budget_bytes`, but never
        below :meth:`_in_flight_floor` (every worker busy, one more item ready or queued)."""
        if batch_bytes <= 0:
            return self.max_in_flight
        floor = self._in_flight_floor()
        return max(floor, min(self.max_in_flight, results_budget_bytes() // batch_bytes))

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
        gen = next(self._gen_counter)
        if self._active_gen:
            self._abandon(self._active_gen)
        self._active_gen = gen
        return self._imap(gen, iter(items))

    def _imap(self, gen: int, items: Iterator[WorkItem]) -> Iterator[ColumnBatch]:
        stats = self._stats
        results: Dict[int, Any] = {}
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
                if isinstance(outcome, _Failure):
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
            if self._active_gen == gen:
                self._active_gen = 0
                if submitted != yielded and not self._stopped:
                    self._abandon(gen)

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


class DummyPool(Pool):
    """Runs every item in the caller's thread, one at a time, when the next result is asked for."""

    pool_type = "dummy"

    def __init__(self, workers_count: int = 1, results_queue_size: int = 0):
        super().__init__(workers_count, results_queue_size)
        self._worker: Optional[Callable[[WorkItem], ColumnBatch]] = None

    def start(self, worker_factory: WorkerFactory) -> None:
        """Build the single worker now, in the caller's thread (its exceptions propagate as they are)."""
        self._check_start(worker_factory)
        self._worker = worker_factory()

    def imap(self, items: Iterable[WorkItem]) -> Iterator[ColumnBatch]:
        if not self._started:
            raise PetastormReaderError("DummyPool.imap() called before start()")
        if self._stopped:
            raise PetastormReaderError("DummyPool.imap() called after stop()")
        gen = next(self._gen_counter)
        self._active_gen = gen
        return self._run(gen, iter(items))

    def _run(self, gen: int, items: Iterator[WorkItem]) -> Iterator[ColumnBatch]:
        stats = self._stats
        for item in items:
            if self._stopped:
                return
            if self._active_gen != gen:
                raise PetastormReaderError("this imap() was superseded by a later imap() call on the pool")
            stats["items_submitted"] += 1
            stats["in_flight"] = stats["max_in_flight"] = 1
            try:
                result = self._worker(item)
            except BaseException:
                stats["items_failed"] += 1
                stats["in_flight"] = 0
                raise
            stats["items_completed"] += 1
            stats["items_yielded"] += 1
            stats["in_flight"] = 0
            yield result

    def stop(self) -> None:
        self._stopped = True

    def join(self) -> None:
        self._stopped = True
        close_worker(self._worker)
        self._worker = None


#: Task-queue sentinel: the worker thread that takes it ends.
STOP_TASK = object()


def _thread_main(index: int, factory: WorkerFactory, tasks: "queue.SimpleQueue", results: "queue.SimpleQueue",
                 ready: List[bool]) -> None:
    """Body of a :class:`ThreadPool` worker thread. Holds no reference to the pool itself."""
    try:
        worker = factory()
    except BaseException as exc:  # noqa: BLE001 - reported to the caller
        results.put(("start_error", 0, 0, exc, traceback.format_exc()))
        return
    ready[index] = True
    try:
        serve_tasks(worker, tasks, results.put)
    finally:
        close_worker(worker)


def serve_tasks(worker: Callable[[WorkItem], ColumnBatch], tasks: "queue.SimpleQueue",
                post: Callable[[tuple], None]) -> None:
    """Run ``(gen, seq, item)`` tasks from ``tasks`` until :data:`STOP_TASK`; ``post`` each outcome as
    ``('ok', gen, seq, result, None)`` or ``('error', gen, seq, exception, traceback text)``. Used by the
    thread pool's threads and the process pool's start-up lane."""
    while True:
        task = tasks.get()
        if task is STOP_TASK:
            return
        gen, seq, item = task
        try:
            out = worker(item)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller at this item's turn
            post(("error", gen, seq, exc, traceback.format_exc()))
            del exc
        else:
            post(("ok", gen, seq, out, None))
            del out
        del task, item


def _stop_threads(tasks: "queue.SimpleQueue", results: "queue.SimpleQueue", count: int) -> None:
    while True:  # abandon queued work
        try:
            tasks.get_nowait()
        except queue.Empty:
            break
    for _ in range(count):
        tasks.put(STOP_TASK)
    results.put(("wake", 0, 0, None, None))


class ThreadPool(Pool):
    """Daemon worker threads fed by one shared queue; results reordered by submission order.

    Each thread calls ``worker_factory()`` once to build its own worker. Threads pick the next queued
    item as soon as they are free, so a slow item does not hold back the others (within the in-flight
    bound).
    """

    pool_type = "thread"

    def __init__(self, workers_count: int, results_queue_size: int = 50):
        super().__init__(workers_count, results_queue_size)
        self._tasks: "queue.SimpleQueue" = queue.SimpleQueue()
        self._results: "queue.SimpleQueue" = queue.SimpleQueue()
        self._threads: List[threading.Thread] = []
        self._ready: List[bool] = [False] * workers_count
        self._finalizer = weakref.finalize(self, _stop_threads, self._tasks, self._results, workers_count)

    def start(self, worker_factory: WorkerFactory) -> None:
        """Start ``workers_count`` daemon threads; each builds its worker with ``worker_factory()``.

        A factory that raises is reported by the first ``imap`` step, as the same exception.
        """
        self._check_start(worker_factory)
        for i in range(self.workers_count):
            t = threading.Thread(target=_thread_main, name=f"petastorm-worker-{i}", daemon=True,
                                 args=(i, worker_factory, self._tasks, self._results, self._ready))
            t.start()
            self._threads.append(t)

    def _submit(self, gen: int, seq: int, item: WorkItem) -> None:
        self._tasks.put((gen, seq, item))

    def _wait(self, gen: int, results: Dict[int, Any]) -> bool:
        while True:
            if self._stopped:
                return False
            try:
                kind, rgen, seq, value, tb = self._results.get(timeout=1.0)
            except queue.Empty:
                if not any(t.is_alive() for t in self._threads):
                    raise PetastormWorkerError("all worker threads of the pool have ended")
                continue
            if kind == "wake":
                continue
            if kind == "start_error":
                raise annotate_worker_exception(value, tb, set_cause=False)
            if rgen != gen:
                continue  # a result of an abandoned imap
            self._stats["items_completed"] += 1
            if kind == "ok":
                results[seq] = value
            else:
                results[seq] = _Failure(annotate_worker_exception(value, tb, set_cause=False))
            return True

    def _abandon(self, gen: int) -> None:
        while True:
            try:
                self._tasks.get_nowait()
            except queue.Empty:
                return

    def stop(self) -> None:
        """Abandon queued items, let each thread end after its current item, wake a blocked ``imap``."""
        if self._stopped:
            return
        self._stopped = True
        self._finalizer()

    def join(self) -> None:
        """Stop (if not yet) and wait for the threads to end (up to ``JOIN_TIMEOUT_S`` each, then warn)."""
        self.stop()
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(JOIN_TIMEOUT_S)
        alive = [t.name for t in self._threads if t.is_alive()]
        if alive:  # a warning, not an error: join() often runs in __exit__ while another error unwinds
            warnings.warn(f"worker threads {alive} did not end within {JOIN_TIMEOUT_S} s of stop(): an item "
                          f"is stuck in user code; they are daemon threads and will not block exit",
                          RuntimeWarning, stacklevel=2)

    @property
    def diagnostics(self) -> dict:
        d = super().diagnostics
        d["threads_alive"] = sum(t.is_alive() for t in self._threads)
        d["task_queue_size"] = self._tasks.qsize()
        return d
