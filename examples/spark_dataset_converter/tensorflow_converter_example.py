"""Train a small Keras convnet straight from a Spark DataFrame with ``make_spark_converter``.

The converter caches the DataFrame as Parquet under the ``petastorm.spark.converter.parentCacheDirUrl``
directory (once per DataFrame), and ``converter.make_tf_dataset()`` reads the cache back as a
``tf.data.Dataset`` of namedtuples of batched tensors: ``features`` float32 ``(batch, 784)`` and ``label``
int64 ``(batch,)``. A ``.map`` turns them into ``(x, y)`` for ``model.fit``. The data is MNIST as the
original example read it (a ``Vector`` column of pixels and a label; see ``mnist_data.py``)::

    python examples/spark_dataset_converter/tensorflow_converter_example.py              # synthetic digits
    python examples/spark_dataset_converter/tensorflow_converter_example.py --rows 3000 --steps 40
    python examples/spark_dataset_converter/tensorflow_converter_example.py --libsvm-path /data/mnist.bz2

``main(argv, spark)`` runs it with a session of yours (e.g. in a notebook); otherwise it makes a local one
(``--master``, default ``local[2]``) and stops it at the end.
"""
from __future__ import annotations

import os
import sys
import warnings
from typing import Any, Dict, List, Optional

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter out of the output

import tensorflow as tf  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from converter_run import converter_parser, mnist_converters  # noqa: E402
from mnist_data import mnist_example  # noqa: E402

__all__ = ["make_model", "to_xy", "main"]


def make_model() -> tf.keras.Model:
    """``examples/mnist/tf_example.py``'s small convnet behind a rescale of the flat pixels: pixels float32
    (batch, 784), 0-255 -> 10 logits."""
    return tf.keras.Sequential([
        tf.keras.Input(shape=(784,)),
        tf.keras.layers.Rescaling(1.0 / 255),
        tf.keras.layers.Reshape((28, 28)),
        mnist_example("tf_example").make_model(),
    ])


def to_xy(batch: tuple) -> tuple:
    """A converter batch (a namedtuple of tensors) -> ``(features (batch, 784), label (batch,))``."""
    return batch.features, batch.label


def main(argv: Optional[List[str]] = None, spark: Any = None) -> Dict[str, Any]:
    """Run the example; return ``{'losses', 'accuracy', 'train_rows', 'test_rows'}`` (``losses``: the mean
    loss of each Keras epoch of ``--log-interval`` steps)."""
    args = converter_parser("Petastorm Spark converter example: TensorFlow / Keras",
                            "file:///tmp/petastorm/cache/tf-example",
                            "steps per Keras epoch, whose mean loss is printed").parse_args(argv)
    tf.keras.utils.set_random_seed(args.seed)
    with mnist_converters(args, spark, "petastorm-tf-converter-example") as (converter_train, converter_test):
        model = make_model()
        model.compile(optimizer=tf.keras.optimizers.Adam(args.lr),
                      loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
        interval = min(args.log_interval, args.steps)
        # num_epochs=None: the dataset repeats forever; Keras takes `interval` batches per (short) epoch
        with converter_train.make_tf_dataset(batch_size=args.batch_size, num_epochs=None,
                                             shuffling_queue_capacity=1000, seed=args.seed) as dataset:
            history = model.fit(dataset.map(to_xy), epochs=max(1, args.steps // interval),
                                steps_per_epoch=interval, shuffle=False, verbose=0)
        with converter_test.make_tf_dataset(batch_size=1000, num_epochs=1) as dataset:
            with warnings.catch_warnings():
                # Keras 3 warns "Your input ran out of data" at the end of a dataset of unknown length
                warnings.filterwarnings("ignore", message="Your input ran out of data")
                _, accuracy = model.evaluate(dataset.map(to_xy), verbose=0)
    losses = [float(v) for v in history.history["loss"]]
    for i, loss in enumerate(losses, 1):
        print(f"keras: steps {(i - 1) * interval + 1}-{i * interval} loss {loss:.4f}", flush=True)
    print(f"keras: {len(losses) * interval} steps, loss {losses[0]:.4f} -> {losses[-1]:.4f} "
          f"(mean of the first and last {interval}), test accuracy {accuracy:.3f}", flush=True)
    return {"losses": losses, "accuracy": float(accuracy), "train_rows": len(converter_train),
            "test_rows": len(converter_test)}


if __name__ == "__main__":
    main()
