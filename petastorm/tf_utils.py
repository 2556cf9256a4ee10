"""TensorFlow adapters: a petastorm reader as a ``tf.data.Dataset`` or as TF1 graph-mode tensors.

``import petastorm.tf_utils`` does not import TensorFlow; the functions import it when called.

Example (TensorFlow 2, Keras 3)::

    from petastorm import make_reader
    from petastorm.tf_utils import make_petastorm_dataset

    with make_reader('file:///some/dataset', num_epochs=None) as reader:
        dataset = make_petastorm_dataset(reader).map(lambda row: (row.image, row.label)).batch(32)
        model.fit(dataset, steps_per_epoch=100, epochs=3)

TF1-style code (the original README's snippets) runs as written::

    import tensorflow.compat.v1 as tf
    tf.disable_v2_behavior()

    with make_reader('file:///some/dataset') as reader:
        tensor = tf_tensors(reader)
        with tf.Session() as sess:
            sample = sess.run(tensor)

Types (the original's, recorded from 0.12.1): uint16 -> int32, uint32 -> int64, str/bytes -> tf.string,
Decimal -> tf.string (``str(d.normalize())``), datetime64 -> int64 (rows of a scalar field: in the value's own
unit, i.e. microseconds for timestamps and days for dates; rows of an ``NdarrayCodec`` field, and batches:
nanoseconds), float16 -> float16 (the original refused it). A null (``None``) in a scalar float field is NaN;
in other fields it raises, naming the field. See :mod:`petastorm.tf_impl.convert`.
"""
from __future__ import annotations

from typing import Any

__all__ = ["make_petastorm_dataset", "tf_tensors"]


def make_petastorm_dataset(reader: Any) -> Any:
    """A ``tf.data.Dataset`` of the reader's rows, batches or ngram windows.

    Parameters
    ----------
    reader : Reader
        From :func:`petastorm.make_reader` (one element per row), :func:`petastorm.make_batch_reader` (one
        element per batch of rows, as read: use ``dataset.unbatch().batch(n)`` for batches of ``n``) or
        ``make_reader(..., schema_fields=NGram(...))`` (one element per window).

    Returns
    -------
    tf.compat.v1.data.Dataset
        A ``tf.data.Dataset`` (eager iteration, ``tf.function``, ``model.fit``) that also has TF1's
        ``make_one_shot_iterator()``. Elements are a namedtuple of the reader's schema with one tensor per
        field, of the field's static shape (``(None,) + shape`` for batches), or for ngrams a dict
        ``{offset: namedtuple of the fields at that offset}``. The element spec (dtypes and static shapes)
        comes from the Unischema, so it is known before the first element is read. Batch readers' elements are
        converted whole columns at a time. Nothing is read ahead of the consumer (the reader's workers read
        and decode ahead): add ``.prefetch(n)`` after your ``batch`` for more overlap with the model.

    Notes
    -----
    The dataset reads from ``reader``: iterating it again after the reader's last row resets the reader
    (another pass of its ``num_epochs``, e.g. a Keras epoch); after a partial pass (``dataset.take(n)``, a
    ``break``) it continues where the reader is, no row lost, or starts another pass if no row is left.
    An iteration that met the reader's end does not call the reader again.
    Iterators alive at the same time share the reader's rows. The dataset keeps the reader alive, and so does
    everything built on it (your ``map``, ``batch``..., its iterators, a ``tf.function`` that captured the dataset
    itself; one that captured a later stage only keeps that stage's tensor: keep the pipeline referenced):
    ``for row in make_petastorm_dataset(make_reader(url))`` needs no name for the reader, and a pipeline
    dropped mid-epoch frees its reader, whose workers stop. A dataset made while a graph is built (TF1 code,
    inside a ``tf.function``) lives as long as that graph. Errors of the reader, of a ``TransformSpec`` or
    of the conversion reach the loop as a ``tf.errors.OpError`` whose message holds the original exception's
    class and message (after TensorFlow's own prefix). The reader is not stopped by an error
    (as in the original): leave its ``with`` block, or call ``reader.stop()``.

    Raises
    ------
    PetastormTypeError
        (A ``TypeError``.) ``reader`` is no reader (``None``, a URL, a loader): the message names the argument.
    PetastormSchemaError
        (A ``ValueError``.) When a field cannot be a tensor (uint64, complex, object dtypes...): the message
        names the field. A null value (``None``) raises, naming the field, when it is read.
    """
    from petastorm.tf_impl.dataset import make_petastorm_dataset as _make

    return _make(reader)


def tf_tensors(reader: Any, shuffling_queue_capacity: int = 0, min_after_dequeue: int = 0) -> Any:
    """Graph-mode tensors that hold the reader's next row (or batch, or ngram window) at each ``session.run``.

    For TF1-style code (``tf.compat.v1`` with ``tf.disable_v2_behavior()``, or a ``tf.compat.v1.Graph``).

    Parameters
    ----------
    reader : Reader
        From :func:`petastorm.make_reader` or :func:`petastorm.make_batch_reader`, ngram readers included.
    shuffling_queue_capacity : int
        If > 0, rows go through a ``tf.queue.RandomShuffleQueue`` of this many rows, filled by a queue
        runner: start it with ``tf.compat.v1.train.start_queue_runners(sess)``. Not for batch readers.
    min_after_dequeue : int
        Rows the shuffling queue keeps after each dequeue (smaller than ``shuffling_queue_capacity``).

    Returns
    -------
    namedtuple of tf.Tensor, or dict of offset to namedtuple for ngram readers
        Static shapes from the Unischema. Once the reader is exhausted, ``session.run`` raises
        ``tf.errors.OutOfRangeError``.

    Raises
    ------
    PetastormReaderError
        (A ``RuntimeError``.) When TensorFlow executes eagerly: use :func:`make_petastorm_dataset` there.
    PetastormTypeError
        (A ``TypeError``.) ``reader`` is no reader (``None``, a URL, a loader): the message names the argument.
    PetastormArgumentError
        (A ``ValueError``.) ``shuffling_queue_capacity`` with a batch reader (the original's message), or a
        negative count. A count that is not an integer, or ``min_after_dequeue >= shuffling_queue_capacity``,
        is a ``PetastormArgumentTypeError``: also a ``TypeError``, as the original raised.
    PetastormSchemaError
        When a field cannot be a tensor; the message names the field.
    """
    from petastorm.tf_impl.graph import tf_tensors as _tensors

    return _tensors(reader, shuffling_queue_capacity=shuffling_queue_capacity, min_after_dequeue=min_after_dequeue)
