"""A thread-pool reader nobody stopped when the interpreter exits (a script's last reader; a reader a DataLoader
worker made in ``worker_init_fn``, whose spawn worker exits through the normal interpreter exit). Its threads
were told to stop by the pool's finalizer but not waited for: they closed their Parquet files (C++) while the
interpreter finalized, and the process could abort with ``terminate called without an active exception``
(measured: a spawn DataLoader over such readers, 3 epochs, died with "DataLoader worker ... is killed by signal:
Aborted" in 4 of 10 runs; 0 of 10 once the exit waits for the threads). The exit now stops and waits
(``EXIT_JOIN_TIMEOUT_S`` in all) for every live thread pool."""
import json

import pytest
from _fixtures.datasets import write_synthetic_dataset

from .process._child_script import run_script


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    return write_synthetic_dataset(str(tmp_path_factory.mktemp("lifecycle") / "dataset"), rows=400,
                                   rows_per_group=20, groups_per_file=4)


_EXIT = r'''
import atexit

def after_petastorm_exit():  # registered first: runs after petastorm's exit handlers (atexit is LIFO)
    alive = [t.name for t in threading.enumerate() if t.name.startswith("petastorm-worker")]
    print("ALIVE_AT_EXIT " + json.dumps(alive), flush=True)

atexit.register(after_petastorm_exit)
from petastorm import make_reader, TransformSpec
STUCK = {stuck!r}

def slow(row):
    if STUCK:
        time.sleep(30)
    return row

r = make_reader(URL, schema_fields=["id"], reader_pool_type="thread", workers_count=3,
                transform_spec=TransformSpec(slow) if STUCK else None)
if STUCK:
    threading.Thread(target=lambda: next(r, None), daemon=True).start()
    time.sleep(1.0)
else:
    ids = [int(x.id) for x in r]
done(started=time.time())
'''


def _alive_at_exit(out: dict) -> list:
    lines = [line for line in out["stdout"].splitlines() if line.startswith("ALIVE_AT_EXIT ")]
    assert lines, out["stderr"][-3000:]
    return json.loads(lines[-1][len("ALIVE_AT_EXIT "):])


def test_exit_waits_for_the_threads_of_an_unstopped_thread_pool(url):
    """A reader read to its end and never stopped: its threads have ended before the interpreter finalizes."""
    out = run_script(_EXIT.format(stuck=False), url, timeout=60)
    assert _alive_at_exit(out) == []
    assert "terminate called" not in out["stderr"]


def test_exit_with_threads_stuck_in_user_code_is_bounded(url):
    """Threads stuck in a transform: the exit waits ``EXIT_JOIN_TIMEOUT_S`` (2 s), not for the transform."""
    out = run_script(_EXIT.format(stuck=True), url, timeout=60)
    assert len(_alive_at_exit(out)) >= 1  # stuck: left to die with the process, as daemon threads
    assert out["ended"] - out["started"] < 8
