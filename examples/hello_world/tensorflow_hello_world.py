"""Read the hello-world dataset with ``petastorm.tf_utils``.

TensorFlow 2 (eager, the default): ``make_petastorm_dataset(reader)`` is a ``tf.data.Dataset`` of
namedtuples of tensors. With ``--tf1``, the original example's TensorFlow 1 code runs unchanged through
``tf.compat.v1``: ``tf_tensors(reader)`` and ``make_petastorm_dataset(reader).make_one_shot_iterator()``
evaluated in a ``tf.Session``. Write the dataset first (``generate_petastorm_dataset.py``), then::

    python examples/hello_world/tensorflow_hello_world.py file:///tmp/hello_world_dataset
    python examples/hello_world/tensorflow_hello_world.py file:///tmp/hello_world_dataset --tf1
"""
from __future__ import annotations

import sys

from petastorm import make_reader
from petastorm.tf_utils import make_petastorm_dataset, tf_tensors


def tensorflow_hello_world(dataset_url: str = "file:///tmp/hello_world_dataset") -> None:
    """TensorFlow 2: iterate the dataset eagerly, batch it with tf.data."""
    with make_reader(dataset_url) as reader:
        dataset = make_petastorm_dataset(reader)
        for sample in dataset.batch(4).take(1):
            print(f"tf.data: id={sample.id.numpy().tolist()} image1={tuple(sample.image1.shape)} "
                  f"{sample.image1.dtype.name}")


def tensorflow1_hello_world(dataset_url: str = "file:///tmp/hello_world_dataset") -> None:
    """The original example, TensorFlow 1 style, run through ``tf.compat.v1`` with v2 behaviour off."""
    import tensorflow.compat.v1 as tf
    tf.disable_v2_behavior()

    # Example: tf_tensors will return tensors with dataset data
    with make_reader(dataset_url) as reader:
        tensor = tf_tensors(reader)
        with tf.Session() as sess:
            sample = sess.run(tensor)
            print(f"tf_tensors: id={sample.id}")

    # Example: use tf.data.Dataset API
    with make_reader(dataset_url) as reader:
        dataset = make_petastorm_dataset(reader)
        iterator = dataset.make_one_shot_iterator()
        tensor = iterator.get_next()
        with tf.Session() as sess:
            sample = sess.run(tensor)
            print(f"make_one_shot_iterator: id={sample.id}")


if __name__ == "__main__":
    argv = [a for a in sys.argv[1:] if a != "--tf1"]
    if "--tf1" in sys.argv[1:]:
        tensorflow1_hello_world(*argv)
    else:
        tensorflow_hello_world(*argv)
