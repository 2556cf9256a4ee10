"""A small petastorm dataset of a scalar, a fixed-shape and a variable-shape ndarray field (a dataset of
the TensorFlow tests in tests/tf_utils/): 20 rows in 2 files."""
from __future__ import annotations

import numpy as np

from petastorm.codecs import NdarrayCodec, ScalarCodec
from petastorm.etl.writer import write_dataset
from petastorm.spark_types import spark_type
from petastorm.unischema import Unischema, UnischemaField

Simple = Unischema("Simple", [
    UnischemaField("id", np.int64, (), ScalarCodec(spark_type("LongType")), False),
    UnischemaField("v", np.float32, (3,), NdarrayCodec(), False),
    UnischemaField("var", np.int32, (None,), NdarrayCodec(), False),
])


def write_simple(path: str) -> str:
    """Write the dataset under ``path`` (a directory); return its ``file://`` URL. Row ``i``: ``id=i``,
    ``v=[i, i, i]``, ``var=arange(i % 3)``."""
    url = "file://" + path
    rows = [dict(id=i, v=np.full(3, i, np.float32), var=np.arange(i % 3, dtype=np.int32)) for i in range(20)]
    write_dataset(url, Simple, rows, workers_count=1, progress=False, rows_per_file=10, overwrite=True)
    return url
