"""``make_petastorm_dataset``: a reader as a ``tf.data.Dataset`` whose element spec comes from the Unischema.

The pipeline is ``range(∞).map(numpy_function(next item)).prefetch(2)``, a ``tf.compat.v1.data.Dataset``:

- one traced function (``tf.data.Dataset.from_generator`` traces four), so building the dataset and each
  iterator costs less, and a batch costs one ``numpy_function`` call (about half of ``from_generator``'s
  per-element cost for 20 columns of 131,072 rows);
- the element counter tells the item source when an iterator starts (position 0), which gives
  ``from_generator``'s semantics: a new iteration resets a reader whose last row was consumed; a new
  iteration that finds the reader at its end (its last rows went to an abandoned iterator's prefetch
  buffer) starts another pass too, instead of an empty one;
- the reader's end (``StopIteration``) ends the sequence of the iterator that met it: the v1 ``map`` treats
  the function's ``OutOfRangeError`` as the end of its input and does not call the function again. No state
  of ours marks an iterator as ended, so the late call of an iterator left by a ``break`` (its prefetch may
  still run when a new iteration starts) cannot end the new one (iterators alive at the same time share the
  reader's rows, as in the original);
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
    ``make_petastorm_dataset``); a reader stopped part-way continues, and one found at its end is reset.
    """

    def __init__(self, reader: Any, layout: ElementLayout) -> None:
        self._reader = reader
        self._flatten = layout.flatten
        self._lock = threading.Lock()

    def _reset(self) -> bool:
        try:
            self._reader.reset()
        except (AttributeError, NotImplementedError):  # a reader without passes (num_epochs=None, a mock)
            return False
        return True

    def next_flat(self, position: Any) -> List[np.ndarray]:
        first = int(position) == 0
        with self._lock:
            if first and getattr(self._reader, "last_row_consumed", False):
                self._reset()  # not for an endless reader that ended (an empty selection): its passes stay empty
            try:
                item = next(self._reader)
            except StopIteration:
                # a new iteration that finds the reader at its end (its last items went to another iterator,
                # e.g. the prefetch of one left by a break) starts another pass instead of an empty one
                if not (first and self._reset()):
                    raise
                item = next(self._reader)  # StopIteration again: an empty selection
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
