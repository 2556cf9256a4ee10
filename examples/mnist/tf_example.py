"""Train a Keras model on the Petastorm MNIST dataset with ``make_petastorm_dataset`` and ``model.fit``.

``make_petastorm_dataset(reader)`` is a ``tf.data.Dataset`` of namedtuples of tensors (one per row for
``make_reader``); a ``.map`` turns each into ``(x, y)`` for Keras, ``.batch`` batches them. Write the
dataset first (``generate_petastorm_mnist.py``), then::

    python examples/mnist/tf_example.py --dataset-url file:///tmp/mnist
    python examples/mnist/tf_example.py --dataset-url file:///tmp/mnist --steps 50   # a quick look
"""
from __future__ import annotations

import argparse
import os
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter out of the output

import tensorflow as tf  # noqa: E402

from petastorm import make_reader  # noqa: E402
from petastorm.tf_utils import make_petastorm_dataset  # noqa: E402

__all__ = ["make_model", "to_xy", "main"]

MEAN, STD = 0.1307, 0.3081


def make_model() -> tf.keras.Model:
    """A small convnet: (28, 28) uint8-valued float images -> 10 logits."""
    return tf.keras.Sequential([
        tf.keras.Input(shape=(28, 28)),
        tf.keras.layers.Reshape((28, 28, 1)),
        tf.keras.layers.Conv2D(16, 5, activation="relu"),
        tf.keras.layers.MaxPooling2D(),
        tf.keras.layers.Conv2D(32, 5, activation="relu"),
        tf.keras.layers.MaxPooling2D(),
        tf.keras.layers.Flatten(),
        tf.keras.layers.Dense(64, activation="relu"),
        tf.keras.layers.Dense(10),
    ])


def to_xy(row: tuple) -> tuple:
    """A row of the dataset (a namedtuple of tensors) -> ``(normalised image float32 (28, 28), digit int64)``."""
    image = (tf.cast(row.image, tf.float32) / 255.0 - MEAN) / STD
    return image, row.digit


def main() -> None:
    parser = argparse.ArgumentParser(description="Petastorm MNIST example: TensorFlow / Keras")
    parser.add_argument("--dataset-url", default="file:///tmp/mnist",
                        help="parent URL of the train and test datasets (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=64, help="batch size (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=900,
                        help="training steps (default: %(default)s, about one MNIST epoch)")
    parser.add_argument("--log-interval", type=int, default=100,
                        help="steps per Keras epoch, whose mean loss is printed (default: %(default)s)")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default: %(default)s)")
    parser.add_argument("--shuffle", type=int, default=1000,
                        help="tf.data shuffle buffer in rows, 0 for none (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    args = parser.parse_args()
    tf.keras.utils.set_random_seed(args.seed)

    model = make_model()
    model.compile(optimizer=tf.keras.optimizers.Adam(args.lr),
                  loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])

    # num_epochs=None: the reader cycles through the dataset forever, and Keras takes `steps_per_epoch`
    # batches per (short) Keras epoch; its mean loss is printed at the end of each one.
    interval = min(args.log_interval, args.steps)
    with make_reader(f"{args.dataset_url}/train", num_epochs=None, seed=args.seed, shuffle_rows=True,
                     schema_fields=["image", "digit"], workers_count=2) as reader:
        train = make_petastorm_dataset(reader).map(to_xy)
        if args.shuffle:
            train = train.shuffle(args.shuffle, seed=args.seed)
        train = train.batch(args.batch_size).prefetch(2)
        # shuffle=False: tf.data shuffles (above); Keras' own shuffle flag does not apply to datasets.
        history = model.fit(train, epochs=max(1, args.steps // interval), steps_per_epoch=interval, shuffle=False,
                            verbose=0)
    losses = history.history["loss"]
    for i, loss in enumerate(losses, 1):
        print(f"keras: steps {(i - 1) * interval + 1}-{i * interval} loss {loss:.4f}", flush=True)

    with make_reader(f"{args.dataset_url}/test", num_epochs=1, schema_fields=["image", "digit"],
                     workers_count=2) as reader:
        test = make_petastorm_dataset(reader).map(to_xy).batch(1000)
        with warnings.catch_warnings():
            # Keras 3 warns "Your input ran out of data" at the end of any dataset of unknown length
            # (tf.data cannot know a reader's): evaluate is meant to read to the end.
            warnings.filterwarnings("ignore", message="Your input ran out of data")
            _, test_accuracy = model.evaluate(test, verbose=0)
    print(f"keras: {len(losses) * interval} steps, loss {losses[0]:.4f} -> {losses[-1]:.4f} "
          f"(mean of the first and last {interval}), test accuracy {test_accuracy:.3f}", flush=True)


if __name__ == "__main__":
    main()
