"""Read the hello-world dataset with plain Python: rows with ``make_reader``, column batches with
``make_batch_reader``. Write the dataset first (``generate_petastorm_dataset.py``), then::

    python examples/hello_world/python_hello_world.py file:///tmp/hello_world_dataset
"""
from __future__ import annotations

import sys

from petastorm import make_batch_reader, make_reader


def python_hello_world(dataset_url: str = "file:///tmp/hello_world_dataset") -> None:
    # Rows: one namedtuple per row, every field decoded to numpy (the PNG image, the npy array).
    with make_reader(dataset_url) as reader:
        for sample in reader:
            print(f"row: id={sample.id} image1={sample.image1.shape} {sample.image1.dtype} "
                  f"array_4d={sample.array_4d.shape}")
            break
    # Batches: one namedtuple per row group, each field a numpy column of shape (rows,) + field shape.
    with make_batch_reader(dataset_url) as reader:
        for batch in reader:
            print(f"batch: id={batch.id.shape} {batch.id.dtype} image1={batch.image1.shape} "
                  f"array_4d={batch.array_4d.shape}")
            break


if __name__ == "__main__":
    python_hello_world(*sys.argv[1:])
