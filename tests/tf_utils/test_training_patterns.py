"""petastorm.tf_utils in the patterns real TensorFlow scripts use, each recorded from the original petastorm 0.12.1
(TensorFlow 2.16.2) through its public API on the same dataset (``all_codecs_0.12.1`` of the shared test data: 60
rows) and found the same here: ``tf.distribute.MirroredStrategy`` over two logical CPU devices, TF1 queue-based
batching (``tf.train.batch`` / ``shuffle_batch`` over ``tf_tensors``, the original's MNIST example) and
``tf.train.MonitoredSession`` loops that end at the reader's end."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from petastorm import make_batch_reader, make_reader
from petastorm.tf_utils import make_petastorm_dataset, tf_tensors

ALL_IDS = list(range(60))
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


@pytest.fixture(scope="module")
def url(testdata_dir):
    return "file://" + os.path.join(testdata_dir, "original-0.12.1", "all_codecs_0.12.1")


_MIRRORED = textwrap.dedent("""
    import os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from petastorm import make_batch_reader, make_reader
    from petastorm.tf_utils import make_petastorm_dataset
    url = sys.argv[1]
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    for factory in (make_reader, make_batch_reader):
        with factory(url, schema_fields=["id", "f64", "f32"], workers_count=1) as reader:
            dataset = make_petastorm_dataset(reader)
            if factory is make_batch_reader:
                dataset = dataset.unbatch()
            distributed = strategy.experimental_distribute_dataset(dataset.batch(8))
            for _ in range(2):
                ids = []
                for batch in distributed:
                    for part in strategy.experimental_local_results(batch.id):
                        ids += part.numpy().tolist()
                print("PASS", factory.__name__, sorted(ids) == list(range(60)), flush=True)
        with factory(url, schema_fields=["id", "f64", "f32"], workers_count=1, num_epochs=None) as reader:
            dataset = make_petastorm_dataset(reader)
            if factory is make_batch_reader:
                dataset = dataset.unbatch()
            dataset = dataset.map(lambda r: (tf.reshape(tf.cast(r.f64, tf.float32), [1]), r.f32)).batch(8)
            with strategy.scope():
                model = tf.keras.Sequential([tf.keras.Input((1,)), tf.keras.layers.Dense(1)])
                model.compile("sgd", "mse")
            history = model.fit(dataset, epochs=2, steps_per_epoch=3, verbose=0)
            print("FIT", factory.__name__, len(history.history["loss"]), flush=True)
""")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_mirrored_strategy_over_two_logical_cpus_sees_every_row_once_per_pass(url):
    # recorded from 0.12.1: every row once per pass (2 passes, rows and unbatched batches); Keras fit in the
    # strategy's scope over an endless reader runs its epochs
    proc = subprocess.run([sys.executable, "-c", _MIRRORED, url], capture_output=True, text=True, timeout=280,
                          cwd=REPO)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(("PASS", "FIT"))]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert lines == ["PASS make_reader True"] * 2 + ["FIT make_reader 2"] + \
                    ["PASS make_batch_reader True"] * 2 + ["FIT make_batch_reader 2"], proc.stderr[-3000:]


def _run_queue_batching(url, how):
    ids, ended = [], False
    with tf.compat.v1.Graph().as_default(), \
            make_reader(url, schema_fields=["id", "png"], workers_count=1, shuffle_row_groups=False) as reader:
        row = tf_tensors(reader)
        image = tf.cast(tf.reshape(row.png, [32 * 48 * 3]), tf.float32)
        if how == "shuffle_batch":
            images, labels = tf.compat.v1.train.shuffle_batch([image, row.id], batch_size=7, capacity=30,
                                                              min_after_dequeue=10)
        else:
            images, labels = tf.compat.v1.train.batch([image, row.id], batch_size=7,
                                                      allow_smaller_final_batch=how == "smaller_final")
        with tf.compat.v1.Session() as session:
            coord = tf.compat.v1.train.Coordinator()
            threads = tf.compat.v1.train.start_queue_runners(session, coord=coord)
            try:
                for _ in range(20):
                    batch_images, batch_labels = session.run([images, labels])
                    assert batch_images.shape[1:] == (32 * 48 * 3,)
                    ids += batch_labels.tolist()
            except tf.errors.OutOfRangeError:
                ended = True
            coord.request_stop()
            coord.join(threads, stop_grace_period_secs=10)
    return ids, ended, images.shape.as_list()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("how, rows, static_batch", [("batch", 56, 7), ("smaller_final", 60, None),
                                                     ("shuffle_batch", 56, 7)])
def test_tf1_queue_batching_over_tf_tensors_ends_at_the_readers_end(url, how, rows, static_batch):
    # recorded from 0.12.1: tf.train.batch of 7 gives 8 full batches (56 rows), with allow_smaller_final_batch
    # all 60; then OutOfRangeError; every row at most once
    ids, ended, shape = _run_queue_batching(url, how)
    assert ended and len(ids) == rows and len(set(ids)) == rows and set(ids) <= set(ALL_IDS)
    assert shape == [static_batch, 32 * 48 * 3]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("queue", [0, 20])
def test_monitored_session_loop_ends_at_the_readers_end(url, queue):
    # recorded from 0.12.1: `while not session.should_stop()` reads every row once and ends (with and without a
    # shuffling queue)
    ids = []
    with tf.compat.v1.Graph().as_default(), make_reader(url, schema_fields=["id"], workers_count=1) as reader:
        row = tf_tensors(reader, shuffling_queue_capacity=queue, min_after_dequeue=5 if queue else 0)
        with tf.compat.v1.train.MonitoredSession() as session:
            while not session.should_stop():
                ids.append(int(session.run(row).id))
    assert sorted(ids) == ALL_IDS


@pytest.mark.timeout(120)
def test_monitored_session_over_a_one_shot_iterator_of_batches(url):
    # recorded from 0.12.1: all 60 rows through make_one_shot_iterator of a batch reader's dataset
    ids = []
    with tf.compat.v1.Graph().as_default(), \
            make_batch_reader(url, schema_fields=["id"], workers_count=1) as reader:
        batch = tf.compat.v1.data.make_one_shot_iterator(make_petastorm_dataset(reader)).get_next()
        with tf.compat.v1.train.MonitoredSession() as session:
            while not session.should_stop():
                ids += np.asarray(session.run(batch).id).tolist()
    assert sorted(ids) == ALL_IDS
