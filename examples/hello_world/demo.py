"""`make demo`: write a dataset without Spark, read it back, train a PyTorch model from Parquet.

1. Writes the hello-world dataset (images as PNG, arrays as npy) with the embedded writer, prints its
   schema and row count and reads it back.
2. Writes a small MNIST-shaped synthetic dataset (``examples/mnist``) and trains the original example's
   convnet on it for a few steps with ``petastorm.pytorch.BatchedDataLoader``, printing the loss as it
   goes down, then its accuracy on the test split.

Run from the repository root: ``.venv/bin/python examples/hello_world/demo.py [output_dir] [steps]``
(about 10 s on 2 cores).
"""
from __future__ import annotations

import os
import shutil
import sys
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _HERE)
sys.path.insert(0, os.path.join(os.path.dirname(_HERE), "mnist"))

from generate_petastorm_dataset import HelloWorldSchema, generate_petastorm_dataset  # noqa: E402


def write_and_read_hello_world(output_dir: str) -> None:
    """Part 1: the hello-world dataset, written, described and read back in file order."""
    from petastorm import make_reader
    from petastorm.etl.dataset_metadata import get_schema_from_dataset_url

    if os.path.exists(output_dir):
        shutil.rmtree(output_dir)
    url = "file://" + output_dir
    start = time.perf_counter()
    generate_petastorm_dataset(url, rows_count=50)
    print(f"wrote {url} in {time.perf_counter() - start:.2f} s")

    schema = get_schema_from_dataset_url(url)
    print(f"schema: {schema}")
    assert schema == HelloWorldSchema, "stored schema differs from the one written"

    with make_reader(url, num_epochs=1, shuffle_row_groups=False, workers_count=2) as reader:
        rows = list(reader)
    print(f"read back {len(rows)} rows")
    for row in rows[:3]:
        print(f"  id={row.id} image1={row.image1.shape} {row.image1.dtype} array_4d={row.array_4d.shape}")
    assert [int(r.id) for r in rows] == list(range(len(rows))), "rows should come in file order"


def train_mnist(output_dir: str, steps: int = 200, log_interval: int = 20) -> None:
    """Part 2: a small synthetic MNIST, and ``steps`` training steps of a torch convnet over it."""
    import torch
    from generate_petastorm_mnist import generate_petastorm_mnist
    from pytorch_example import Net, evaluate, images_from_columns, train

    from petastorm import make_batch_reader
    from petastorm.pytorch import BatchedDataLoader

    torch.manual_seed(0)
    # The model is small: one thread computes a step fastest (more threads spend their time waiting on each
    # other for so little work), and the reader's workers get the other cores.
    torch.set_num_threads(1)
    url = "file://" + output_dir
    start = time.perf_counter()
    written = generate_petastorm_mnist(url, train_size=4000, test_size=1000, workers_count=1)
    print(f"wrote {written['train']} + {written['test']} MNIST-shaped rows to {url}/{{train,test}} "
          f"in {time.perf_counter() - start:.2f} s")

    device = torch.device("cpu")
    model = Net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    start = time.perf_counter()
    # num_epochs=None: the reader cycles through the rows; the loop stops after `steps` batches.
    reader = make_batch_reader(f"{url}/train", schema_fields=["image", "digit"], num_epochs=None,
                               seed=0, shuffle_rows=True, workers_count=2)
    with BatchedDataLoader(reader, batch_size=64, shuffling_queue_capacity=2000) as loader:
        losses = train(model, loader, optimizer, images_from_columns, device, steps, log_interval,
                       "train (BatchedDataLoader)")
    elapsed = time.perf_counter() - start
    with BatchedDataLoader(make_batch_reader(f"{url}/test", schema_fields=["image", "digit"], num_epochs=1,
                                             workers_count=2), batch_size=500) as loader:
        accuracy = evaluate(model, loader, images_from_columns, device)
    first = sum(losses[:log_interval]) / log_interval
    last = sum(losses[-log_interval:]) / log_interval
    print(f"trained {len(losses)} steps in {elapsed:.1f} s: loss {first:.4f} -> {last:.4f}, "
          f"test accuracy {accuracy:.3f}")
    assert last < first, "the loss should go down"


def main(output_dir: str = "demo-out/hello_world_dataset", steps: str = "200") -> None:
    output_dir = os.path.abspath(output_dir)
    write_and_read_hello_world(output_dir)
    train_mnist(os.path.join(os.path.dirname(output_dir), "mnist"), steps=int(steps))


if __name__ == "__main__":
    main(*sys.argv[1:])
