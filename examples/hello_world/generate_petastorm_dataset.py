"""Write the hello-world Petastorm dataset with the embedded writer: no Spark, no JVM.

Each row has an ``id``, a 128x256 RGB image stored as PNG and a 4-D uint8 array whose first and last
dimensions may vary (stored as ``.npy`` bytes). Run it as a script::

    python examples/hello_world/generate_petastorm_dataset.py file:///tmp/hello_world_dataset 100
"""
from __future__ import annotations

import sys

import numpy as np

from petastorm.codecs import CompressedImageCodec, NdarrayCodec, ScalarCodec
from petastorm.etl.writer import WriteResult, write_dataset
from petastorm.spark_types import spark_type
from petastorm.unischema import Unischema, UnischemaField

__all__ = ["HelloWorldSchema", "row_generator", "generate_petastorm_dataset"]

# The schema of the dataset: name, numpy type, shape (None = any length), codec, nullable.
HelloWorldSchema = Unischema("HelloWorldSchema", [
    UnischemaField("id", np.int32, (), ScalarCodec(spark_type("IntegerType")), False),
    UnischemaField("image1", np.uint8, (128, 256, 3), CompressedImageCodec("png"), False),
    UnischemaField("array_4d", np.uint8, (None, 128, 30, None), NdarrayCodec(), False),
])


def row_generator(x: int) -> dict:
    """One row of random data; the same ``x`` always gives the same row."""
    rng = np.random.default_rng(x)
    return {"id": x,
            "image1": rng.integers(0, 255, dtype=np.uint8, size=(128, 256, 3)),
            "array_4d": rng.integers(0, 255, dtype=np.uint8, size=(4, 128, 30, 3))}


def generate_petastorm_dataset(output_url: str = "file:///tmp/hello_world_dataset", rows_count: int = 10,
                               row_group_size_mb: float = 256, workers_count: int | None = None,
                               overwrite: bool = True, progress: bool = False) -> WriteResult:
    """Write ``rows_count`` hello-world rows to ``output_url`` (replacing what is there when ``overwrite``).

    Returns
    -------
    petastorm.etl.writer.WriteResult
        The files written and their row groups.
    """
    rows = (row_generator(i) for i in range(rows_count))
    return write_dataset(output_url, HelloWorldSchema, rows, row_group_size_mb=row_group_size_mb,
                         workers_count=workers_count, overwrite=overwrite, progress=progress)


if __name__ == "__main__":  # the guard matters: encoding processes import this module
    url = sys.argv[1] if len(sys.argv) > 1 else "file:///tmp/hello_world_dataset"
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    result = generate_petastorm_dataset(url, count, progress=True)
    print(f"wrote {result.num_rows} rows in {len(result.files)} file(s) to {url}")
