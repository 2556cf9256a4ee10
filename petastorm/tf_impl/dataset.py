"""``make_petastorm_dataset``: a reader as a ``tf.data.Dataset`` whose element spec comes from the Unischema.

The pipeline is ``range(∞).scan(iterator id).map(numpy_function(next item)).prefetch(2)``, a
``tf.compat.v1.data.Dataset``:

- one traced function (``tf.data.Dataset.from_generator`` traces four), so building the dataset and each
  iterator costs less, and a batch costs one ``numpy_function`` call (about half of ``from_generator``'s
  per-element cost for 20 columns of 131,072 rows);
- the element counter tells the item source when an iterator starts (position 0), which gives
  ``from_generator``'s semantics: a new iteration resets a reader whose last row was consumed; a new
  iteration that finds the reader at its end (its last rows went to an abandoned iterator's prefetch
  buffer) starts another pass too, instead of an empty one;
- ``scan`` gives each iterator an id at its position 0 (a ``numpy_function`` only there), so the end of
  the reader ends the iterator that met it, not the next one: the prefetch of an iterator left by a
  ``break`` may still be running when a new iteration starts (iterators alive at the same time share the
  reader's rows, as in the original);
- the reader's end (``StopIteration``) ends the sequence: the v1 ``map`` treats the function's
  ``OutOfRangeError`` as the end of input;
- ``prefetch`` converts the next elements while the model uses the current one (memory bounded).
"""
from __future__ import annotations

import threading
from typing import Any, List, Set

import numpy as np

from petastorm.tf_impl import import_tensorflow
from petastorm.tf_impl.layout import ElementLayout

__all__ = ["make_petastorm_dataset", "ItemSource"]

#: Elements converted ahead of the consumer (rows or batches).
PREFETCH = 2

_ENDLESS = 2 ** 62


class ItemSource:
    """The reader's items as flat lists of arrays, for a ``numpy_function``.

    Each iterator calls :meth:`begin` once (its id) and then ``next_flat(id, position)`` with the element's
    position in its iteration (0, 1, 2, ...). At position 0 a reader whose last row was consumed is reset
    (another pass, as the original's ``make_petastorm_dataset``); a reader stopped part-way continues, and
    one found at its end is reset. Once the reader ends for an iterator, that iterator keeps ending
    (``StopIteration``); other iterators do not.
    """

    def __init__(self, reader: Any, layout: ElementLayout) -> None:
        self._reader = reader
        self._flatten = layout.flatten
        self._ended: Set[int] = set()
        self._last_id = 0
        self._lock = threading.Lock()

    def begin(self) -> np.int64:
        """A new iterator's id (called at its position 0)."""
        with self._lock:
            self._last_id += 1
            return np.int64(self._last_id)

    def _reset(self) -> bool:
        try:
            self._reader.reset()
        except (AttributeError, NotImplementedError):  # a reader without passes (num_epochs=None, a mock)
            return False
        return True

    def next_flat(self, iterator_id: Any, position: Any) -> List[np.ndarray]:
        iterator_id, first = int(iterator_id), int(position) == 0
        with self._lock:
            if iterator_id in self._ended:
                raise StopIteration
            if first and getattr(self._reader, "last_row_consumed", False):
                self._reader.reset()
            try:
                item = next(self._reader)
            except StopIteration:
                # a new iteration that finds the reader at its end (its last items went to another iterator,
                # e.g. the prefetch of one left by a break) starts another pass instead of an empty one
                item = self._next_after_reset() if first else None
                if item is None:
                    self._ended.add(iterator_id)
                    raise
        return self._flatten(item)

    def _next_after_reset(self) -> Any:
        if not self._reset():
            return None
        try:
            return next(self._reader)
        except StopIteration:  # an empty selection
            return None


def make_petastorm_dataset(reader: Any) -> Any:
    """See :func:`petastorm.tf_utils.make_petastorm_dataset`."""
    tf = import_tensorflow()

    layout = ElementLayout(reader)
    specs = layout.flat_specs()
    dtypes = [tf.as_dtype(name) for name, _ in specs]
    source = ItemSource(reader, layout)

    def with_iterator_id(iterator_id: Any, position: Any) -> Any:
        iterator_id = tf.cond(tf.equal(position, 0),
                              lambda: tf.numpy_function(source.begin, [], tf.int64, stateful=True,
                                                        name="petastorm_begin"),
                              lambda: iterator_id)
        return iterator_id, (iterator_id, position)

    def element(iterator_id: Any, position: Any) -> Any:
        flat = tf.numpy_function(source.next_flat, [iterator_id, position], dtypes, stateful=True,
                                 name="petastorm_next")
        flat = list(flat) if isinstance(flat, (list, tuple)) else [flat]
        for tensor, (_, shape) in zip(flat, specs):
            tensor.set_shape(shape)
        return layout.unflatten(flat)

    # tf.compat.v1.data.Dataset is the original's type (DatasetV1Adapter): a tf.data.Dataset for TF2 code (eager
    # iteration, tf.function, Keras) that also has make_one_shot_iterator() for TF1 graph code; its map ends
    # the sequence on the function's OutOfRangeError (the reader's StopIteration).
    dataset = tf.compat.v1.data.Dataset.range(_ENDLESS)
    dataset = dataset.apply(lambda d: d.scan(tf.constant(-1, tf.int64), with_iterator_id)).map(element)
    return dataset.prefetch(PREFETCH)
