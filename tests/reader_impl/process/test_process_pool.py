"""The process pool: dead workers, shared-memory results, start methods, no leaks."""
import gc
import os
import signal
import sys
import threading
import time

import cloudpickle
import numpy as np
import pytest

from petastorm.errors import PetastormArgumentError, PetastormWorkerError
from petastorm.reader_impl.process import ProcessPool, clear_segment_cache
from petastorm.reader_impl.work_item import ColumnBatch, WorkItem

cloudpickle.register_pickle_by_value(sys.modules[__name__])

MB = 1024 * 1024


def _items(n, epoch=0):
    return [WorkItem(epoch=epoch, position=i, row_group=i, row_start=0, row_stop=4) for i in range(n)]


def _mapped(pids, marker):
    """Lines of ``/proc/<pid>/maps`` of these processes that contain ``marker``.

    /dev/shm is shared with every other process on the machine, so leaks are judged by what this
    process tree maps, not by listing the directory. POSIX semaphores (``/dev/shm/sem.*``, which
    multiprocessing locks made by other tests of the same run map into this process) are not data segments
    and are left out.
    """
    out = set()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/maps") as f:
                out.update(line.split(None, 5)[-1].strip() for line in f
                           if marker in line and "/dev/shm/sem." not in line)
        except OSError:
            pass
    return out


def big_factory(nbytes):
    def factory():
        def work(item):
            n = nbytes // 4
            a = np.arange(n, dtype=np.float32)
            a += item.position  # a value the parent can check
            return ColumnBatch({"big": a, "id": np.full(3, item.position)}, 3, item, {"from": os.getpid()})
        return work
    return factory


def pid_factory(sleep_s=0.0, exit_at=None):
    def factory():
        def work(item):
            if exit_at is not None and item.position == exit_at:
                os._exit(3)
            time.sleep(sleep_s)
            return ColumnBatch({"pid": np.array([os.getpid()])}, 1, item)
        return work
    return factory


def object_factory():
    def factory():
        def work(item):
            ragged = np.empty(3, dtype=object)
            ragged[:] = [np.arange(item.position + 1), None, np.zeros((2, 2), np.uint8)]
            text = np.array(["a", "bb" * item.position, None], dtype=object)
            big_obj = np.empty(1, dtype=object)
            big_obj[0] = np.ones(200_000, np.float64) * item.position  # large array inside an object cell
            return ColumnBatch({"ragged": ragged, "text": text, "big_obj": big_obj,
                                "strided": np.arange(400_000, dtype=np.int32)[::2]}, 3, item)
        return work
    return factory


class _Unpicklable(Exception):
    def __init__(self, a, b):  # required args: unpickling this fails
        super().__init__(f"{a}/{b}")
        self.lock = threading.Lock()


def unpicklable_error_factory():
    def factory():
        def work(item):
            raise _Unpicklable("disk", "full")
        return work
    return factory


def _pool(workers=2, queue_size=4, factory=None, **kwargs):
    pool = ProcessPool(workers, queue_size, **kwargs)
    pool.start(factory or big_factory(64 * 1024))
    return pool


def test_a_sigkilled_worker_gives_a_petastorm_worker_error_within_seconds():
    pool = _pool(2, 2, factory=pid_factory(sleep_s=0.2))
    try:
        gen = pool.imap(_items(1000))
        victim = int(next(gen).columns["pid"][0])
        os.kill(victim, signal.SIGKILL)
        t0 = time.monotonic()
        with pytest.raises(PetastormWorkerError, match="SIGKILL"):
            for _ in gen:
                pass
        assert time.monotonic() - t0 < 5
        with pytest.raises(PetastormWorkerError, match="died"):  # the pool stays broken, it does not hang
            list(pool.imap(_items(3)))
    finally:
        pool.stop()
        pool.join()
    assert not any(p.is_alive() for p in [w.process for w in pool._state.workers])


def test_a_worker_that_calls_os_exit_gives_a_petastorm_worker_error():
    pool = _pool(2, 2, factory=pid_factory(exit_at=4))
    try:
        with pytest.raises(PetastormWorkerError, match="exit code 3"):
            list(pool.imap(_items(50)))
    finally:
        pool.join()


def test_fifty_megabyte_batches_cross_intact_through_shared_memory():
    nbytes = 50 * MB
    with _pool(2, 2, factory=big_factory(nbytes)) as pool:
        t0 = time.perf_counter()
        held = []
        for batch in pool.imap(_items(8)):
            a = batch.columns["big"]
            assert a.dtype == np.float32 and a.nbytes == nbytes
            assert a[0] == batch.item.position and a[-1] == nbytes // 4 - 1 + batch.item.position
            assert batch.extra["from"] != os.getpid()
            held.append(batch)
        elapsed = time.perf_counter() - t0
        d = pool.diagnostics
        assert d["transport"] == "shm" and d["bytes_shm"] >= 8 * nbytes
        assert d["bytes_inband"] < 8 * 64 * 1024, "large arrays must not travel inside the pickle"
        assert elapsed < 20, f"8 x 50 MB took {elapsed:.1f} s"
        a = held[3].columns["big"]
        a[:10] = -1  # results are ordinary writable arrays
        assert a[5] == -1 and held[4].columns["big"][5] == 9
        worker_pids = pool.diagnostics["worker_pids"]
        assert any("memfd:petastorm" in m for m in _mapped(worker_pids, "memfd:")), "anonymous memfd segments"
        shm_files = _mapped(worker_pids + [os.getpid()], "/dev/shm/")
    assert not shm_files and not _mapped([os.getpid()], "/dev/shm/"), "nothing is named in /dev/shm"
    for name in shm_files:
        assert not os.path.exists(name)


def test_arrays_held_by_the_consumer_are_never_overwritten_by_later_results():
    with _pool(2, 1, factory=big_factory(2 * MB)) as pool:
        held = {}
        for batch in pool.imap(_items(60)):
            if batch.item.position % 7 == 0:
                held[batch.item.position] = batch.columns["big"]  # keep some, drop others (segments reused)
        for pos, a in held.items():
            assert a[0] == pos and a[1000] == 1000 + pos
        assert pool.diagnostics["segments_received"] < 40, "released segments should be reused"


def test_results_held_by_the_consumer_cost_no_file_descriptors():
    def open_fds():
        return len(os.listdir(f"/proc/{os.getpid()}/fd"))

    clear_segment_cache()  # segments cached by earlier tests would serve some of the 300 results
    with _pool(2, 2, factory=big_factory(256 * 1024)) as pool:
        list(pool.imap(_items(4)))
        before = open_fds()
        held = [b.columns["big"] for b in pool.imap(_items(300))]  # 300 live results, each on its own segment
        assert pool.diagnostics["segments_received"] >= 290
        assert open_fds() <= before + 2
        assert all(a[0] == i for i, a in enumerate(held))


def test_object_and_strided_columns_cross_the_process_pool():
    with _pool(2, 2, factory=object_factory()) as pool:
        for batch in pool.imap(_items(6)):
            p = batch.item.position
            ragged = batch.columns["ragged"]
            assert ragged.dtype == object and ragged[1] is None
            np.testing.assert_array_equal(ragged[0], np.arange(p + 1))
            assert ragged[2].shape == (2, 2)
            assert list(batch.columns["text"]) == ["a", "bb" * p, None]
            assert batch.columns["big_obj"][0][12345] == p
            np.testing.assert_array_equal(batch.columns["strided"], np.arange(0, 400_000, 2, dtype=np.int32))


def test_the_pipe_transport_gives_the_same_results():
    with _pool(2, 2, factory=big_factory(MB), transport="pipe") as pool:
        out = [(b.item.position, float(b.columns["big"][7])) for b in pool.imap(_items(10))]
        assert out == [(i, 7.0 + i) for i in range(10)]
        assert pool.diagnostics["bytes_shm"] == 0


def test_an_exception_that_cannot_be_pickled_becomes_a_petastorm_worker_error_with_its_text():
    with _pool(1, 1, factory=unpicklable_error_factory()) as pool:
        with pytest.raises(PetastormWorkerError, match=r"_Unpicklable: disk/full") as info:
            list(pool.imap(_items(2)))
        assert ", in work\n" in info.value.worker_traceback  # the worker function's frame


def test_a_same_type_exception_carries_the_worker_traceback_as_its_cause():
    def factory():
        def decode_column(item):
            raise KeyError("field 'image' missing in row group 0")
        return decode_column

    with _pool(1, 1, factory=factory) as pool:
        with pytest.raises(KeyError) as info:
            list(pool.imap(_items(1)))
        assert "decode_column" in str(info.value.__cause__)
        assert "decode_column" in info.value.worker_traceback


def test_a_factory_that_cannot_be_pickled_is_refused_naming_it():
    lock = threading.Lock()

    def factory():
        with lock:
            return lambda item: item

    pool = ProcessPool(1, 1)
    with pytest.raises(PetastormArgumentError, match="cannot be sent to worker processes"):
        pool.start(factory)
    pool.join()


@pytest.mark.parametrize("method", ["spawn", "fork"])
def test_other_start_methods_work(method):
    with _pool(2, 2, factory=big_factory(MB), start_method=method) as pool:
        assert [b.item.position for b in pool.imap(_items(6))] == list(range(6))
        assert pool.diagnostics["start_method"] == method


def test_start_method_can_be_chosen_by_environment(monkeypatch):
    monkeypatch.setenv("PETASTORM_MP_START", "spawn")
    assert ProcessPool(1, 1).start_method == "spawn"
    monkeypatch.setenv("PETASTORM_MP_START", "teleport")
    with pytest.raises(PetastormArgumentError, match="PETASTORM_MP_START='teleport'"):
        ProcessPool(1, 1)


def test_a_warm_pool_starts_and_returns_its_first_result_quickly():
    _pool(1, 1).join()  # the fork server, started once per interpreter, is warm now
    t0 = time.perf_counter()
    pool = _pool(2, 2, factory=big_factory(MB))
    try:
        gen = pool.imap(_items(6))
        next(gen)
        assert time.perf_counter() - t0 < 2.0  # typically ~0.05 s; generous for a loaded 2-core machine
        list(gen)  # both workers have answered now
        assert 0 < pool.diagnostics["startup_s"] < 2.0
    finally:
        pool.join()


def test_workers_exit_when_the_pool_is_garbage_collected_mid_imap(monkeypatch):
    pool = _pool(2, 2, factory=big_factory(MB))
    gen = pool.imap(_items(100))
    first = next(gen)
    processes = [w.process for w in pool._state.workers]
    del gen, pool
    gc.collect()
    deadline = time.monotonic() + 5
    while any(p.is_alive() for p in processes) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(p.is_alive() for p in processes)
    assert first.columns["big"][3] == 3.0  # a result already handed out stays valid


def test_diagnostics_report_processes_and_bytes():
    from petastorm.reader_impl.process import clear_segment_cache

    clear_segment_cache()  # else earlier tests' segments serve this pool, and it receives none
    with _pool(2, 2, factory=big_factory(MB)) as pool:
        list(pool.imap(_items(4)))
        d = pool.diagnostics
        assert d["workers_alive"] == 2 and d["items_yielded"] == 4
        assert d["bytes_shm"] >= 4 * MB and d["segments_received"] >= 1
    assert pool.diagnostics["workers_alive"] == 0


_ORPHAN_SCRIPT = r"""
import os, sys, time
import numpy as np
from petastorm.reader_impl.process import ProcessPool
from petastorm.reader_impl.work_item import ColumnBatch, WorkItem

def factory():
    return lambda item: ColumnBatch({"x": np.zeros(100_000)}, 1, item)

pool = ProcessPool(2, 2)
pool.start(factory)
gen = pool.imap(WorkItem(0, i, i, 0, 1) for i in range(10 ** 6))
next(gen)
print(" ".join(str(p) for p in pool.diagnostics["worker_pids"]), flush=True)
time.sleep(60)
"""


def _running(psutil, pid):
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_workers_exit_when_the_parent_process_is_killed():
    import subprocess

    import psutil

    proc = subprocess.Popen([sys.executable, "-c", _ORPHAN_SCRIPT], stdout=subprocess.PIPE, text=True)
    try:
        worker_pids = [int(p) for p in proc.stdout.readline().split()]
        assert len(worker_pids) == 2
        proc.kill()
        proc.wait(10)
        deadline = time.monotonic() + 10
        alive = worker_pids
        while alive and time.monotonic() < deadline:
            alive = [p for p in worker_pids if _running(psutil, p)]
            time.sleep(0.1)
        assert not alive, f"worker processes {alive} outlived their killed parent"
    finally:
        if proc.poll() is None:
            proc.kill()


_MAIN_CLASS_SCRIPT = r"""
import numpy as np
from petastorm.reader_impl.process import ProcessPool
from petastorm.reader_impl.work_item import ColumnBatch, WorkItem

class Label:  # defined in the script's __main__, which worker processes never import
    def __init__(self, text):
        self.text = text

def factory():
    return lambda item: ColumnBatch({"x": np.arange(100_000)}, 1, item, {"label": Label(f"rg{item.row_group}")})

pool = ProcessPool(2, 2)  # no `if __name__ == '__main__':` guard on purpose
pool.start(factory)
print([b.extra["label"].text for b in pool.imap(WorkItem(0, i, i, 0, 1) for i in range(3))])
pool.join()
"""


def test_a_script_without_main_guard_and_with_its_own_classes_works(tmp_path):
    import subprocess

    script = tmp_path / "train.py"  # a file: 'spawn'/'forkserver' would re-run it in each worker
    script.write_text(_MAIN_CLASS_SCRIPT)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['rg0', 'rg1', 'rg2']"


def test_the_pipe_transport_can_be_forced_by_environment(monkeypatch):
    monkeypatch.setenv("PETASTORM_POOL_TRANSPORT", "pipe")
    with _pool(1, 1, factory=big_factory(MB)) as pool:
        assert [float(b.columns["big"][1]) for b in pool.imap(_items(3))] == [1.0, 2.0, 3.0]
        assert pool.diagnostics["transport"] == "pipe" and pool.diagnostics["bytes_shm"] == 0


_BLAS_ENV_SCRIPT = r"""
import ctypes
import os
import numpy as np
from petastorm.reader_impl.process import ProcessPool
from petastorm.reader_impl.work_item import ColumnBatch, WorkItem

def openblas_threads():
    libs = sorted({line.split()[-1] for line in open("/proc/self/maps") if "openblas" in line})
    for lib in libs:
        for name in ("scipy_openblas_get_num_threads64_", "openblas_get_num_threads64_", "openblas_get_num_threads"):
            fn = getattr(ctypes.CDLL(lib), name, None)
            if fn is not None:
                return fn()
    return None

def factory():
    def work(item):
        return ColumnBatch({"x": np.zeros(1)}, 1, item,
                           {"threads": openblas_threads(), "env": os.environ.get("OPENBLAS_NUM_THREADS")})
    return work

pool = ProcessPool(2, 2, start_method="forkserver")
pool.start(factory)
out = [b.extra for b in pool.imap(WorkItem(0, i, i, 0, 1) for i in range(2))]
pool.join()
print(repr((out, openblas_threads(), os.environ.get("OPENBLAS_NUM_THREADS"))))
"""


@pytest.mark.parametrize("user_env", [None, ("OMP_NUM_THREADS", "2"), ("OPENBLAS_NUM_THREADS", "2")])
def test_workers_run_openblas_on_one_thread_unless_the_user_chose(tmp_path, user_env):
    import ast
    import subprocess

    script = tmp_path / "blas_env.py"
    script.write_text(_BLAS_ENV_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS",
                                                             "OMP_NUM_THREADS")}
    if user_env is not None:
        env[user_env[0]] = user_env[1]
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    workers, parent_threads, parent_env = ast.literal_eval(out.stdout.strip())
    cores = len(os.sched_getaffinity(0))
    expected = 1 if user_env is None else min(2, cores)
    assert parent_threads is not None, "numpy's OpenBLAS not found: the pinned numpy wheels bundle it"
    assert [w["threads"] for w in workers] == [expected, expected]
    # the variable is not left in the workers' environment (programs they start are not affected), and
    # the reader's own process keeps its OpenBLAS and environment
    assert [w["env"] for w in workers] == [None if user_env is None or user_env[0] != "OPENBLAS_NUM_THREADS"
                                           else "2"] * 2
    assert parent_threads == min(2, cores) if user_env else (parent_threads > 1 or cores == 1)
    assert parent_env == (user_env[1] if user_env and user_env[0] == "OPENBLAS_NUM_THREADS" else None)
