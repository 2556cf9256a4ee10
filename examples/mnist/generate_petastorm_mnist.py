"""Write an MNIST-shaped synthetic dataset as Petastorm: nothing is downloaded, no Spark.

The original example downloaded MNIST and wrote it with Spark. This one draws the digits itself: each
image is a 28x28 uint8 "seven-segment" digit, placed, sized and stroked at random, on a noisy background,
so that a small model learns to tell them apart in a few hundred steps, as it would on MNIST.

The fields are the original example's: ``idx`` (row number), ``digit`` (the label, 0-9) and ``image``
(uint8, shape (28, 28), stored as npy bytes). Two datasets are written, ``<output_url>/train`` and
``<output_url>/test``, as the original did. Run it as a script::

    python examples/mnist/generate_petastorm_mnist.py --output-url file:///tmp/mnist
    python examples/mnist/generate_petastorm_mnist.py --output-url file:///tmp/mnist_small \\
        --train-size 2000 --test-size 500
"""
from __future__ import annotations

import argparse
from typing import Dict, Iterator

import numpy as np

from petastorm.codecs import NdarrayCodec, ScalarCodec
from petastorm.etl.writer import write_dataset
from petastorm.spark_types import spark_type
from petastorm.unischema import Unischema, UnischemaField

__all__ = ["MnistSchema", "IMAGE_SIZE", "render_digits", "mnist_rows", "generate_petastorm_mnist"]

IMAGE_SIZE = 28

MnistSchema = Unischema("MnistSchema", [
    UnischemaField("idx", np.int64, (), ScalarCodec(spark_type("LongType")), False),
    UnischemaField("digit", np.int64, (), ScalarCodec(spark_type("LongType")), False),
    UnischemaField("image", np.uint8, (IMAGE_SIZE, IMAGE_SIZE), NdarrayCodec(), False),
])

# Segments lit for each digit: a top, b upper right, c lower right, d bottom, e lower left, f upper left,
# g middle.
_SEGMENTS = "abcdefg"
_LIT = ["abcdef", "bc", "abdeg", "abcdg", "bcfg", "acdfg", "acdefg", "abc", "abcdefg", "abcdfg"]
_LIT_MASK = np.array([[s in lit for s in _SEGMENTS] for lit in _LIT])  # (10, 7) bool


def render_digits(digits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draw ``digits`` as seven-segment images with random placement, size, stroke and noise.

    Parameters
    ----------
    digits : np.ndarray, shape (n,), integer in [0, 9]
        The label of each image.
    rng : np.random.Generator
        Source of the random placement and noise.

    Returns
    -------
    np.ndarray, shape (n, 28, 28), uint8
        Dark background (noise around 20), digit strokes around 200-255.
    """
    n = len(digits)
    w = rng.integers(10, 17, n)                      # box width, pixels
    h = rng.integers(16, 23, n)                      # box height, pixels
    t = rng.integers(2, 4, n)                        # stroke thickness, pixels
    x0 = rng.integers(2, IMAGE_SIZE - 1 - w)         # left edge: the box stays inside the image
    y0 = rng.integers(2, IMAGE_SIZE - 1 - h)         # top edge
    mid = y0 + h // 2
    # Each segment as a rectangle [top, bottom) x [left, right), per image: 7 arrays of shape (4, n).
    rects = {
        "a": (y0, y0 + t, x0, x0 + w),
        "g": (mid - t // 2, mid - t // 2 + t, x0, x0 + w),
        "d": (y0 + h - t, y0 + h, x0, x0 + w),
        "f": (y0, mid + 1, x0, x0 + t),
        "b": (y0, mid + 1, x0 + w - t, x0 + w),
        "e": (mid, y0 + h, x0, x0 + t),
        "c": (mid, y0 + h, x0 + w - t, x0 + w),
    }
    yy = np.arange(IMAGE_SIZE)[None, :, None]
    xx = np.arange(IMAGE_SIZE)[None, None, :]
    lit = _LIT_MASK[np.asarray(digits)]              # (n, 7)
    strokes = np.zeros((n, IMAGE_SIZE, IMAGE_SIZE), dtype=bool)
    for k, name in enumerate(_SEGMENTS):
        top, bottom, left, right = (v[:, None, None] for v in rects[name])
        inside = (yy >= top) & (yy < bottom) & (xx >= left) & (xx < right)
        strokes |= inside & lit[:, k, None, None]
    ink = rng.integers(180, 256, (n, 1, 1))
    image = np.where(strokes, ink, 0) + rng.normal(20, 25, (n, IMAGE_SIZE, IMAGE_SIZE))
    return np.clip(image, 0, 255).astype(np.uint8)


def mnist_rows(count: int, seed: int, chunk: int = 4096) -> Iterator[Dict[str, object]]:
    """``count`` rows of the dataset (dicts of ``idx``, ``digit``, ``image``); the same seed, the same rows."""
    rng = np.random.default_rng(seed)
    for start in range(0, count, chunk):
        n = min(chunk, count - start)
        digits = rng.integers(0, 10, n)
        images = render_digits(digits, rng)
        for i in range(n):
            yield {"idx": start + i, "digit": int(digits[i]), "image": images[i]}


def generate_petastorm_mnist(output_url: str = "file:///tmp/mnist", train_size: int = 60_000,
                             test_size: int = 10_000, seed: int = 0, row_group_size_mb: float = 4,
                             workers_count: int | None = None, progress: bool = False) -> Dict[str, int]:
    """Write ``<output_url>/train`` and ``<output_url>/test`` (replacing what is there).

    Parameters
    ----------
    output_url : str
        Parent directory URL of the two datasets.
    train_size, test_size : int
        Rows in each dataset (MNIST has 60,000 and 10,000).
    seed : int
        The same seed writes the same images.
    row_group_size_mb : float
        Row group size, MiB (a row is ~0.9 KiB: 4 MiB is ~4,500 rows).
    workers_count : int, optional
        Encoding processes (None: one per CPU; 1: in this process).

    Returns
    -------
    dict
        Rows written per dataset: ``{'train': ..., 'test': ...}``.
    """
    written = {}
    for offset, (name, size) in enumerate((("train", train_size), ("test", test_size))):
        result = write_dataset(f"{output_url.rstrip('/')}/{name}", MnistSchema, mnist_rows(size, seed + offset),
                               row_group_size_mb=row_group_size_mb, workers_count=workers_count,
                               overwrite=True, progress=progress)
        written[name] = result.num_rows
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output-url", default="file:///tmp/mnist",
                        help="parent URL of the train and test datasets (default: %(default)s)")
    parser.add_argument("--train-size", type=int, default=60_000, help="rows in train (default: %(default)s)")
    parser.add_argument("--test-size", type=int, default=10_000, help="rows in test (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    parser.add_argument("--row-group-size-mb", type=float, default=4, help="row group size (default: %(default)s)")
    parser.add_argument("--workers-count", type=int, default=None,
                        help="encoding processes (default: one per CPU; 1: in this process)")
    args = parser.parse_args()
    written = generate_petastorm_mnist(args.output_url, args.train_size, args.test_size, args.seed,
                                       args.row_group_size_mb, args.workers_count, progress=True)
    for name, rows in written.items():
        print(f"wrote {rows} rows to {args.output_url.rstrip('/')}/{name}")


if __name__ == "__main__":  # the guard matters: encoding processes import this module
    main()
