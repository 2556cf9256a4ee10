"""The pool stage, every executor: order, bounds, errors, stop, lifecycle (petastorm.reader_impl.pool)."""
import gc
import os
import random
import sys
import threading
import time

import cloudpickle
import numpy as np
import psutil
import pytest

from petastorm.errors import PetastormArgumentError, PetastormReaderError, PetastormWorkerError
from petastorm.reader_impl.pool_factory import make_pool
from petastorm.reader_impl.process import ProcessPool
from petastorm.reader_impl.process.fork_server import helper_process_pids
from petastorm.reader_impl.thread_pool import DummyPool, ThreadPool
from petastorm.reader_impl.work_item import ColumnBatch, WorkItem

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # worker processes need not import this file

POOL_TYPES = ["dummy", "thread", "process"]


def _items(n, epoch=0):
    return [WorkItem(epoch=epoch, position=i, row_group=i, row_start=0, row_stop=4) for i in range(n)]


def _batch(item, value=None):
    v = item.position if value is None else value
    return ColumnBatch({"x": np.full(4, v, np.int64)}, 4, item)


def sleepy_factory(max_sleep_s=0.01, seed=0):
    def factory():
        rng = random.Random(seed + os.getpid() + threading.get_ident())

        def work(item):
            time.sleep(rng.random() * max_sleep_s)
            return _batch(item)
        return work
    return factory


def failing_factory(fail_at):
    def factory():
        def load_row_group(item):
            if item.position == fail_at:
                raise ValueError(f"corrupt row group {item.row_group} in file part-0.parquet")
            return _batch(item)
        return load_row_group
    return factory


def slow_factory(sleep_s):
    def factory():
        def work(item):
            time.sleep(sleep_s)
            return _batch(item)
        return work
    return factory


def broken_factory():
    raise RuntimeError("cannot open the dataset at file:///nowhere")


def _started(kind, workers, queue_size=4, factory=None):
    pool = make_pool(kind, workers, queue_size)
    pool.start(factory or sleepy_factory())
    return pool


def _child_pids():
    """Descendant processes, minus multiprocessing's long-lived helpers (resource tracker, fork server)."""
    me = psutil.Process()
    helpers = set(helper_process_pids())
    out = set()
    for c in me.children(recursive=True):
        try:
            if c.pid not in helpers and c.status() != psutil.STATUS_ZOMBIE:
                out.add(c.pid)
        except psutil.NoSuchProcess:
            pass
    return out


def _wait_until(cond, timeout_s=5.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


@pytest.mark.parametrize("kind", POOL_TYPES)
@pytest.mark.parametrize("workers", [1, 2, 3, 4])
def test_results_come_in_submission_order_whatever_worker_finishes_first(kind, workers):
    with _started(kind, workers, factory=sleepy_factory(0.01, seed=workers)) as pool:
        got = [b.item.position for b in pool.imap(_items(40))]
        assert got == list(range(40))
        # and a second pass on the same pool
        got = [int(b.columns["x"][0]) for b in pool.imap(_items(10, epoch=1))]
        assert got == list(range(10))


@pytest.mark.parametrize("kind", POOL_TYPES)
def test_items_are_pulled_lazily_and_in_flight_stays_within_workers_plus_queue_size(kind):
    workers, queue_size = 2, 3
    pulled = []

    def items():
        for it in _items(60):
            pulled.append(it.position)
            yield it

    with _started(kind, workers, queue_size, factory=sleepy_factory(0.002)) as pool:
        worst = 0
        for consumed, batch in enumerate(pool.imap(items()), start=1):
            time.sleep(0.003)  # a slow consumer lets the workers run ahead as far as allowed
            worst = max(worst, len(pulled) - consumed)
        assert consumed == 60
        limit = 1 if kind == "dummy" else workers + queue_size
        assert worst <= limit
        assert pool.diagnostics["max_in_flight"] <= limit
        if kind != "dummy":
            assert worst >= limit - 1, "the pool should read ahead up to its bound"


@pytest.mark.parametrize("kind", POOL_TYPES)
def test_worker_exception_is_raised_at_its_item_turn_with_the_worker_traceback(kind):
    with _started(kind, 2, factory=failing_factory(fail_at=5)) as pool:
        got = []
        with pytest.raises(ValueError, match="corrupt row group 5 in file part-0.parquet") as info:
            for b in pool.imap(_items(20)):
                got.append(b.item.position)
        assert got == [0, 1, 2, 3, 4]
        if kind == "dummy":
            tb_text = "".join(__import__("traceback").format_tb(info.value.__traceback__))
        else:
            tb_text = info.value.worker_traceback
        assert "load_row_group" in tb_text


@pytest.mark.parametrize("kind", ["thread", "process"])
def test_a_factory_that_raises_reaches_the_caller(kind):
    pool = make_pool(kind, 2, 2)
    pool.start(broken_factory)
    try:
        with pytest.raises(RuntimeError, match="cannot open the dataset at file:///nowhere"):
            list(pool.imap(_items(3)))
    finally:
        pool.stop()
        pool.join()


def test_dummy_pool_factory_error_raises_in_start():
    pool = make_pool("dummy", 1, 0)
    with pytest.raises(RuntimeError, match="cannot open the dataset"):
        pool.start(broken_factory)


@pytest.mark.parametrize("kind", ["thread", "process"])
def test_stop_from_another_thread_ends_a_blocked_imap_soon(kind):
    pool = _started(kind, 2, 2, factory=slow_factory(1.5))
    gen = pool.imap(_items(10))
    threading.Timer(0.3, pool.stop).start()
    t0 = time.monotonic()
    rest = list(gen)  # blocked waiting on a 1.5 s item
    waited = time.monotonic() - t0
    assert rest == [] and waited < 1.2
    pool.join()
    with pytest.raises(PetastormReaderError, match="after stop"):
        pool.imap(_items(1))


@pytest.mark.parametrize("kind", ["thread", "process"])
def test_no_thread_or_process_outlives_stop_and_join(kind, monkeypatch):
    threads_before = len(threading.enumerate())
    children_before = _child_pids()
    pool = _started(kind, 3)
    assert [b.item.position for b in pool.imap(_items(8))] == list(range(8))
    pool.stop()
    pool.join()
    assert len(threading.enumerate()) == threads_before
    assert _child_pids() <= children_before


@pytest.mark.parametrize("kind", ["thread", "process"])
def test_an_abandoned_pool_and_generator_are_cleaned_up_by_garbage_collection(kind, monkeypatch):
    threads_before = len(threading.enumerate())
    children_before = _child_pids()
    pool = _started(kind, 2, 4)
    gen = pool.imap(_items(100))
    assert next(gen).item.position == 0
    del gen, pool
    gc.collect()
    assert _wait_until(lambda: len(threading.enumerate()) == threads_before)
    assert _wait_until(lambda: _child_pids() <= children_before)


@pytest.mark.parametrize("kind", POOL_TYPES)
def test_a_new_imap_supersedes_an_unfinished_one(kind):
    with _started(kind, 2, 2) as pool:
        first = pool.imap(_items(50))
        assert next(first).item.position == 0
        second = pool.imap(_items(5, epoch=1))
        assert [b.item.epoch for b in second] == [1] * 5
        with pytest.raises(PetastormReaderError, match="superseded"):
            next(first)


@pytest.mark.parametrize("kind", POOL_TYPES)
def test_closing_the_generator_early_leaves_the_pool_usable(kind):
    with _started(kind, 2, 3) as pool:
        gen = pool.imap(_items(30))
        assert [next(gen).item.position for _ in range(3)] == [0, 1, 2]
        gen.close()
        assert [b.item.position for b in pool.imap(_items(6, epoch=2))] == list(range(6))


@pytest.mark.parametrize("kind", POOL_TYPES)
def test_diagnostics_count_items(kind):
    with _started(kind, 2, 2) as pool:
        list(pool.imap(_items(12)))
        d = pool.diagnostics
        assert d["pool_type"] == kind
        assert d["items_submitted"] == d["items_yielded"] == 12
        assert d["in_flight"] == 0 and d["workers_count"] == 2


@pytest.mark.parametrize("kind", POOL_TYPES)
def test_an_empty_item_list_yields_nothing(kind):
    with _started(kind, 2, 2) as pool:
        assert list(pool.imap(iter([]))) == []


@pytest.mark.parametrize("args, match", [
    (("fiber", 2, 4), "reader_pool_type='fiber'"),
    (("thread", 0, 4), "workers_count must be an integer >= 1, got 0"),
    (("thread", -3, 4), "workers_count"),
    (("process", "2", 4), "workers_count"),
    (("thread", True, 4), "workers_count"),
    (("thread", 2, -1), "results_queue_size must be an integer >= 0, got -1"),
])
def test_make_pool_refuses_bad_arguments_naming_them(args, match):
    with pytest.raises(PetastormArgumentError, match=match):
        make_pool(*args)


def test_make_pool_builds_each_kind_and_start_checks_the_factory():
    assert isinstance(make_pool("dummy", 3, 0), DummyPool)
    assert isinstance(make_pool("thread", 3, 0), ThreadPool)
    assert isinstance(make_pool("process", 3, 0), ProcessPool)
    pool = make_pool("thread", 1, 0)
    with pytest.raises(PetastormArgumentError, match="worker_factory must be a callable"):
        pool.start("not callable")
    pool.join()


def test_imap_before_start_is_refused():
    with pytest.raises(PetastormReaderError, match="before start"):
        make_pool("thread", 1, 1).imap(_items(1))


def test_thread_pool_builds_one_worker_per_thread():
    built = []

    def factory():
        built.append(threading.get_ident())
        return lambda item: _batch(item)

    with _started("thread", 3, factory=factory) as pool:
        list(pool.imap(_items(6)))
        assert len(set(built)) == 3


def test_compat_module_names_point_to_the_new_pools():
    from petastorm.workers_pool import EmptyResultError, TimeoutWaitingForResultError  # noqa: F401
    from petastorm.workers_pool.dummy_pool import DummyPool as D
    from petastorm.workers_pool.process_pool import ProcessPool as P
    from petastorm.workers_pool.thread_pool import ThreadPool as T
    assert (D, P, T) == (DummyPool, ProcessPool, ThreadPool)
    assert issubclass(PetastormWorkerError, RuntimeError)


class _ClosingWorker:
    def __init__(self, directory):
        self.directory = directory

    def __call__(self, item):
        return _batch(item)

    def close(self):
        with open(os.path.join(self.directory, f"closed-{os.getpid()}-{threading.get_ident()}"), "w"):
            pass


@pytest.mark.parametrize("kind", POOL_TYPES)
def test_each_worker_is_closed_when_the_pool_ends(kind, tmp_path):
    directory = str(tmp_path)
    pool = _started(kind, 2, 2, factory=lambda: _ClosingWorker(directory))
    assert len(list(pool.imap(_items(6)))) == 6
    pool.stop()
    pool.join()
    assert len(os.listdir(directory)) == (1 if kind == "dummy" else 2)


def sized_factory(nbytes):
    def factory():
        def work(item):
            return ColumnBatch({"x": np.zeros(nbytes, np.uint8)}, 1, item)
        return work
    return factory


@pytest.mark.parametrize("kind", ["thread", "process"])
def test_big_results_lower_the_in_flight_bound_to_the_results_budget(kind, monkeypatch):
    # 8 MB results, a 16 MB budget: never more than the floor (workers + 1 in threads, 2 * workers + 1 in
    # processes) in flight, although
    # results_queue_size allows 22; small results keep the full bound
    monkeypatch.setenv("PETASTORM_RESULTS_BUDGET_MB", "16")
    pool = make_pool(kind, 2, 20)
    pool.start(sized_factory(8 << 20))
    try:
        for batch in pool.imap(_items(40)):
            time.sleep(0.002)  # a slower consumer: results would pile up to the bound
        d = pool.diagnostics
    finally:
        pool.join()
    floor = 3 if kind == "thread" else 5
    assert d["items_yielded"] == 40 and d["max_in_flight"] <= floor and d["in_flight_limit"] == floor
    pool = make_pool(kind, 2, 20)
    pool.start(sized_factory(1000))
    try:
        assert len(list(pool.imap(_items(60)))) == 60
        assert pool.diagnostics["in_flight_limit"] == 22
    finally:
        pool.join()
