"""The reader under ``make_petastorm_dataset`` lives exactly as long as the user's pipeline (issue 11, bad input).

TensorFlow keeps a ``numpy_function``'s callable for ever in eager mode, so the dataset's callable holds the
reader weakly and the user's pipeline holds it strongly. These tests run every way users hold (or do not hold)
the pipeline, with ``gc.collect()`` between elements, and check that no row is lost; a pipeline dropped
mid-epoch frees its reader (tests/reader_impl/test_loader_leaks.py checks its threads end), and an interpreter
with the user's parallel stages after the dataset, left mid-epoch, exits.
"""
import gc
import subprocess
import sys
import weakref

import pytest
import tensorflow as tf
from _fixtures.datasets import write_synthetic_dataset

from petastorm import make_batch_reader, make_reader
from petastorm.ngram import NGram
from petastorm.tf_utils import make_petastorm_dataset, tf_tensors

ROWS = 100
ALL_IDS = list(range(ROWS))


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    """100 rows: 10 row groups of 10 rows, 2 per file."""
    return write_synthetic_dataset(str(tmp_path_factory.mktemp("tf_lifetime") / "dataset"), rows=ROWS)


def _rows(url, **kwargs):
    return make_reader(url, schema_fields=["id", "value"], reader_pool_type="thread", workers_count=2, **kwargs)


def _ids(elements):
    """Ids of the elements of an iterator of rows, with a full collection before each element."""
    ids = []
    while True:
        gc.collect()
        try:
            element = next(elements)
        except StopIteration:
            return sorted(ids)
        ids.extend(tf.reshape(element.id, [-1]).numpy().tolist())


def test_for_loop_over_a_dataset_of_an_unnamed_reader_reads_every_row(url):
    ids = []
    for row in make_petastorm_dataset(_rows(url, num_epochs=1)):
        gc.collect()
        ids.append(int(row.id))
    assert sorted(ids) == ALL_IDS


def test_for_loop_over_a_dataset_of_an_unnamed_batch_reader_reads_every_row(url):
    ids = []
    for batch in make_petastorm_dataset(make_batch_reader(url, schema_fields=["id"], workers_count=2, num_epochs=1)):
        gc.collect()
        ids.extend(batch.id.numpy().tolist())
    assert sorted(ids) == ALL_IDS


def test_for_loop_over_a_dataset_of_an_unnamed_ngram_reader_reads_every_window(url):
    ngram = NGram({0: ["id"], 1: ["id", "value"]}, delta_threshold=10, timestamp_field="timestamp")
    windows = []
    for window in make_petastorm_dataset(make_reader(url, schema_fields=ngram, workers_count=2, num_epochs=1)):
        gc.collect()
        windows.append((int(window[0].id), int(window[1].id)))
    assert len(windows) == 90  # 9 windows in each of the 10 row groups of 10 rows
    assert all(second == first + 1 for first, second in windows)


def test_iterator_of_an_unnamed_reader_keeps_reading_after_the_pipeline_is_deleted(url):
    """``make_petastorm_dataset(make_reader(url)).map(f).batch(2)``: neither the reader nor the first dataset
    is named; the pipeline is deleted mid-iteration and the iterator read with collections in between."""
    ds = make_petastorm_dataset(_rows(url, num_epochs=1)).map(lambda row: row).batch(2)
    it = iter(ds)
    ids = next(it).id.numpy().tolist()
    del ds
    assert sorted(ids + _ids(it)) == ALL_IDS


def test_finished_dataset_iterated_again_reads_every_row_again(url):
    ds = make_petastorm_dataset(_rows(url, num_epochs=1)).batch(7)
    assert _ids(iter(ds)) == ALL_IDS
    gc.collect()
    assert _ids(iter(ds)) == ALL_IDS


@pytest.mark.filterwarnings("ignore:Your input ran out of data")
def test_keras_fit_on_a_pipeline_of_an_unnamed_reader_trains_every_epoch(url):
    batches = []
    collect = tf.keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: (batches.append(batch),
                                                                                        gc.collect()))
    model = tf.keras.Sequential([tf.keras.Input(shape=(1,)), tf.keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    history = model.fit(make_petastorm_dataset(_rows(url, num_epochs=1))
                        .map(lambda row: (tf.reshape(row.value, [1]), tf.reshape(row.value, [1]))).batch(10),
                        epochs=2, verbose=0, callbacks=[collect])
    assert len(history.history["loss"]) == 2
    assert len(batches) == 2 * ROWS // 10  # each epoch another pass of the reader


def test_tf_function_over_a_dataset_argument_reads_every_row(url):
    @tf.function
    def total(dataset):
        return dataset.reduce(tf.constant(0, tf.int64), lambda acc, row: acc + row.id)

    assert int(total(make_petastorm_dataset(_rows(url, num_epochs=1)))) == sum(ALL_IDS)


def test_tf_function_that_captured_a_dataset_reads_it_after_its_name_is_deleted(url):
    """The traced function keeps the dataset's variant tensor, which holds the reader."""
    named = {"ds": make_petastorm_dataset(_rows(url, num_epochs=1))}

    @tf.function
    def total():
        return named["ds"].reduce(tf.constant(0, tf.int64), lambda acc, row: acc + row.id)

    assert int(total()) == sum(ALL_IDS)
    named.clear()  # no Python object of the dataset is left
    gc.collect()
    assert int(total()) == sum(ALL_IDS)  # the same traced function: another pass of the reader


def test_tf_function_that_captured_a_later_stage_says_to_keep_the_pipeline_once_it_is_dropped(url):
    """The traced function keeps the batch stage's variant tensor only: with no Python object of the pipeline
    left the reader is freed, and the next call says what to keep (documented in docs/tensorflow.md)."""
    named = {"ds": make_petastorm_dataset(_rows(url, num_epochs=1)).batch(10)}

    @tf.function
    def total():
        return named["ds"].reduce(tf.constant(0, tf.int64), lambda acc, batch: acc + tf.reduce_sum(batch.id))

    assert int(total()) == sum(ALL_IDS)
    named.clear()
    gc.collect()
    with pytest.raises(tf.errors.OpError, match="PetastormReaderError.*keep a reference to the dataset"):
        total()


def test_tf_function_that_makes_the_dataset_reads_it_at_every_call(url):
    """A dataset made while a function is traced (no Python object of it outlives the tracing): the traced
    function's graph holds what reads the reader."""
    reader = _rows(url, num_epochs=1)

    @tf.function
    def total():
        dataset = make_petastorm_dataset(reader)
        return dataset.reduce(tf.constant(0, tf.int64), lambda acc, row: acc + row.id)

    assert int(total()) == sum(ALL_IDS)
    gc.collect()
    assert int(total()) == sum(ALL_IDS)


def test_graph_mode_one_shot_iterator_and_tf_tensors_read_every_row(url):
    """TF1 code: the graph holds the reader; neither the dataset nor the iterator is kept."""
    with tf.Graph().as_default():
        row = tf.compat.v1.data.make_one_shot_iterator(make_petastorm_dataset(_rows(url, num_epochs=1))).get_next()
        tensors = tf_tensors(_rows(url, num_epochs=1))
        gc.collect()
        with tf.compat.v1.Session() as sess:
            assert sorted(_session_ids(sess, row.id)) == ALL_IDS
            assert sorted(_session_ids(sess, tensors.id)) == ALL_IDS


def _session_ids(sess, tensor):
    ids = []
    while True:
        gc.collect()
        try:
            ids.append(int(sess.run(tensor)))
        except tf.errors.OutOfRangeError:
            return ids


def test_pipeline_dropped_mid_epoch_frees_its_reader(url):
    reader = _rows(url, num_epochs=None)
    freed = weakref.ref(reader)
    it = iter(make_petastorm_dataset(reader).map(lambda row: row.id).batch(2))
    next(it)
    next(it)
    del reader, it
    gc.collect()
    assert freed() is None


_EXIT_CHILD = r'''
import sys
import tensorflow as tf
from petastorm import make_reader
from petastorm.tf_utils import make_petastorm_dataset

url, stage, stop = sys.argv[1], sys.argv[2], sys.argv[3] == "stop"
reader = make_reader(url, schema_fields=["id", "value"], reader_pool_type="thread", workers_count=2, num_epochs=None)
ds = make_petastorm_dataset(reader)
if stage == "map":
    ds = ds.map(lambda row: row.id * 2, num_parallel_calls=tf.data.AUTOTUNE)
elif stage == "prefetch":
    ds = ds.map(lambda row: row.id).batch(4).prefetch(tf.data.AUTOTUNE)
else:
    ds = ds.interleave(lambda row: tf.data.Dataset.from_tensors(row.id).repeat(3), cycle_length=4,
                       num_parallel_calls=tf.data.AUTOTUNE)
it = iter(ds)
for i, element in enumerate(it):
    if i == 10:
        break
if stop:
    reader.stop()
    reader.join()
print("LEFT THE LOOP", flush=True)
'''


@pytest.mark.slow
@pytest.mark.parametrize("stop", ["stop", "no-stop"])
@pytest.mark.parametrize("stage", ["map", "prefetch", "interleave"])
def test_interpreter_exits_after_a_loop_left_mid_epoch_with_parallel_stages(url, stage, stop):
    """The user's parallel stages keep calling the dataset in TensorFlow's threads after the ``break``; the
    iterator, pipeline and reader are still named when the interpreter exits."""
    proc = subprocess.run([sys.executable, "-c", _EXIT_CHILD, url, stage, stop], capture_output=True, text=True,
                          timeout=120, cwd="/")
    assert proc.returncode == 0 and "LEFT THE LOOP" in proc.stdout, proc.stderr[-3000:]
