"""The in-process executors of the pool stage: :class:`DummyPool` (the caller's thread) and :class:`ThreadPool`.

Both follow the contract of :class:`~petastorm.reader_impl.pool.Pool`. :func:`serve_tasks` is the loop of
a worker thread; the process pool's start-up lane runs it too.
"""
from __future__ import annotations

import atexit
import queue
import threading
import time
import traceback
import warnings
import weakref
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional

from petastorm.errors import PetastormReaderError, PetastormWorkerError
from petastorm.reader_impl.pool import (
    JOIN_TIMEOUT_S,
    Failure,
    Pool,
    WorkerFactory,
    annotate_worker_exception,
    close_worker,
)
from petastorm.reader_impl.work_item import ColumnBatch, WorkItem

__all__ = ["DummyPool", "ThreadPool", "serve_tasks", "STOP_TASK"]


class DummyPool(Pool):
    """Runs every item in the caller's thread, one at a time, when the next result is asked for."""

    pool_type = "dummy"
    usable_after_fork = True  # no thread, no process: a forked child reads on with its own copy

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


def _drop_results(results: "queue.SimpleQueue") -> None:
    """Empty a stopped pool's results queue: what no ``imap`` will take holds memory and open files."""
    while True:
        try:
            results.get_nowait()
        except queue.Empty:
            return


#: Seconds the interpreter's exit waits, in all, for the threads of thread pools nobody stopped.
EXIT_JOIN_TIMEOUT_S = 2.0

_LIVE_POOLS: "weakref.WeakSet[ThreadPool]" = weakref.WeakSet()


def _end_live_pools_at_exit() -> None:
    """At interpreter exit: stop every thread pool still running and wait (``EXIT_JOIN_TIMEOUT_S`` in all) for
    its threads. A reader left unstopped at exit (a script's last reader, a DataLoader worker's reader
    made in ``worker_init_fn``) had its threads told to stop by the pool's finalizer and not waited for:
    they closed their Parquet files (C++) while the interpreter finalized, and the process could abort with
    ``terminate called without an active exception`` (a spawn DataLoader worker: 'killed by signal:
    Aborted', about 1 exit in 4)."""
    deadline = time.monotonic() + EXIT_JOIN_TIMEOUT_S
    for pool in list(_LIVE_POOLS):
        pool._finalizer()
    for pool in list(_LIVE_POOLS):
        for t in pool._threads:
            if t is not threading.current_thread():
                t.join(max(0.0, deadline - time.monotonic()))


atexit.register(_end_live_pools_at_exit)


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
        _LIVE_POOLS.add(self)
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
                results[seq] = Failure(annotate_worker_exception(value, tb, set_cause=False))
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
        """Stop (if not yet), wait for the threads to end (up to ``JOIN_TIMEOUT_S`` in all, then warn) and drop
        the results no one will take."""
        self.stop()
        deadline = time.monotonic() + JOIN_TIMEOUT_S  # one bound for all: not JOIN_TIMEOUT_S per stuck thread
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(max(0.0, deadline - time.monotonic()))
        alive = [t.name for t in self._threads if t.is_alive()]
        _drop_results(self._results)  # results (and errors, with their frames) of abandoned items hold files
        if alive:  # a warning, not an error: join() often runs in __exit__ while another error unwinds
            warnings.warn(f"worker threads {alive} did not end within {JOIN_TIMEOUT_S} s of stop(): an item "
                          f"is stuck in user code; they are daemon threads and will not block exit",
                          RuntimeWarning, stacklevel=2)

    @property
    def diagnostics(self) -> dict:
        d = super().diagnostics
        d["threads_alive"] = sum(t.is_alive() for t in self._threads)
        d["task_queue_size"] = self._tasks.qsize()
        d["results_waiting"] = self._results.qsize()  # finished by a worker, not yet taken by imap (approximate)
        return d
