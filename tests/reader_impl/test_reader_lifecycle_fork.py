"""A reader made in a parent, then inherited by a child made by ``os.fork()`` or a ``multiprocessing`` 'fork'
``Process``: the child reading it gets a clear error (thread and process pools: their workers are the parent's)
or reads on (dummy pool); the child stopping it, or exiting with it, neither hangs nor touches the parent's
workers, and the parent reads every row of its pass afterwards.

Each case runs in a child interpreter of its own session with a timeout (``process/_child_script.py``).
0.12.1 (recorded, same scripts): a thread- or process-pool reader iterated in a forked child hung.
"""
import pytest
from _fixtures.datasets import write_synthetic_dataset

from .process._child_script import run_script

_FORK = r'''
import signal, faulthandler
from petastorm import make_reader
POOL, MODE = {pool!r}, {mode!r}
r = make_reader(URL, schema_fields=["id"], reader_pool_type=POOL, workers_count=2, shuffle_row_groups=False)
first = [int(next(r).id) for _ in range(5)]
pid = os.fork()
if pid == 0:
    faulthandler.dump_traceback_later(15, exit=True)  # a hang: exit code 1 and the stacks on stderr
    outcome = "none"
    try:
        if MODE == "use":
            outcome = f"read {{sum(1 for _ in r)}}"
        elif MODE == "stop":
            r.stop(); r.join()
            outcome = "stopped"
    except BaseException as e:
        outcome = f"{{type(e).__name__}}: {{e}}"
    with open(os.environ["CHILD_OUT"], "w") as f:
        f.write(outcome)
    sys.exit(0)  # a normal interpreter exit, finalizers included, with the inherited reader
t = time.time()
_, status = os.waitpid(pid, 0)
child_s = time.time() - t
rest = [int(x.id) for x in r]
r.stop(); r.join()
with open(os.environ["CHILD_OUT"]) as f:
    outcome = f.read()
done(child_rc=os.waitstatus_to_exitcode(status), child_s=child_s, outcome=outcome,
     parent_rows=sorted(first + rest) == list(range(400)))
'''


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    """400 rows: 20 row groups of 20 rows, 4 per file (5 files)."""
    return write_synthetic_dataset(str(tmp_path_factory.mktemp("lifecycle") / "dataset"), rows=400,
                                   rows_per_group=20, groups_per_file=4)


@pytest.mark.parametrize("mode", ["use", "stop", "exit"])
@pytest.mark.parametrize("pool", ["thread", "process", "dummy"])
def test_reader_inherited_by_a_forked_child(url, pool, mode, tmp_path):
    """The forked child reads (clear error, or the rest of the rows with the dummy pool), stops, or just
    exits: no hang (the process pool's child hung in ``stop()`` and at exit, on a lock the start-up lane's
    thread held at the fork, and its 'stop' would have ended the parent's workers), and the parent reads its
    whole pass afterwards."""
    out = run_script(_FORK.format(pool=pool, mode=mode), url, timeout=60,
                     env={"CHILD_OUT": str(tmp_path / "child.txt")})
    assert out["child_rc"] == 0, out["stderr"][-3000:]
    assert out["child_s"] < 10
    assert out["parent_rows"] is True
    assert out["left"] == []
    if mode == "use":
        if pool == "dummy":
            assert out["outcome"] == "read 395"  # the child's own copy reads on
        else:
            assert out["outcome"].startswith("PetastormReaderError: ")
            assert "os.fork()" in out["outcome"] and "Make the reader in the process that reads it" in out["outcome"]
    elif mode == "stop":
        assert out["outcome"] == "stopped"


_MP_FORK = r'''
import multiprocessing as mp
from petastorm import make_reader

def use(r, q):
    try:
        q.put(("read", sum(1 for _ in r)))
    except BaseException as e:
        q.put(("error", f"{type(e).__name__}: {e}"))

if __name__ == "__main__":
    r = make_reader(URL, schema_fields=["id"], reader_pool_type=POOL, workers_count=2)
    first = [int(next(r).id)]
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=use, args=(r, q))
    p.start()
    said = q.get(timeout=30)
    p.join(10)
    rest = [int(x.id) for x in r]
    r.stop(); r.join()
    done(said=said, exitcode=p.exitcode, parent_rows=sorted(first + rest) == list(range(400)))
'''


@pytest.mark.parametrize("pool", ["thread", "process"])
def test_reader_passed_to_a_multiprocessing_fork_process(url, pool):
    """A reader given to a ``multiprocessing`` 'fork' ``Process``: the child's read is a clear error naming
    the fork, within seconds (thread pool: "all worker threads of the pool have ended"; process pool: a hang),
    the child exits cleanly and the parent reads on."""
    out = run_script(f"POOL = {pool!r}\n" + _MP_FORK, url, timeout=60)
    kind, message = out["said"]
    assert kind == "error" and message.startswith("PetastormReaderError: ") and "os.fork()" in message
    assert out["exitcode"] == 0
    assert out["parent_rows"] is True
    assert out["left"] == []
