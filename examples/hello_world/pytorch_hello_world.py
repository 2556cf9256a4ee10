"""Read the hello-world dataset with ``petastorm.pytorch``: ``DataLoader`` over rows (the original's
example) and ``BatchedDataLoader`` over column batches. Write the dataset first
(``generate_petastorm_dataset.py``), then::

    python examples/hello_world/pytorch_hello_world.py file:///tmp/hello_world_dataset
"""
from __future__ import annotations

import sys

from petastorm import make_batch_reader, make_reader
from petastorm.pytorch import BatchedDataLoader, DataLoader


def pytorch_hello_world(dataset_url: str = "file:///tmp/hello_world_dataset") -> None:
    # Rows collated into batches of tensors: a dict of field name -> tensor of shape (batch,) + field shape.
    with DataLoader(make_reader(dataset_url), batch_size=4) as train_loader:
        sample = next(iter(train_loader))
        print(f"DataLoader: id={sample['id'].tolist()} image1={tuple(sample['image1'].shape)} "
              f"{sample['image1'].dtype}")
    # Whole columns batched at once (no per-row Python), optionally on a device: device='cuda'.
    with BatchedDataLoader(make_batch_reader(dataset_url, schema_fields=["id", "image1"]),
                           batch_size=8) as train_loader:
        sample = next(iter(train_loader))
        print(f"BatchedDataLoader: id={tuple(sample['id'].shape)} {sample['id'].dtype} "
              f"image1={tuple(sample['image1'].shape)}")


if __name__ == "__main__":
    pytorch_hello_world(*sys.argv[1:])
