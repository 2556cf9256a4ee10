"""petastorm.tf_utils: the reader's end is final for the dataset's iterator.

``make_petastorm_dataset`` reads nothing ahead (``take(n)`` then a pass loses no row: tests in
``test_script_passes.py``). Without read-ahead, the v1 ``map`` holding the ``numpy_function`` forgot
the end and a ``map(f).batch(n)`` of the user's (``MapAndBatch``) went on calling the reader after it: thousands
of calls after a Keras ``evaluate``, and a call still in flight at interpreter exit hung the MNIST Keras example.
The spy below counts the calls of the dataset's item source on a real reader and a real Keras model.
"""
import os
import time

import pytest
import tensorflow as tf

from petastorm import make_batch_reader, make_reader
from petastorm.tf_impl import dataset as dataset_module
from petastorm.tf_utils import make_petastorm_dataset


@pytest.fixture(scope="module")
def url(testdata_dir):
    return "file://" + os.path.join(testdata_dir, "original-0.12.1", "all_codecs_0.12.1")


@pytest.fixture
def calls(monkeypatch):
    """Counts the item source's calls: all of them, and those that met the reader's end."""
    counts = {"all": 0, "end": 0}
    next_flat = dataset_module.ItemSource.next_flat

    def counting(self, position):
        counts["all"] += 1
        try:
            return next_flat(self, position)
        except StopIteration:
            counts["end"] += 1
            raise

    monkeypatch.setattr(dataset_module.ItemSource, "next_flat", counting)
    return counts


def _model():
    model = tf.keras.Sequential([tf.keras.Input(shape=(1,)), tf.keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    return model


def _xy(row):
    x = tf.reshape(tf.cast(row.id, tf.float32), [1])
    return x, x


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Your input ran out of data")
@pytest.mark.timeout(180)
def test_keras_evaluate_of_map_batch_calls_the_reader_no_more_after_its_end(url, calls):
    # Before: 60 rows, then ~2000 more calls (MapAndBatch filled two more batches of 1000 past the end, each
    # call raising), some of them still running after evaluate returned
    with make_reader(url, schema_fields=["id"], workers_count=1, num_epochs=1) as reader:
        dataset = make_petastorm_dataset(reader).map(_xy).batch(1000)
        _model().evaluate(dataset, verbose=0)
        time.sleep(1)  # calls still in flight would land here
        assert calls == {"all": 61, "end": 1}
    time.sleep(0.5)
    assert calls == {"all": 61, "end": 1}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("factory", [make_reader, make_batch_reader])
def test_iterator_asked_again_after_its_end_does_not_call_the_reader(url, calls, factory):
    with factory(url, schema_fields=["id"], workers_count=1, num_epochs=1) as reader:
        ids = make_petastorm_dataset(reader).map(lambda row: tf.reshape(row.id, [-1]))
        iterator = iter(ids.unbatch().batch(1000))
        assert tf.size(next(iterator)).numpy() == 60
        for _ in range(3):
            with pytest.raises(StopIteration):
                next(iterator)
        ends = calls["end"]
        assert ends == 1
        with pytest.raises(StopIteration):
            next(iterator)
        assert calls["end"] == ends


@pytest.mark.timeout(120)
def test_a_new_pass_after_an_ended_one_still_reads_every_row(url, calls):
    # the end is final for one iterator only: the next iteration resets the reader (another pass)
    with make_reader(url, schema_fields=["id"], workers_count=1, num_epochs=1) as reader:
        dataset = make_petastorm_dataset(reader).map(lambda row: row.id).batch(7)
        first = sorted(int(i) for batch in dataset for i in batch.numpy())
        second = sorted(int(i) for batch in dataset for i in batch.numpy())
    assert first == second == list(range(60))
