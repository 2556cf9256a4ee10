"""petastorm.tf_utils against a hostile or hurried user: what is passed for the reader, counts that are no
integers, Keras with an endless reader, Ctrl-C in the training loop, a batch of a variable-shape field.

Expected behaviours marked "recorded" were recorded from the original petastorm 0.12.1 (TensorFlow 2.16.2)
through its public API.
"""
import threading

import numpy as np
import pytest
import tensorflow as tf
from _fixtures.simple_ndarrays import write_simple

from petastorm import make_reader
from petastorm.errors import PetastormArgumentError, PetastormTypeError
from petastorm.pytorch import DataLoader
from petastorm.tf_utils import make_petastorm_dataset, tf_tensors


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    return write_simple(str(tmp_path_factory.mktemp("tf_bad_input")))


def _not_readers(url):
    return [None, url, [1, 2], 3]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("index", range(4))
def test_make_petastorm_dataset_of_something_that_is_no_reader_names_the_argument(url, index):
    # recorded from 0.12.1: a bare AttributeError "'NoneType' object has no attribute 'ngram'" (also for a URL
    # string, a list); before: "'str' object has no attribute 'schema'"
    thing = _not_readers(url)[index]
    with pytest.raises(PetastormTypeError, match=r"reader: make_petastorm_dataset needs a petastorm reader"):
        make_petastorm_dataset(thing)


@pytest.mark.timeout(120)
def test_make_petastorm_dataset_of_a_loader_says_to_pass_the_reader(url):
    with make_reader(url, schema_fields=["id"], workers_count=1) as reader:
        with pytest.raises(PetastormTypeError, match=r"got DataLoader"):
            make_petastorm_dataset(DataLoader(reader))


@pytest.mark.timeout(120)
@pytest.mark.parametrize("index", range(4))
def test_tf_tensors_of_something_that_is_no_reader_names_the_argument(url, index):
    # recorded from 0.12.1: "'NoneType' object has no attribute 'batched_output'"
    thing = _not_readers(url)[index]
    with tf.compat.v1.Graph().as_default():
        with pytest.raises(PetastormTypeError, match=r"reader: tf_tensors needs a petastorm reader"):
            tf_tensors(thing)


def _new_threads(before):
    return [t for t in threading.enumerate() if t.ident not in before and t.is_alive()]


@pytest.mark.parametrize("kwargs", [dict(shuffling_queue_capacity=10.0), dict(shuffling_queue_capacity="10"),
                                    dict(shuffling_queue_capacity=10, min_after_dequeue=2.5)])
def test_tf_tensors_non_integer_counts_are_a_type_error_as_the_original(url, kwargs):
    # recorded from 0.12.1: shuffling_queue_capacity=10.0 raised OperatorNotAllowedInGraphError (a TypeError);
    # before: a PetastormArgumentError, a ValueError only
    with make_reader(url, schema_fields=["id"], reader_pool_type="dummy") as reader, tf.Graph().as_default():
        with pytest.raises(TypeError) as info:
            tf_tensors(reader, **kwargs)
    assert isinstance(info.value, PetastormArgumentError)  # and still a ValueError
    assert "must be a non-negative integer" in str(info.value)


def test_tf_tensors_min_after_dequeue_not_below_capacity_is_a_type_error_as_the_original(url):
    # recorded from 0.12.1: (capacity 5, min_after_dequeue 10) raised OperatorNotAllowedInGraphError, a TypeError
    with make_reader(url, schema_fields=["id"], reader_pool_type="dummy") as reader, tf.Graph().as_default():
        with pytest.raises(TypeError, match=r"min_after_dequeue \(10\) must be smaller than shuffling_queue_capacity"):
            tf_tensors(reader, shuffling_queue_capacity=5, min_after_dequeue=10)
        with pytest.raises(ValueError, match="shuffling_queue_capacity must be a non-negative integer, got -1"):
            tf_tensors(reader, shuffling_queue_capacity=-1)


def test_tf_tensors_accepts_numpy_integer_counts(url):
    with make_reader(url, schema_fields=["id"], reader_pool_type="dummy", shuffle_row_groups=False) as reader, \
            tf.Graph().as_default():
        row = tf_tensors(reader, shuffling_queue_capacity=np.int64(8), min_after_dequeue=np.int32(2))
        with tf.compat.v1.Session() as sess:
            coord = tf.compat.v1.train.Coordinator()
            threads = tf.compat.v1.train.start_queue_runners(sess=sess, coord=coord)
            ids = [int(sess.run(row).id) for _ in range(10)]
            coord.request_stop()
            coord.join(threads, stop_grace_period_secs=5, ignore_live_threads=True)
    assert len(set(ids)) == 10 and all(0 <= i < 20 for i in ids)


@pytest.mark.timeout(180)
def test_keras_fit_with_steps_per_epoch_over_an_endless_reader_leaves_no_thread(url):
    import keras

    before = {t.ident for t in threading.enumerate()}
    with make_reader(url, schema_fields=["v", "id"], num_epochs=None, workers_count=2, seed=0,
                     shuffle_rows=True) as reader:
        dataset = make_petastorm_dataset(reader).map(lambda r: (r.v / 20.0, tf.cast(r.id, tf.float32) / 20.0))
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        history = model.fit(dataset.batch(4), epochs=3, steps_per_epoch=7, shuffle=False, verbose=0)
    assert len(history.history["loss"]) == 3 and all(np.isfinite(history.history["loss"]))
    assert not _new_threads(before)


@pytest.mark.timeout(120)
def test_ctrl_c_in_the_training_loop_reaches_the_user_and_leaves_no_thread(url):
    before = {t.ident for t in threading.enumerate()}
    seen = []
    with pytest.raises(KeyboardInterrupt):
        with make_reader(url, schema_fields=["id", "v"], workers_count=3, num_epochs=None) as reader:
            for row in make_petastorm_dataset(reader).batch(2):
                seen.append(row.id.numpy().tolist())
                if len(seen) == 3:
                    raise KeyboardInterrupt
    assert len(seen) == 3
    assert not _new_threads(before)


def test_batch_over_a_variable_shape_field_fails_in_tf_and_padded_batch_gives_the_values(url):
    # recorded from 0.12.1: the same TensorFlow error for .batch() (dataset elements of different shapes)
    with make_reader(url, schema_fields=["id", "var"], reader_pool_type="dummy", shuffle_row_groups=False) as reader:
        with pytest.raises(tf.errors.InvalidArgumentError, match="Cannot batch tensors with different shapes"):
            list(make_petastorm_dataset(reader).batch(4))
    with make_reader(url, schema_fields=["id", "var"], reader_pool_type="dummy", shuffle_row_groups=False) as reader:
        dataset = make_petastorm_dataset(reader)
        padding = type(dataset.element_spec)(id=np.int64(0), var=np.int32(-1))  # the element's namedtuple type
        batches = list(dataset.padded_batch(4, padding_values=padding))
    first = batches[0]
    assert first.id.numpy().tolist() == [0, 1, 2, 3]
    assert first.var.numpy().tolist() == [[-1, -1], [0, -1], [0, 1], [-1, -1]]  # var = arange(id % 3), padded
    assert [int(b.id.shape[0]) for b in batches] == [4] * 5
