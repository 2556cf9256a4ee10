"""Inputs shared by the make_jax_iterator tests and their torch-parity twins: a big-endian dataset and a buggy
transform_fn."""
import numpy as np


def write_big_endian_dataset(path: str) -> str:
    """12 rows of a field declared big-endian (``>f4``, as arrays from FITS files are): ``v`` = [i, i, i];
    row groups of 6 rows. Returns the dataset URL."""
    from _fixtures.datasets import write_synthetic_dataset

    from petastorm.codecs import NdarrayCodec, ScalarCodec
    from petastorm.spark_types import spark_type
    from petastorm.unischema import Unischema, UnischemaField

    schema = Unischema("BigEndian", [
        UnischemaField("id", np.int32, (), ScalarCodec(spark_type("IntegerType")), False),
        UnischemaField("v", np.dtype(">f4"), (3,), NdarrayCodec(), False),
    ])
    return write_synthetic_dataset(path, rows=12, rows_per_group=6, schema=schema,
                                   row_fn=lambda i: {"id": i, "v": np.full(3, i, ">f4")})


class StopsOnSecondBatch:
    """A transform_fn with a common bug: a ``next()`` on an exhausted iterator inside it (StopIteration on its
    second call)."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, batch):
        self.calls += 1
        if self.calls == 2:
            next(iter([]))
        return batch
