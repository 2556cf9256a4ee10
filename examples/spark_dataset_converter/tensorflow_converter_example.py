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

import argparse
import os
import sys
import warnings
from typing import Any, Dict, List, Optional

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter out of the output

import tensorflow as tf  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mnist_data import mnist_dataframe, split  # noqa: E402

from petastorm.spark import SparkDatasetConverter, make_spark_converter  # noqa: E402

__all__ = ["make_model", "to_xy", "main"]


def make_model() -> tf.keras.Model:
    """A small convnet: pixels float32 (batch, 784), 0-255 -> 10 logits."""
    return tf.keras.Sequential([
        tf.keras.Input(shape=(784,)),
        tf.keras.layers.Rescaling(1.0 / 255),
        tf.keras.layers.Reshape((28, 28, 1)),
        tf.keras.layers.Conv2D(16, 5, activation="relu"),
        tf.keras.layers.MaxPooling2D(),
        tf.keras.layers.Conv2D(32, 5, activation="relu"),
        tf.keras.layers.MaxPooling2D(),
        tf.keras.layers.Flatten(),
        tf.keras.layers.Dense(64, activation="relu"),
        tf.keras.layers.Dense(10),
    ])


def to_xy(batch: tuple) -> tuple:
    """A converter batch (a namedtuple of tensors) -> ``(features (batch, 784), label (batch,))``."""
    return batch.features, batch.label


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Petastorm Spark converter example: TensorFlow / Keras")
    parser.add_argument("--libsvm-path", default=None,
                        help="MNIST in LIBSVM format (mnist.bz2); synthetic digits when not given")
    parser.add_argument("--rows", type=int, default=60_000,
                        help="synthetic rows, 90%% train and 10%% test (default: %(default)s)")
    parser.add_argument("--cache-dir-url", default="file:///tmp/petastorm/cache/tf-example",
                        help="parent directory of the converter's cache (default: %(default)s)")
    parser.add_argument("--partitions", type=int, default=2, help="cached train files (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=64, help="batch size (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=800, help="training steps (default: %(default)s)")
    parser.add_argument("--log-interval", type=int, default=100,
                        help="steps per Keras epoch, whose mean loss is printed (default: %(default)s)")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default: %(default)s)")
    parser.add_argument("--master", default="local[2]", help="Spark master of the session made here")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    return parser


def main(argv: Optional[List[str]] = None, spark: Any = None) -> Dict[str, Any]:
    """Run the example; return ``{'losses', 'accuracy', 'train_rows', 'test_rows'}`` (``losses``: the mean
    loss of each Keras epoch of ``--log-interval`` steps)."""
    args = _parser().parse_args(argv)
    tf.keras.utils.set_random_seed(args.seed)
    own_session = spark is None
    if own_session:
        from pyspark.sql import SparkSession

        # Spark's Python workers run this interpreter (where petastorm is installed), not the python3 on PATH
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        spark = (SparkSession.builder.master(args.master).appName("petastorm-tf-converter-example")
                 .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
                 .getOrCreate())
    try:
        spark.conf.set(SparkDatasetConverter.PARENT_CACHE_DIR_URL_CONF, args.cache_dir_url)
        df_train, df_test = split(mnist_dataframe(spark, args.libsvm_path, args.rows, args.seed), args.partitions,
                                  args.seed)
        converter_train = make_spark_converter(df_train)
        converter_test = make_spark_converter(df_test)
        print(f"converter: {len(converter_train)} train rows, {len(converter_test)} test rows, "
              f"cached in {converter_train.cache_dir_url}", flush=True)
        model = make_model()
        model.compile(optimizer=tf.keras.optimizers.Adam(args.lr),
                      loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
        interval = min(args.log_interval, args.steps)
        try:
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
        finally:
            converter_train.delete()
            converter_test.delete()
    finally:
        if own_session:
            spark.stop()
    losses = [float(v) for v in history.history["loss"]]
    for i, loss in enumerate(losses, 1):
        print(f"keras: steps {(i - 1) * interval + 1}-{i * interval} loss {loss:.4f}", flush=True)
    print(f"keras: {len(losses) * interval} steps, loss {losses[0]:.4f} -> {losses[-1]:.4f} "
          f"(mean of the first and last {interval}), test accuracy {accuracy:.3f}", flush=True)
    return {"losses": losses, "accuracy": float(accuracy), "train_rows": len(converter_train),
            "test_rows": len(converter_test)}


if __name__ == "__main__":
    main()
