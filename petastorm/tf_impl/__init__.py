"""Internals of :mod:`petastorm.tf_utils` (private; the public API is in ``petastorm.tf_utils``).

- :mod:`~petastorm.tf_impl.convert`: the numpy -> TensorFlow dtype table and the conversion of row values
  and whole batch columns into arrays TensorFlow takes (numpy only, no TensorFlow import).
- :mod:`~petastorm.tf_impl.layout`: the element structure of a reader (a namedtuple of a row or batch, or a
  dict ``{offset: namedtuple}`` of an ngram window), its ``tf.TensorSpec`` signature, and turning a reader's
  item into an element or a flat list of arrays.
- :mod:`~petastorm.tf_impl.dataset`: ``make_petastorm_dataset`` (``tf.data`` built with ``output_signature``).
- :mod:`~petastorm.tf_impl.graph`: ``tf_tensors`` (TF1 graph mode: a stateful numpy function and an optional
  ``RandomShuffleQueue``).

:func:`import_tensorflow` is how they import TensorFlow: its absence is an ``ImportError`` saying what to install.
"""
from typing import Any

__all__ = ["import_tensorflow"]


def import_tensorflow() -> Any:
    """The ``tensorflow`` module, imported on first use.

    Raises
    ------
    ImportError
        TensorFlow cannot be imported: the message says what to install.
    """
    try:
        import tensorflow
    except ImportError as error:
        raise ImportError(f"petastorm.tf_utils needs TensorFlow, which cannot be imported ({error}): install it with "
                          f"pip install 'petastorm[tf]' (tensorflow-cpu), or pip install tensorflow for GPUs") from error
    return tensorflow
