"""Read the hello-world dataset with ``petastorm.jax``: batches of ``jax.Array``, put on the default
device ahead of use. Write the dataset first (``generate_petastorm_dataset.py``), then::

    python examples/hello_world/jax_hello_world.py file:///tmp/hello_world_dataset
"""
from __future__ import annotations

import sys

from petastorm import make_batch_reader
from petastorm.jax import make_jax_iterator


def jax_hello_world(dataset_url: str = "file:///tmp/hello_world_dataset") -> None:
    # array_4d is left out: JAX holds fixed-shape numbers only, and its first dimension may vary.
    # Leaving the iterator's `with` stops its prefetch thread and the reader.
    with make_batch_reader(dataset_url, schema_fields=["id", "image1"]) as reader, \
            make_jax_iterator(reader, batch_size=8) as batches:
        batch = next(batches)
        image = batch["image1"]
        print(f"jax: id={batch['id'].tolist()} image1={image.shape} {image.dtype} "
              f"on {sorted(str(d) for d in image.devices())} mean={float(image.mean()):.1f}")


if __name__ == "__main__":
    jax_hello_world(*sys.argv[1:])
