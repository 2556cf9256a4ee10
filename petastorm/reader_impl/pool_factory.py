"""The pool factory: the executor a reader asks for by name (``reader_pool_type``)."""
from __future__ import annotations

from petastorm.errors import PetastormArgumentError
from petastorm.reader_impl.pool import POOL_TYPES, Pool, ensure_count
from petastorm.reader_impl.process import ProcessPool
from petastorm.reader_impl.thread_pool import DummyPool, ThreadPool

__all__ = ["make_pool"]


def make_pool(reader_pool_type: str, workers_count: int, results_queue_size: int) -> Pool:
    """Build the executor named by ``reader_pool_type``.

    A 'process' pool runs its first items in a thread of this process while the workers start
    (``startup_lane='auto'`` of :class:`~petastorm.reader_impl.process.ProcessPool`) when the reader's worker
    factory runs no user code and decodes no image, and starting a worker is slow.

    Parameters
    ----------
    reader_pool_type : {'thread', 'process', 'dummy'}
    workers_count : int
        Worker threads or processes (>= 1). Ignored by 'dummy', but still checked.
    results_queue_size : int
        Results that may wait, done but not yet consumed, on top of one item per worker (>= 0).

    Raises
    ------
    PetastormArgumentError
        On an unknown pool type or a count that is not a non-negative integer.
    """
    ensure_count("workers_count", workers_count, minimum=1)
    ensure_count("results_queue_size", results_queue_size, minimum=0)
    if reader_pool_type == "thread":
        return ThreadPool(workers_count, results_queue_size)
    if reader_pool_type == "process":
        return ProcessPool(workers_count, results_queue_size, startup_lane="auto")
    if reader_pool_type == "dummy":
        return DummyPool(workers_count, results_queue_size)
    raise PetastormArgumentError(
        f"reader_pool_type={reader_pool_type!r} is not a known pool type: use one of {', '.join(POOL_TYPES)}")
