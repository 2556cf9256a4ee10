"""``tf_tensors``: the next row (or batch, or ngram window) of a reader as TF1 graph-mode tensors.

Each ``session.run`` of the returned tensors runs a stateful ``numpy_function`` that takes the reader's next
item and converts it (:mod:`petastorm.tf_impl.convert`); the reader's end is ``tf.errors.OutOfRangeError``.
With ``shuffling_queue_capacity > 0`` the items go through a ``RandomShuffleQueue`` filled by a queue
runner (``tf.compat.v1.train.start_queue_runners`` starts it, as in the original).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from petastorm.errors import PetastormArgumentError, PetastormArgumentTypeError, PetastormReaderError
from petastorm.tf_impl import import_tensorflow
from petastorm.tf_impl.layout import ElementLayout

__all__ = ["tf_tensors"]

_EAGER_MESSAGE = (
    "tf_tensors(reader) builds graph-mode tensors for tf.compat.v1.Session, but TensorFlow is executing "
    "eagerly: use make_petastorm_dataset(reader) and iterate the dataset, or run TF1-style code "
    "(import tensorflow.compat.v1 as tf; tf.disable_v2_behavior(), or inside "
    "tf.compat.v1.Graph().as_default())")

# The original's words (0.12.1), raised as a ValueError too.
_BATCH_SHUFFLE_MESSAGE = (
    "shuffling_queue_capacity can not be used with a reader that produces batched_output, since each batch is "
    "a parquet read rowgroup. Extra shuffling of the batches does not further decrease correlation.")


def _ensure_count(name: str, value: Any) -> int:
    # a float or other non-integer: also a TypeError, as the original raised (recorded from 0.12.1:
    # shuffling_queue_capacity=10.0 gave OperatorNotAllowedInGraphError, a TypeError)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise PetastormArgumentTypeError(f"{name} must be a non-negative integer, got {value!r}")
    if value < 0:
        raise PetastormArgumentError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def tf_tensors(reader: Any, shuffling_queue_capacity: int = 0, min_after_dequeue: int = 0) -> Any:
    """See :func:`petastorm.tf_utils.tf_tensors`."""
    tf = import_tensorflow()

    capacity = _ensure_count("shuffling_queue_capacity", shuffling_queue_capacity)
    min_after = _ensure_count("min_after_dequeue", min_after_dequeue)
    if tf.executing_eagerly():
        raise PetastormReaderError(_EAGER_MESSAGE)
    layout = ElementLayout(reader, "tf_tensors")
    if capacity and layout.batched:
        raise PetastormArgumentError(_BATCH_SHUFFLE_MESSAGE)
    if capacity and min_after >= capacity:  # a TypeError too, as the original raised (recorded from 0.12.1)
        raise PetastormArgumentTypeError(
            f"min_after_dequeue ({min_after}) must be smaller than shuffling_queue_capacity ({capacity})")
    specs = layout.flat_specs()
    dtypes = [tf.as_dtype(name) for name, _ in specs]

    def next_item() -> list:
        # StopIteration at the reader's end becomes tf.errors.OutOfRangeError
        return layout.flatten(next(reader))

    flat = tf.numpy_function(next_item, [], dtypes, stateful=True, name="petastorm_next_item")
    flat = [flat] if not isinstance(flat, (list, tuple)) else list(flat)
    if capacity:
        shapes = [shape for _, shape in specs]
        fully_defined = all(None not in shape for shape in shapes)
        for tensor, shape in zip(flat, shapes):
            tensor.set_shape(shape)
        queue = tf.queue.RandomShuffleQueue(capacity, min_after, dtypes, shapes=shapes if fully_defined else None,
                                            name="petastorm_shuffling_queue")
        enqueue = queue.enqueue(flat)
        tf.compat.v1.train.add_queue_runner(tf.compat.v1.train.QueueRunner(queue, [enqueue]))
        flat = queue.dequeue()
        flat = [flat] if not isinstance(flat, (list, tuple)) else list(flat)
    for tensor, (_, shape) in zip(flat, specs):
        tensor.set_shape(shape)
    return layout.unflatten(flat)
