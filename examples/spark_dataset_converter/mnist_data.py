"""The MNIST DataFrame the converter examples train on: ``label`` (long) and ``features`` (a Spark ML
``Vector`` of 784 pixel values, 0-255), as the original examples read it from the LIBSVM copy of MNIST.

- ``libsvm_path`` given: the real MNIST in LIBSVM format (``mnist.bz2`` from the LIBSVM data sets page,
  downloaded by you; Spark reads ``.bz2`` as it is), read with ``spark.read.format('libsvm')`` as the
  original did;
- otherwise: synthetic digits, drawn by ``examples/mnist/generate_petastorm_mnist.py``'s
  :func:`render_digits` (nothing is downloaded) in the Spark tasks (``mapInPandas``), made ``Vector``
  columns with ``pyspark.ml.functions.array_to_vector``.

Either way the converter turns ``features`` back into a float32 array column (``vector_to_array``), so a
loader batch holds ``features`` float32 ``(batch, 784)`` and ``label`` int64 ``(batch,)``.
"""
from __future__ import annotations

import importlib.util
import os
from typing import Any, Iterator, Optional, Tuple

import numpy as np

__all__ = ["PIXELS", "mnist_dataframe", "synthetic_mnist_dataframe", "libsvm_mnist_dataframe", "split",
           "mnist_example"]

PIXELS = 28 * 28
_MNIST_EXAMPLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "mnist")


def mnist_example(name: str) -> Any:
    """The module of ``examples/mnist/<name>.py`` (loaded from its file: ``examples/`` is no package)."""
    spec = importlib.util.spec_from_file_location(f"_petastorm_mnist_{name}", os.path.join(_MNIST_EXAMPLES,
                                                                                           f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def _render_digits() -> Any:
    """``render_digits`` of ``examples/mnist/generate_petastorm_mnist.py`` (the same synthetic digits)."""
    return mnist_example("generate_petastorm_mnist").render_digits


def synthetic_mnist_dataframe(spark: Any, rows: int, seed: int = 0, partitions: int = 2) -> Any:
    """``rows`` synthetic digits as a DataFrame of ``label`` (long) and ``features`` (``Vector``, 784 values
    0-255), drawn on the executors (``mapInPandas`` over ``spark.range``); the same seed, the same rows."""
    from pyspark.ml.functions import array_to_vector

    render_digits = _render_digits()

    def draw(batches: Iterator[Any]) -> Iterator[Any]:
        import pandas as pd

        for ids in batches:
            first = int(ids["id"].iloc[0]) if len(ids) else 0
            rng = np.random.default_rng((seed, first))
            labels = rng.integers(0, 10, len(ids))
            images = render_digits(labels, rng).reshape(len(ids), PIXELS).astype(np.float32)
            yield pd.DataFrame({"label": labels.astype(np.int64), "pixels": list(images)})

    pixels = spark.range(0, rows, numPartitions=max(1, partitions)).mapInPandas(draw, "label long, pixels array<float>")
    return pixels.select("label", array_to_vector("pixels").alias("features"))


def libsvm_mnist_dataframe(spark: Any, path: str) -> Any:
    """The LIBSVM MNIST file at ``path`` as a DataFrame of ``label`` (long) and ``features`` (``Vector``)."""
    from pyspark.sql.functions import col

    df = spark.read.format("libsvm").option("numFeatures", str(PIXELS)).load(path)
    return df.select(col("label").cast("long").alias("label"), col("features"))


def mnist_dataframe(spark: Any, libsvm_path: Optional[str], rows: int, seed: int = 0) -> Any:
    """The real MNIST when ``libsvm_path`` is given, else ``rows`` synthetic digits."""
    if libsvm_path:
        return libsvm_mnist_dataframe(spark, libsvm_path)
    return synthetic_mnist_dataframe(spark, rows, seed)


def split(df: Any, partitions: int, seed: int = 0) -> Tuple[Any, Any]:
    """``(train, test)``: 90% / 10% of the rows (``randomSplit``, as the original), the train part in
    ``partitions`` partitions (the number of cached Parquet files)."""
    train, test = df.randomSplit([0.9, 0.1], seed=seed)
    return train.repartition(partitions), test
