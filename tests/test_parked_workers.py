"""Workers of a stopped process pool are parked for the next pool of the process
(``reader_impl/parked_workers.py``): reused with the next pool's factory, released on time, never after
a failure."""
import os
import signal
import sys
import time

import cloudpickle
import numpy as np
import pytest

from petastorm import make_reader
from petastorm.errors import PetastormWorkerError
from petastorm.reader_impl import parked_workers
from petastorm.reader_impl.process_pool import ProcessPool
from petastorm.reader_impl.shm_transport import shm_supported
from petastorm.reader_impl.work_item import ColumnBatch, WorkItem

cloudpickle.register_pickle_by_value(sys.modules[__name__])

MB = 1024 * 1024


@pytest.fixture(autouse=True)
def no_parked_workers(monkeypatch):
    monkeypatch.setenv("PETASTORM_POOL_KEEPALIVE_S", "10")
    parked_workers.release_parked_workers()
    yield
    parked_workers.release_parked_workers()


def _items(n, epoch=0):
    return [WorkItem(epoch=epoch, position=i, row_group=i, row_start=0, row_stop=1) for i in range(n)]


def tagged_factory(tag, nbytes=MB):
    """Results: the worker's pid, ``tag`` and ``nbytes`` of float32 equal to ``tag + position``."""
    def factory():
        def work(item):
            return ColumnBatch({"big": np.full(nbytes // 4, tag + item.position, np.float32),
                                "pid": np.array([os.getpid()])}, 1, item)
        return work
    return factory


def failing_factory():
    raise RuntimeError("this factory never builds a worker")


def _run(factory, n=10, transport=None, keep=None):
    pool = ProcessPool(2, 2, transport=transport)
    pool.start(factory)
    try:
        out = []
        for batch in pool.imap(_items(n)):
            out.append((int(batch.columns["pid"][0]), float(batch.columns["big"][0]), float(batch.columns["big"][-1])))
            if keep is not None:
                keep.append(batch.columns["big"])
        diag = pool.diagnostics
    finally:
        pool.join()
    return out, diag


def test_the_next_pool_runs_in_the_parked_workers_with_its_own_factory():
    first, d1 = _run(tagged_factory(0))
    assert d1["workers_reused"] == 0 and parked_workers.parked_count() == 2
    second, d2 = _run(tagged_factory(1000))
    assert d2["workers_reused"] == 2 and sorted(d2["worker_pids"]) == sorted(d1["worker_pids"])
    assert [(b, c) for _pid, b, c in second] == [(1000.0 + i, 1000.0 + i) for i in range(10)]
    assert {pid for pid, _b, _c in second} <= set(d1["worker_pids"])
    assert [(b, c) for _pid, b, c in first] == [(float(i), float(i)) for i in range(10)]


@pytest.mark.skipif(not shm_supported(), reason="memfd segments need Linux")
def test_results_of_the_last_pool_held_while_its_workers_serve_the_next_one_stay_intact():
    held = []
    _run(tagged_factory(0, 2 * MB), n=8, transport="shm", keep=held)
    for k in range(3):
        _out, diag = _run(tagged_factory(100 * (k + 1), 2 * MB), n=16, transport="shm")
        assert diag["workers_reused"] == 2
    for i, a in enumerate(held):
        assert a[0] == i and a[-1] == i, f"result {i} of the first pool was overwritten by a later one"


def test_parked_workers_exit_after_the_keepalive_and_on_release(monkeypatch):
    monkeypatch.setenv("PETASTORM_POOL_KEEPALIVE_S", "1.5")
    _out, diag = _run(tagged_factory(0))
    pids = diag["worker_pids"]
    assert all(_alive(p) for p in pids) and parked_workers.parked_count() == 2
    time.sleep(0.6)  # within 1 s of their deadline: no longer handed out, a fresh pool starts its own
    _out, d2 = _run(tagged_factory(0))
    assert d2["workers_reused"] == 0 and not set(d2["worker_pids"]) & set(pids)
    deadline = time.monotonic() + 5
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(p) for p in pids), "a parked worker outlived its keepalive"
    parked_workers.release_parked_workers()
    assert parked_workers.parked_count() == 0 and not any(_alive(p) for p in d2["worker_pids"])


@pytest.mark.parametrize("setting", [None, "0"], ids=["default", "zero"])
def test_no_parking_by_default_or_with_a_keepalive_of_zero(monkeypatch, setting):
    if setting is None:
        monkeypatch.delenv("PETASTORM_POOL_KEEPALIVE_S")
    else:
        monkeypatch.setenv("PETASTORM_POOL_KEEPALIVE_S", setting)
    _out, diag = _run(tagged_factory(0))
    assert parked_workers.parked_count() == 0 and not any(_alive(p) for p in diag["worker_pids"])


def test_a_pool_whose_worker_died_parks_none_and_a_dead_parked_worker_is_skipped():
    pool = ProcessPool(2, 2)
    pool.start(tagged_factory(0))
    gen = pool.imap(_items(1000))
    next(gen)
    victim = pool.diagnostics["worker_pids"][0]
    os.kill(victim, signal.SIGKILL)
    with pytest.raises(PetastormWorkerError, match="died"):
        for _ in gen:
            pass
    pool.join()
    assert parked_workers.parked_count() == 0
    _out, diag = _run(tagged_factory(0))
    assert parked_workers.parked_count() == 2
    os.kill(diag["worker_pids"][1], signal.SIGKILL)
    time.sleep(0.2)
    out, d2 = _run(tagged_factory(7))
    assert [b for _pid, b, _c in out] == [7.0 + i for i in range(10)]
    assert d2["workers_reused"] == 1 and diag["worker_pids"][1] not in d2["worker_pids"]


def test_a_factory_that_fails_in_a_parked_worker_fails_as_in_a_fresh_one():
    _run(tagged_factory(0))
    assert parked_workers.parked_count() == 2
    pool = ProcessPool(2, 2)
    pool.start(failing_factory)
    with pytest.raises(Exception, match="never builds a worker"):
        list(pool.imap(_items(4)))
    pool.join()
    assert parked_workers.parked_count() == 0


@pytest.mark.skipif(not shm_supported(), reason="one transport only (memfd segments need Linux)")
def test_workers_parked_by_one_transport_are_not_taken_by_another():
    _run(tagged_factory(0), transport="shm")
    _out, diag = _run(tagged_factory(0), transport="pipe")
    assert diag["workers_reused"] == 0
    _out, diag = _run(tagged_factory(0), transport="shm")
    assert diag["workers_reused"] == 2


def test_no_parking_with_the_fork_start_method():
    pool = ProcessPool(2, 2, start_method="fork")
    pool.start(tagged_factory(0))
    list(pool.imap(_items(4)))
    pids = pool.diagnostics["worker_pids"]
    pool.join()
    assert parked_workers.parked_count() == 0 and not any(_alive(p) for p in pids)


def test_readers_made_per_epoch_reuse_the_workers_and_read_the_same_rows(synthetic_dataset):
    runs = []
    for _ in range(3):
        with make_reader(synthetic_dataset, reader_pool_type="process", workers_count=2, seed=1,
                         shuffle_rows=True) as reader:
            runs.append(([int(r.id) for r in reader], reader.diagnostics["pool_workers_reused"]))
    assert runs[0][0] == runs[1][0] == runs[2][0] and sorted(runs[0][0]) == list(range(100))
    assert [reused for _ids, reused in runs] == [0, 2, 2]


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped) is not alive
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[-1][0] != "Z"
    except OSError:
        return False


def gated_factory(gate_path, tag=0):
    """A factory that builds its worker only once ``gate_path`` exists (at most 20 s)."""
    def factory():
        deadline = time.monotonic() + 20
        while not os.path.exists(gate_path) and time.monotonic() < deadline:
            time.sleep(0.01)
        return tagged_factory(tag)()
    return factory


def test_a_pool_taking_parked_workers_does_not_wait_for_their_factories(tmp_path):
    _run(tagged_factory(0))
    gate = str(tmp_path / "gate")
    pool = ProcessPool(2, 2)
    pool.start(gated_factory(gate, tag=50))  # returns while both factories wait for the gate
    try:
        assert pool.diagnostics["workers_reused"] == 2
        open(gate, "w").close()
        assert [float(b.columns["big"][0]) for b in pool.imap(_items(6))] == [50.0 + i for i in range(6)]
    finally:
        pool.join()


def test_parking_from_a_finalizer_never_waits_for_the_registry_lock():
    import threading

    done = threading.Event()

    def park_while_locked():
        with parked_workers._lock:  # as when the garbage collector finalizes a pool inside take()
            parked_workers.park(_DummyProcess(), _DummyConn(), ("x", "y"), 5.0)
        done.set()

    t = threading.Thread(target=park_while_locked, daemon=True)
    t.start()
    t.join(5)
    assert done.is_set(), "park() blocked on the registry lock"
    assert parked_workers.parked_count() == 1
    parked_workers.release_parked_workers(0.1)
    assert parked_workers.parked_count() == 0


class _DummyProcess:
    def is_alive(self):
        return True

    def join(self, timeout=None):
        pass

    def terminate(self):
        pass


class _DummyConn:
    def send(self, msg):
        pass

    def close(self):
        pass


def _times_two(row):
    return {**row, "value": row["value"] * 2}


def test_a_reader_running_user_code_neither_parks_nor_takes_parked_workers(synthetic_dataset):
    from petastorm import TransformSpec

    with make_reader(synthetic_dataset, reader_pool_type="process", workers_count=2, num_epochs=1) as reader:
        assert len(list(reader)) == 100
    assert parked_workers.parked_count() == 2
    with make_reader(synthetic_dataset, reader_pool_type="process", workers_count=2, num_epochs=1,
                     transform_spec=TransformSpec(_times_two)) as reader:
        assert len(list(reader)) == 100
        assert reader.diagnostics["pool_workers_reused"] == 0
    assert parked_workers.parked_count() == 2  # the first reader's, still waiting; none of the second's
