"""``make_petastorm_dataset``: a reader as a ``tf.data.Dataset`` whose element spec comes from the Unischema.

The pipeline is ``range(∞).map(numpy_function(next item)).take(∞)``, a ``tf.compat.v1.data.Dataset``:

- one traced function (``tf.data.Dataset.from_generator`` traces four), so building the dataset and each
  iterator costs less, and a batch costs one ``numpy_function`` call (about half of ``from_generator``'s
  per-element cost for 20 columns of 131,072 rows);
- the element counter tells the item source when an iterator starts (position 0), which gives
  ``from_generator``'s semantics: a new iteration resets a reader whose last row was consumed; a new
  iteration that finds the reader at its end starts another pass too, instead of an empty one;
- the reader's end (``StopIteration``) ends the sequence of the iterator that met it: the v1 ``map`` treats
  the function's ``OutOfRangeError`` as the end of its input. No state of ours marks an iterator as ended, so
  a late call of an abandoned iterator cannot end a new one (iterators alive at the same time share the
  reader's rows, as in the original);
- the end is final: the v1 ``map`` forgets it and calls the function again on the next request, which a
  ``map(f).batch(n)`` after the dataset (fused by TensorFlow into ``MapAndBatch``, whose runner keeps
  filling its batches after the end) made thousands of times after a Keras ``evaluate``. A call still in
  flight when the interpreter exits deadlocks it: the finalizing interpreter ends the TensorFlow thread that
  asks for the GIL, and the ``MapAndBatch`` iterator destroyed at exit waits for that call forever (the
  MNIST Keras example hung in most runs under load). ``take(∞)`` drops its input iterator at the end, so
  nothing calls the function after it; and at interpreter exit every dataset's sequence ends
  (:class:`_InterpreterExit`), for a user's own stages that read ahead (``batch(n).prefetch(k)``) and would
  otherwise have a call in flight when the interpreter finalizes;
- nothing reads ahead of the consumer: no ``prefetch`` of ours, and TensorFlow's automatic one
  (``inject_prefetch``) is turned off in the dataset's options. An element read ahead for an iterator that
  is then abandoned (``dataset.take(1)`` to look at a sample, a ``break``) would be lost to the reader's pass:
  a whole row group of a batch reader. The original read none ahead for ``take`` (recorded from 0.12.1:
  ``take(5)`` then a pass gives the other 55 of 60 rows), and ``reader.state_dict()`` after ``take(n)`` is the
  consumer's position. The reader's own workers read and decode ahead; the consumer adds ``.prefetch(n)`` to
  its own pipeline (after ``batch``) for more overlap;
- the reader lives as long as the user's pipeline, no longer: TensorFlow keeps a ``numpy_function``'s callable as
  long as the outermost graph, which for a dataset made eagerly is the global graph (for ever). The callable
  (:class:`_SourceCall`) holds the item source weakly; the returned dataset and its variant tensor hold it
  strongly, and so does everything that keeps them: the user's later stages (``map``, ``batch``... keep their
  input dataset), an iterator (it keeps the dataset the v1 adapter wraps, which shares the adapter's variant
  tensor, not the adapter), a ``tf.function`` that captured the dataset (its variant tensor; one that
  captured a later stage keeps that stage's variant tensor only, which does not hold the source). A pipeline
  and its iterators dropped mid-epoch free the reader, whose finalizer stops its workers. A dataset made while
  a graph is built (TF1 graph mode, inside a ``tf.function`` or a dataset function) has no Python object that
  outlives the building: the graph being built holds the item source (a ``tf.Graph``, or the traced function's
  graph, which lives as long as the traced function).
"""
from __future__ import annotations

import atexit
import os
import threading
import time
import weakref
from typing import Any, List

import numpy as np

from petastorm.errors import PetastormReaderError
from petastorm.tf_impl import import_tensorflow
from petastorm.tf_impl.layout import ElementLayout

__all__ = ["make_petastorm_dataset", "ItemSource"]

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
                # a new iteration that finds the reader at its end (its last items went to another iterator
                # alive at the same time, or a map of the user's read them ahead) starts another pass instead
                # of an empty one
                if not (first and self._reset()):
                    raise
                item = next(self._reader)  # StopIteration again: an empty selection
        return self._flatten(item)


class _SourceCall:
    """The ``numpy_function``'s callable: the item source's ``next_flat``, through a weak reference (TensorFlow
    may keep this callable for ever; see the module docstring)."""

    __slots__ = ("_source",)

    def __init__(self, source: ItemSource) -> None:
        self._source = weakref.ref(source)

    def __call__(self, position: Any) -> List[np.ndarray]:
        source = self._source()
        if source is None:  # only a call TensorFlow makes after the pipeline was dropped (a late prefetch)
            raise PetastormReaderError("make_petastorm_dataset: the dataset was dropped, and with it its reader; "
                                       "keep a reference to the dataset (or its iterator) while you read it")
        with _EXIT:  # counts the call; ends the sequence once the interpreter exits
            return source.next_flat(position)


class _InterpreterExit:
    """Ends every dataset's sequence when the interpreter exits, so that no call of ours is in flight once it
    finalizes.

    A user's stage that reads ahead in TensorFlow's threads (``map(f).batch(n).prefetch(k)``: a fused
    ``MapAndBatch`` runner) keeps calling the dataset after the user's loop is left. A call that asks for the GIL
    while the interpreter finalizes never gets it, and the iterator destroyed at finalization waits for that call
    for ever: the process hangs at exit. At ``atexit`` (the interpreter still whole) every later call ends the
    sequence (``StopIteration``: TensorFlow's end of input, after which the runner calls no more), and the hook
    waits for the calls in flight and until none has started for ``IDLE_S`` (the runner's next call, which then
    ends), ``MAX_WAIT_S`` at most (a call waiting on a slow store's row group). A forked child inherits the hook
    and the counts but not TensorFlow's threads: it does not wait.
    """

    IDLE_S = 0.1
    MAX_WAIT_S = 10.0

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._exiting = False
        self._in_flight = 0
        self._last_call = 0.0  # time.monotonic() of the last call's start or end
        self._registered = False
        self._pid = os.getpid()

    def register(self) -> None:
        with self._cond:
            if not self._registered:
                atexit.register(self.drain)
                self._registered = True

    def __enter__(self) -> None:
        with self._cond:
            if self._exiting:
                raise StopIteration  # the end of the sequence (TensorFlow's OutOfRange: end of input)
            self._in_flight += 1
            self._last_call = time.monotonic()

    def __exit__(self, *exc: Any) -> None:
        with self._cond:
            self._in_flight -= 1
            self._last_call = time.monotonic()
            self._cond.notify_all()

    def drain(self) -> None:
        with self._cond:
            self._exiting = True
            if os.getpid() != self._pid:
                return
            deadline = time.monotonic() + self.MAX_WAIT_S
            while True:
                now = time.monotonic()
                quiet = self._in_flight == 0 and now - self._last_call >= self.IDLE_S
                if quiet or now >= deadline:
                    return
                self._cond.wait(min(self.IDLE_S, deadline - now))


_EXIT = _InterpreterExit()


_HOLD = "_petastorm_item_sources"


def _hold(tf: Any, dataset: Any, source: ItemSource) -> None:
    """Give ``source`` the lifetime of the user's pipeline (see the module docstring)."""
    if tf.executing_eagerly():
        holders = [dataset, dataset._variant_tensor]  # pylint: disable=protected-access
    else:
        holders = [tf.compat.v1.get_default_graph()]
    for holder in holders:
        if not hasattr(holder, _HOLD):
            setattr(holder, _HOLD, [])
        getattr(holder, _HOLD).append(source)


def make_petastorm_dataset(reader: Any) -> Any:
    """See :func:`petastorm.tf_utils.make_petastorm_dataset`."""
    tf = import_tensorflow()

    layout = ElementLayout(reader)
    specs = layout.flat_specs()
    dtypes = [tf.as_dtype(name) for name, _ in specs]
    source = ItemSource(reader, layout)
    call = _SourceCall(source)
    _EXIT.register()

    def element(position: Any) -> Any:
        flat = tf.numpy_function(call, [position], dtypes, stateful=True, name="petastorm_next")
        flat = list(flat) if isinstance(flat, (list, tuple)) else [flat]
        for tensor, (_, shape) in zip(flat, specs):
            tensor.set_shape(shape)
        return layout.unflatten(flat)

    # tf.compat.v1.data.Dataset is the original's type (DatasetV1Adapter): a tf.data.Dataset for TF2 code (eager
    # iteration, tf.function, Keras) that also has make_one_shot_iterator() for TF1 graph code; its map ends
    # the sequence on the function's OutOfRangeError (the reader's StopIteration); take keeps it ended (no call
    # after the end: see the module docstring). take(-1) would be removed by TensorFlow's noop elimination.
    dataset = tf.compat.v1.data.Dataset.range(_ENDLESS).map(element).take(_ENDLESS)
    dataset = dataset.with_options(_no_read_ahead(tf))
    _hold(tf, dataset, source)
    return dataset


def _no_read_ahead(tf: Any) -> Any:
    """Options that keep TensorFlow from injecting a ``prefetch`` after the dataset (rows it read ahead for an
    abandoned iterator would be lost to the pass). A user's options set later still win."""
    options = tf.data.Options()
    optimization = options.experimental_optimization
    if hasattr(optimization, "inject_prefetch"):
        optimization.inject_prefetch = False
    return options
