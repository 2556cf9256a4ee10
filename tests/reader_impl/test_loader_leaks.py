"""No thread or reader left behind by the loaders (issue 11, bad input): their prefetch threads end once the
reader underneath is stopped and joined, and a ``tf.data`` pipeline dropped mid-epoch frees its reader, whose
worker threads end. Other ways of holding a ``make_petastorm_dataset`` pipeline are in
tests/tf_utils/test_pipeline_lifetime.py."""
import json
import subprocess
import sys
import time

import pytest
from _fixtures.datasets import write_synthetic_dataset
from _fixtures.threads import new_prefetch_threads, no_new_prefetch_thread_within

FIELDS = ["id", "value", "matrix"]


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    """400 rows: 20 row groups of 20 rows, 4 per file."""
    path = str(tmp_path_factory.mktemp("loader_leaks") / "dataset")
    return write_synthetic_dataset(path, rows=400, rows_per_group=20, groups_per_file=4)


def _loader(kind, reader):
    if kind == "BatchedDataLoader":
        from petastorm.pytorch import BatchedDataLoader

        return BatchedDataLoader(reader, batch_size=8, shuffling_queue_capacity=64)  # shuffling keeps the thread
    if kind == "BatchedDataLoader-plain":
        from petastorm.pytorch import BatchedDataLoader

        return BatchedDataLoader(reader, batch_size=8)
    if kind == "DataLoader":
        from petastorm.pytorch import DataLoader

        return DataLoader(reader, batch_size=8)
    from petastorm.jax import make_jax_iterator

    return make_jax_iterator(reader, batch_size=8)


@pytest.mark.parametrize("kind", ["BatchedDataLoader", "DataLoader", "make_jax_iterator"])
def test_prefetch_thread_ends_with_the_reader_while_the_iterator_is_held(url, kind):
    """The user breaks out of the loop, keeps the iterator (a local of a live frame), and calls
    ``reader.stop(); reader.join()``: the loader's prefetch thread must end too (it holds prefetched
    batches); reading on raises the stopped-reader error."""
    from petastorm import make_batch_reader
    from petastorm.errors import PetastormReaderError

    reader = make_batch_reader(url, schema_fields=FIELDS, reader_pool_type="thread", workers_count=2, num_epochs=None)
    it = iter(_loader(kind, reader))
    next(it)
    next(it)
    time.sleep(0.5)  # the prefetch deque is full: the thread waits for the consumer
    assert new_prefetch_threads()
    reader.stop()
    reader.join()
    ended = no_new_prefetch_thread_within(3.0)
    with pytest.raises(PetastormReaderError):
        for _ in it:
            pass
    assert ended


def test_plain_batched_loader_cuts_without_a_thread_and_stops_with_the_reader(url):
    """Plain CPU batches of a thread-pool batch reader are cut in ``next()``: no prefetch thread is started at
    all, and reading on after ``reader.stop(); reader.join()`` raises the stopped-reader error."""
    from petastorm import make_batch_reader
    from petastorm.errors import PetastormReaderError

    reader = make_batch_reader(url, schema_fields=FIELDS, reader_pool_type="thread", workers_count=2, num_epochs=None)
    it = iter(_loader("BatchedDataLoader-plain", reader))
    next(it)
    next(it)
    assert not new_prefetch_threads()
    reader.stop()
    reader.join()
    with pytest.raises(PetastormReaderError):
        for _ in it:
            pass
    assert not new_prefetch_threads()


_TF_CHILD = r'''
import gc, json, sys, threading, time, weakref
import tensorflow as tf
from petastorm import make_batch_reader
from petastorm.tf_utils import make_petastorm_dataset

def read_part():
    reader = make_batch_reader(sys.argv[1], schema_fields=["id", "value", "matrix"], reader_pool_type="thread",
                               workers_count=2)
    dataset = make_petastorm_dataset(reader)
    if sys.argv[2] == "parallel":
        dataset = dataset.map(lambda row: row.id, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
    it = iter(dataset)
    next(it)
    next(it)
    return weakref.ref(reader)

ref = read_part()
gc.collect()
deadline = time.time() + 5
while time.time() < deadline and (ref() is not None or len(threading.enumerate()) > 1):
    time.sleep(0.1)
    gc.collect()
print("RESULT " + json.dumps({"reader_alive": ref() is not None,
                              "threads": [t.name for t in threading.enumerate()]}))
'''


@pytest.mark.slow
@pytest.mark.parametrize("stages", ["none", "parallel"])
def test_tf_dataset_dropped_mid_epoch_frees_the_reader(url, stages):
    """A ``make_petastorm_dataset`` pipeline and its iterator dropped mid-epoch (the reader never stopped,
    as with the torch loaders, whose abandoned reader is freed and its workers stopped): the reader is
    freed and its worker threads end, also with the user's parallel ``map`` and ``prefetch`` after it
    (TensorFlow's threads were calling the dataset when the pipeline was dropped)."""
    proc = subprocess.run([sys.executable, "-c", _TF_CHILD, url, stages], capture_output=True, text=True, timeout=120,
                          cwd="/")
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    out = json.loads(lines[-1][len("RESULT "):])
    assert out == {"reader_alive": False, "threads": ["MainThread"]}
