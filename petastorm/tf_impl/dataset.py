"""``make_petastorm_dataset``: a reader as a ``tf.data.Dataset`` whose element spec comes from the Unischema.

The pipeline is ``range(∞).map(numpy_function(next item)).prefetch(2)``, a ``tf.compat.v1.data.Dataset``:

- one traced function (``tf.data.Dataset.from_generator`` traces four), so building the dataset and each
  iterator costs less, and a batch costs one ``numpy_function`` call (about half of ``from_generator``'s
  per-element cost for 20 columns of 131,072 rows);
- the element counter tells the item source when an iterator starts (position 0), which gives
  ``from_generator``'s semantics: a new iteration resets a reader whose last row was consumed;
- the reader's end (``StopIteration``) ends the sequence: the v1 ``map`` treats the function's
  ``OutOfRangeError`` as the end of input;
- ``prefetch`` converts the next elements while the model uses the current one (memory bounded).
"""
from __future__ import annotations

import threading
from typing import Any, List

import numpy as np

from petastorm.tf_impl import import_tensorflow
from petastorm.tf_impl.layout import ElementLayout

__all__ = ["make_petastorm_dataset", "ItemSource"]

#: Elements converted ahead of the consumer (rows or batches).
PREFETCH = 2

_ENDLESS = 2 ** 62


class ItemSource:
    """The reader's items as flat lists of arrays, for a ``numpy_function``.

    ``next_flat(position)`` is called with the element's position in its iteration (0, 1, 2, ... for each new
    iterator). At position 0 a reader whose last row was consumed is reset (another pass, as the original's
    ``make_petastorm_dataset``); a reader stopped part-way continues. Once the reader ends, the iteration keeps
    ending (``StopIteration``) until a new iteration starts.
    """

    def __init__(self, reader: Any, layout: ElementLayout) -> None:
        self._reader = reader
        self._flatten = layout.flatten
        self._ended = False
        self._lock = threading.Lock()

    def next_flat(self, position: Any) -> List[np.ndarray]:
        with self._lock:
            if int(position) == 0:
                self._ended = False
                if getattr(self._reader, "last_row_consumed", False):
                    self._reader.reset()
            elif self._ended:
                raise StopIteration
            try:
                item = next(self._reader)
            except StopIteration:
                self._ended = True
                raise
        return self._flatten(item)


def make_petastorm_dataset(reader: Any) -> Any:
    """See :func:`petastorm.tf_utils.make_petastorm_dataset`."""
    tf = import_tensorflow()

    layout = ElementLayout(reader)
    specs = layout.flat_specs()
    dtypes = [tf.as_dtype(name) for name, _ in specs]
    source = ItemSource(reader, layout)

    def element(position: Any) -> Any:
        flat = tf.numpy_function(source.next_flat, [position], dtypes, stateful=True, name="petastorm_next")
        flat = list(flat) if isinstance(flat, (list, tuple)) else [flat]
        for tensor, (_, shape) in zip(flat, specs):
            tensor.set_shape(shape)
        return layout.unflatten(flat)

    # tf.compat.v1.data.Dataset is the original's type (DatasetV1Adapter): a tf.data.Dataset for TF2 code (eager
    # iteration, tf.function, Keras) that also has make_one_shot_iterator() for TF1 graph code; its map ends
    # the sequence on the function's OutOfRangeError (the reader's StopIteration).
    dataset = tf.compat.v1.data.Dataset.range(_ENDLESS).map(element)
    return dataset.prefetch(PREFETCH)
