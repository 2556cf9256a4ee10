"""The process pool seen through the reader: worker errors with tracebacks, dead workers, same rows."""
import os
import signal
import time

import psutil
import pytest

from petastorm import TransformSpec, make_batch_reader, make_reader
from petastorm.errors import PetastormWorkerError


def _fail_on_42(row):
    if int(row["id"]) == 42:
        raise KeyError("row 42 is cursed")
    return row


def test_worker_exception_reaches_the_caller_with_the_worker_traceback(synthetic_dataset):
    with make_reader(synthetic_dataset, reader_pool_type="process", workers_count=2,
                     transform_spec=TransformSpec(_fail_on_42)) as reader:
        with pytest.raises(KeyError) as info:
            list(reader)
    text = str(info.value) + "".join(getattr(info.value, "__notes__", [])) + str(info.value.__cause__ or "") + \
        str(getattr(info.value, "worker_traceback", ""))
    assert "_fail_on_42" in text  # the worker's traceback names the function that raised


def _slow(row):
    time.sleep(0.05)
    return row


def test_a_killed_worker_process_gives_a_worker_error_not_a_hang(synthetic_dataset):
    me = psutil.Process()
    with make_reader(synthetic_dataset, reader_pool_type="process", workers_count=2, num_epochs=None,
                     transform_spec=TransformSpec(_slow)) as reader:
        next(reader)
        pids = reader.diagnostics["pool_worker_pids"]  # fresh processes
        victims = [p for p in me.children(recursive=True) if p.pid in pids]
        assert len(victims) == 2
        for p in victims:
            os.kill(p.pid, signal.SIGKILL)
        start = time.monotonic()
        with pytest.raises(PetastormWorkerError):
            for _ in range(10_000):
                next(reader)
        assert time.monotonic() - start < 15


def test_process_pool_rows_equal_thread_pool_rows(synthetic_dataset):
    with make_batch_reader(synthetic_dataset, reader_pool_type="process", workers_count=2, seed=3) as reader:
        a = [b.image.copy() for b in reader]
    with make_batch_reader(synthetic_dataset, reader_pool_type="thread", workers_count=2, seed=3) as reader:
        b = [b.image for b in reader]
    assert len(a) == len(b) == 10
    assert all((x == y).all() for x, y in zip(a, b))
