"""Readers opened inside ``torch.utils.data.DataLoader`` workers, one per worker (``get_worker_info()`` ->
``cur_shard``/``shard_count``), with each pool type and each start method of the DataLoader's workers,
``persistent_workers=True``: every row once per epoch, and nothing left running once the DataLoader is deleted
and the script has ended.

Each case runs in a child interpreter of its own session with a timeout (``_child_script.run_script``).
"""
import pytest
from _fixtures.datasets import write_synthetic_dataset

from ._child_script import run_script

_DATALOADER = r'''
import torch
from torch.utils.data import IterableDataset, DataLoader, get_worker_info
from petastorm import make_reader, make_batch_reader

POOL, CTX, MAKER, PARENT_FIRST = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
CTX = None if CTX == "fork" else CTX

class Rows(IterableDataset):
    def __iter__(self):
        info = get_worker_info()
        maker = make_reader if MAKER == "make_reader" else make_batch_reader
        with maker(URL, schema_fields=["id"], reader_pool_type=POOL, workers_count=2, cur_shard=info.id,
                   shard_count=info.num_workers) as reader:
            for x in reader:
                if MAKER == "make_reader":
                    yield int(x.id)
                else:
                    yield from (int(i) for i in x.id)

def main():
    if PARENT_FIRST:  # the training process read a process-pool reader first: its fork server is up
        with make_reader(URL, schema_fields=["id"], reader_pool_type="process", workers_count=2) as reader:
            assert sorted(int(r.id) for r in reader) == list(range(400))
    before = set(descendants())
    loader = DataLoader(Rows(), batch_size=None, num_workers=2, multiprocessing_context=CTX,
                        persistent_workers=True)
    epochs = [sorted(int(i) for i in loader) for _ in range(2)]
    workers = [w.pid for w in loader._iterator._workers]
    del loader
    gc.collect()
    deadline = time.time() + 10
    while True:
        left = [(p, cmdline(p)) for p in descendants() if p not in before and p not in helpers()
                and "resource_tracker" not in cmdline(p) and "forkserver" not in cmdline(p)]
        if not left or time.time() > deadline:
            break
        time.sleep(0.1)
    done(epochs_ok=[e == list(range(400)) for e in epochs], workers=workers, left_after_del=left)

if __name__ == "__main__":
    main()
'''


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    """400 rows: 20 row groups of 20 rows, 4 per file (5 files)."""
    return write_synthetic_dataset(str(tmp_path_factory.mktemp("dataloader_workers") / "dataset"), rows=400,
                                   rows_per_group=20, groups_per_file=4)


def _check(url, pool, ctx, maker="make_reader", parent_first=False):
    code = _DATALOADER.replace("sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == \"1\"",
                               f"{pool!r}, {ctx!r}, {maker!r}, {parent_first!r}")
    out = run_script(code, url, timeout=150)
    assert out["epochs_ok"] == [True, True]  # every row once, each epoch (2 shards of 400 rows)
    assert len(out["workers"]) == 2
    assert out["left_after_del"] == []  # DataLoader workers, their pool workers and fork servers are gone
    assert out["left"] == []  # and nothing of the session outlives the script
    assert "Traceback" not in out["stderr"]


@pytest.mark.slow
@pytest.mark.parametrize("maker", ["make_reader", "make_batch_reader"])
def test_process_pool_in_forked_dataloader_workers(url, maker):
    """The process pool inside the DataLoader's daemonic workers reads every row. It raised
    ``daemonic processes are not allowed to have children`` (``multiprocessing``'s refusal); 0.12.1 (recorded,
    same script) read 400 rows per epoch."""
    _check(url, "process", "fork", maker)


@pytest.mark.slow
@pytest.mark.parametrize("ctx", ["spawn", "forkserver"])
def test_process_pool_in_spawned_dataloader_workers(url, ctx):
    """The same with ``multiprocessing_context='spawn'`` / ``'forkserver'`` (0.12.1, recorded: 400 rows)."""
    _check(url, "process", ctx)


@pytest.mark.slow
def test_process_pool_in_dataloader_workers_after_the_parent_read_one(url):
    """The training process read a process-pool reader before the DataLoader forked its workers: their
    process-pool readers raised a bare ``ChildProcessError: [Errno 10] No child processes`` (each worker
    inherited the parent's fork server, which ``multiprocessing`` then ``waitpid``s)."""
    _check(url, "process", "fork", parent_first=True)


@pytest.mark.slow
@pytest.mark.parametrize("pool", ["thread", "dummy"])
@pytest.mark.parametrize("ctx", ["fork", "spawn"])
def test_thread_and_dummy_pools_in_dataloader_workers(url, pool, ctx):
    """Thread and dummy pools in the DataLoader's workers: every row, nothing left after ``del loader``."""
    _check(url, pool, ctx, "make_batch_reader" if pool == "dummy" else "make_reader")


def test_process_reader_in_a_forked_child_after_the_parent_used_one(url):
    """``os.fork()`` after a process-pool reader: a process-pool reader in the child reads every row (it raised
    a bare ``ChildProcessError``), and the parent's fork server still serves the parent afterwards."""
    out = run_script(r'''
from petastorm import make_reader
def read():
    with make_reader(URL, schema_fields=["id"], reader_pool_type="process", workers_count=2) as r:
        return sorted(int(x.id) for x in r)
assert read() == list(range(400))
pid = os.fork()
if pid == 0:
    try:
        ok = read() == list(range(400))
        os._exit(0 if ok else 3)
    except BaseException as e:
        print("child", type(e).__name__, e, file=sys.stderr, flush=True)
        os._exit(4)
_, status = os.waitpid(pid, 0)
done(child_rc=os.waitstatus_to_exitcode(status), parent_again=read() == list(range(400)))
''', url, timeout=90)
    assert out["child_rc"] == 0, out["stderr"][-2000:]
    assert out["parent_again"] is True
    assert out["left"] == []


def test_process_reader_in_a_forked_child_of_a_foreign_fork_server(url):
    """The parent's fork server was started by other code before petastorm was imported (no fork handler of
    ours ran in the child): the child's process-pool reader reads every row all the same."""
    out = run_script(r'''
import multiprocessing as mp
ctx = mp.get_context("forkserver")
p = ctx.Process(target=print, args=("hello",))
p.start(); p.join()
pid = os.fork()
if pid == 0:
    try:
        from petastorm import make_reader
        with make_reader(URL, schema_fields=["id"], reader_pool_type="process", workers_count=2) as r:
            ok = sorted(int(x.id) for x in r) == list(range(400))
        os._exit(0 if ok else 3)
    except BaseException as e:
        print("child", type(e).__name__, e, file=sys.stderr, flush=True)
        os._exit(4)
_, status = os.waitpid(pid, 0)
done(child_rc=os.waitstatus_to_exitcode(status))
''', url, timeout=90)
    assert out["child_rc"] == 0, out["stderr"][-2000:]
    assert out["left"] == []
