"""Readers hosted the ways training code hosts them, each pool type, checked and found correct (these tests keep
them so): executor tasks that each open and close a reader, a reader shared by two threads or made in one thread
and read in another, readers dropped without ``stop()``, the interpreter exiting under live loaders, SIGTERM to
the training process.

Each case runs in a child interpreter of its own session with a timeout (``process/_child_script.py``):
a hang fails the test, and every process it left behind is found by its session id.
"""
import os
import signal
import subprocess
import sys
import time

import pytest
from _fixtures.datasets import write_synthetic_dataset

from .process._child_script import PRELUDE, run_script, session_processes

POOLS = ["thread", "process", "dummy"]


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    """400 rows: 20 row groups of 20 rows, 4 per file (5 files)."""
    return write_synthetic_dataset(str(tmp_path_factory.mktemp("lifecycle") / "dataset"), rows=400,
                                   rows_per_group=20, groups_per_file=4)


_EXECUTOR_TASKS = r'''
import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor
from petastorm import make_reader, make_batch_reader
POOL, HOST, TASKS = {pool!r}, {host!r}, {tasks!r}

def task(i):
    maker = make_reader if i % 2 else make_batch_reader
    with maker(URL, schema_fields=["id"], reader_pool_type=POOL, workers_count=2) as r:
        for j, _ in enumerate(r):
            if j >= 3:
                break
    gc.collect()
    return os.getpid(), len(fds()), threading.active_count(), len(descendants())

if __name__ == "__main__":
    shm = set(os.listdir("/dev/shm"))
    if HOST == "executor":
        with ProcessPoolExecutor(2) as ex:
            res = list(ex.map(task, range(TASKS)))
    else:
        with mp.get_context(HOST).Pool(2) as p:
            res = p.map(task, range(TASKS), chunksize=1)
        del p  # (its own queues' named semaphores go with it)
    gc.collect()
    by_pid = {{}}
    for pid, *counts in res:
        by_pid.setdefault(pid, []).append(counts)
    grown = {{pid: (v[1], v[-1]) for pid, v in by_pid.items() if len(v) > 2 and v[-1] != v[1]}}
    done(grown=grown, tasks=len(res), shm_new=sorted(set(os.listdir("/dev/shm")) - shm))
'''


@pytest.mark.slow
@pytest.mark.parametrize("host, pool", [("executor", "process"), ("executor", "thread"), ("executor", "dummy"),
                                        ("fork", "process"), ("spawn", "process")])
def test_executor_tasks_open_and_close_readers_without_growth(url, host, pool):
    """100 ``ProcessPoolExecutor`` / ``multiprocessing.Pool`` tasks (its workers are daemonic: the process
    pool could not start there before) each open, read and close a reader: each worker process's
    descriptors, threads and child processes stay as they were after its first task (its own fork server
    and resource tracker, with the process pool), and nothing is left in ``/dev/shm``."""
    out = run_script(_EXECUTOR_TASKS.format(pool=pool, host=host, tasks=100), url, timeout=240)
    assert out["tasks"] == 100
    assert out["grown"] == {}
    assert out["shm_new"] == []
    assert out["left"] == []


_TWO_THREADS = r'''
from collections import Counter
from petastorm import make_reader, make_batch_reader
POOL, MAKER = {pool!r}, {maker!r}
maker = make_reader if MAKER == "make_reader" else make_batch_reader
r = maker(URL, schema_fields=["id"], reader_pool_type=POOL, workers_count=2, num_epochs=3)
got, errors = [[], []], []

def consume(k):
    try:
        for x in r:
            got[k].extend([int(x.id)] if MAKER == "make_reader" else [int(i) for i in x.id])
    except BaseException as e:
        errors.append(f"{{type(e).__name__}}: {{e}}")

threads = [threading.Thread(target=consume, args=(k,)) for k in (0, 1)]
for t in threads:
    t.start()
for t in threads:
    t.join(30)
counts = Counter(got[0] + got[1])
r.stop(); r.join()
done(alive=[t.is_alive() for t in threads], errors=errors, each_three_times=sorted(set(counts.values())),
     distinct=len(counts))
'''


@pytest.mark.parametrize("maker", ["make_reader", "make_batch_reader"])
@pytest.mark.parametrize("pool", POOLS)
def test_reader_read_by_two_threads_at_once(url, pool, maker):
    """Two threads iterate one reader (3 epochs): together they get every row exactly 3 times, no error."""
    out = run_script(_TWO_THREADS.format(pool=pool, maker=maker), url, timeout=60)
    assert out["alive"] == [False, False] and out["errors"] == []
    assert out["distinct"] == 400 and out["each_three_times"] == [3]
    assert out["left"] == []


_DROPPED = r'''
from petastorm import make_reader, make_batch_reader
POOL = {pool!r}

def counts():
    gc.collect()
    deadline = time.time() + 5
    while True:
        now = (len(fds()), threading.active_count(), len([p for p in descendants() if p not in helpers()]))
        if now == first or time.time() > deadline:
            return now
        time.sleep(0.1)

first = None
for i in range(50):
    maker = make_reader if i % 2 else make_batch_reader
    r = maker(URL, reader_pool_type=POOL, workers_count=2)
    it = iter(r)
    for _ in range(3):
        next(it)
    t = threading.Thread(target=lambda: next(it))  # made in this thread, read in another
    t.start()
    t.join(30)
    del r, it, t
    if i == 4:
        first = None
        first = counts()
done(first=first, last=counts())
'''


@pytest.mark.slow
@pytest.mark.parametrize("pool", POOLS)
def test_readers_dropped_without_stop_in_a_loop(url, pool):
    """50 readers read a little (in two threads) and dropped without ``stop()``: descriptors, threads and
    child processes after the 50th as after the 5th."""
    out = run_script(_DROPPED.format(pool=pool), url, timeout=180)
    assert out["last"] == out["first"]
    assert out["left"] == []


_EXIT_UNDER_LOADER = r'''
from petastorm import make_reader, make_batch_reader
POOL, LOADER = {pool!r}, {loader!r}
if LOADER == "torch_rows":
    from petastorm.pytorch import DataLoader
    it = iter(DataLoader(make_reader(URL, schema_fields=["id", "value", "matrix"], reader_pool_type=POOL,
                                     workers_count=2, num_epochs=None), batch_size=8))
elif LOADER == "torch_batched":
    from petastorm.pytorch import BatchedDataLoader
    it = iter(BatchedDataLoader(make_batch_reader(URL, schema_fields=["id", "value"], reader_pool_type=POOL,
                                                  workers_count=2, num_epochs=None), batch_size=8,
                                shuffling_queue_capacity=100))
elif LOADER == "jax":
    from petastorm.jax import make_jax_iterator
    it = iter(make_jax_iterator(make_batch_reader(URL, schema_fields=["id", "value"], reader_pool_type=POOL,
                                                  workers_count=2, num_epochs=None), batch_size=8))
elif LOADER == "tf":
    from petastorm.tf_utils import make_petastorm_dataset
    it = iter(make_petastorm_dataset(make_reader(URL, schema_fields=["id", "value", "matrix"],
                                                 reader_pool_type=POOL, workers_count=2, num_epochs=None)))
else:
    it = iter(make_reader(URL, schema_fields=["id"], reader_pool_type=POOL, workers_count=2, num_epochs=None))
for _ in range(5):
    next(it)
print("EXITING", time.time(), flush=True)
'''


def _exit_seconds(code: str, url: str, timeout: float) -> tuple:
    """Run ``code``; seconds from its ``EXITING`` line to the interpreter's exit, its stderr, what it left."""
    env = dict(os.environ, DATASET_URL=url, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))))
    proc = subprocess.Popen([sys.executable, "-c", PRELUDE + code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd="/tmp", env=env, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise AssertionError(f"hang: over {timeout} s") from None
    end = time.time()
    lines = [line for line in stdout.splitlines() if line.startswith("EXITING ")]
    assert proc.returncode == 0 and lines, stderr[-3000:]
    time.sleep(1.0)
    left = session_processes(proc.pid)
    for pid, _ in left:
        os.kill(pid, signal.SIGKILL)
    return end - float(lines[0].split()[1]), stderr, left


@pytest.mark.parametrize("loader", ["reader", "torch_rows", "torch_batched", "jax"])
@pytest.mark.parametrize("pool", POOLS)
def test_interpreter_exit_under_a_live_loader(url, pool, loader):
    """The script ends with a loader mid-pass (no stop, no join): it exits within seconds, with no traceback
    and no process left."""
    seconds, stderr, left = _exit_seconds(_EXIT_UNDER_LOADER.format(pool=pool, loader=loader), url, timeout=90)
    assert seconds < 8
    assert "Traceback" not in stderr and "Exception ignored" not in stderr
    assert left == []


@pytest.mark.slow
@pytest.mark.parametrize("pool", POOLS)
def test_interpreter_exit_under_a_live_tf_dataset(url, pool):
    seconds, stderr, left = _exit_seconds(_EXIT_UNDER_LOADER.format(pool=pool, loader="tf"), url, timeout=150)
    assert seconds < 10
    assert "Traceback" not in stderr and "Exception ignored" not in stderr
    assert left == []


_TRAINING = r'''
from petastorm import make_reader
POOL, WHERE = {pool!r}, {where!r}
if WHERE == "main":
    if __name__ == "__main__":
        it = iter(make_reader(URL, reader_pool_type=POOL, workers_count=2, num_epochs=None))
        for _ in range(5):
            next(it)
        print("READY", flush=True)
        for _ in it:
            time.sleep(0.01)
else:
    from torch.utils.data import DataLoader, IterableDataset, get_worker_info

    class Rows(IterableDataset):
        def __iter__(self):
            info = get_worker_info()
            with make_reader(URL, schema_fields=["id"], reader_pool_type=POOL, workers_count=2, num_epochs=None,
                             cur_shard=info.id, shard_count=info.num_workers) as r:
                for x in r:
                    yield int(x.id)

    if __name__ == "__main__":
        it = iter(DataLoader(Rows(), batch_size=None, num_workers=2,
                             multiprocessing_context=None if WHERE == "dataloader_fork" else "spawn"))
        for _ in range(50):
            next(it)
        print("READY", flush=True)
        for _ in it:
            time.sleep(0.01)
'''


@pytest.mark.slow
@pytest.mark.parametrize("where", ["main", "dataloader_fork", "dataloader_spawn"])
@pytest.mark.parametrize("pool", ["thread", "process"])
def test_sigterm_to_the_training_process_ends_every_worker(url, tmp_path, pool, where):
    """SIGTERM to a training process reading a reader (in itself, or in DataLoader workers): every worker
    process, fork server and DataLoader worker is gone within seconds (the DataLoader's workers notice their
    parent's death within torch's 5 s watchdog interval; the pools' workers within 1 s of theirs)."""
    path = tmp_path / "training.py"
    path.write_text(PRELUDE + _TRAINING.format(pool=pool, where=where))
    env = dict(os.environ, DATASET_URL=url, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))))
    proc = subprocess.Popen([sys.executable, str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd="/tmp", env=env, start_new_session=True)
    try:
        line = proc.stdout.readline()
        assert line.strip() == "READY", proc.stderr.read()[-3000:] if proc.poll() is not None else line
        running = session_processes(proc.pid)
        os.kill(proc.pid, signal.SIGTERM)
        start = time.time()
        proc.wait(30)
        while session_processes(proc.pid) and time.time() - start < 20:
            time.sleep(0.1)
        seconds, left = time.time() - start, session_processes(proc.pid)
    finally:
        os.killpg(proc.pid, signal.SIGKILL) if proc.poll() is None else None
        for pid, _ in session_processes(proc.pid):
            os.kill(pid, signal.SIGKILL)
        proc.communicate()
    assert len(running) >= (1 if where == "main" and pool == "thread" else 3)  # (the script, its workers)
    assert left == []
    assert seconds < (2 if where == "main" else 10)
