"""``make_petastorm_dataset``: a reader as a ``tf.data.Dataset`` built with ``output_signature``."""
from __future__ import annotations

from typing import Any, Iterator

from petastorm.tf_impl.layout import ElementLayout

__all__ = ["make_petastorm_dataset"]

#: Elements converted ahead of the consumer by tf.data's prefetch (batches or rows): conversion overlaps the
#: training step, and memory stays bounded.
PREFETCH = 2


def _elements(reader: Any, layout: ElementLayout) -> Iterator[Any]:
    """The generator behind the dataset: each new iteration of the dataset calls it again.

    As the original: a reader whose last row was consumed is reset, so iterating the dataset again (a
    second Keras epoch, ``dataset.repeat()``) reads the data again; a reader stopped part-way continues
    where it stopped.
    """
    if getattr(reader, "last_row_consumed", False):
        reader.reset()
    element = layout.element
    for item in reader:
        yield element(item)


def make_petastorm_dataset(reader: Any) -> Any:
    """See :func:`petastorm.tf_utils.make_petastorm_dataset`."""
    import tensorflow as tf

    layout = ElementLayout(reader)
    # tf.compat.v1.data.Dataset is the original's type (DatasetV1Adapter): a tf.data.Dataset in TF2 code
    # (eager iteration, tf.function, Keras) that also has make_one_shot_iterator() for TF1 graph code.
    dataset = tf.compat.v1.data.Dataset.from_generator(lambda: _elements(reader, layout),
                                                       output_signature=layout.signature(tf))
    return dataset.prefetch(PREFETCH)
