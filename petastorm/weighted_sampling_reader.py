"""Mix several readers: each item comes from one of them, picked at random with given probabilities.

Typical use: oversample a rare class stored in its own dataset::

    with WeightedSamplingReader([make_reader(common_url), make_reader(rare_url)], [0.8, 0.2]) as reader:
        for row in reader:
            ...

Every reader must yield the same kind of item: the same schema fields, the same ``batched_output``
and ngrams with the same fields at the same offsets (their ``delta_threshold``, ``timestamp_field`` and
``timestamp_overlap`` may differ, as in the original). Iteration stops (``StopIteration``) as soon as the reader picked is exhausted,
as in the original library; give readers ``num_epochs=None`` to mix forever.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from petastorm.errors import PetastormArgumentError, PetastormReaderError

__all__ = ["WeightedSamplingReader"]


class WeightedSamplingReader:
    """An iterator over items drawn from ``readers`` with ``probabilities``.

    Parameters
    ----------
    readers : sequence of readers
        Two or more readers (anything iterable with a ``schema``, such as the result of ``make_reader``,
        ``make_batch_reader`` or a ``ReaderMock``).
    probabilities : sequence of float, one per reader
        Relative weights, not negative; they are normalised to sum to 1. A reader of weight 0 is never read.
    seed : int, optional
        Seed of the choice of reader: the same seed gives the same sequence of choices.

    Raises
    ------
    ValueError
        Fewer than two readers, a number of probabilities that differs from the number of readers,
        negative or all-zero probabilities, or readers that differ in schema fields, ``batched_output``
        or ngram fields/offsets (the message names the reader and the difference).

    Attributes
    ----------
    schema : Unischema
        The first reader's schema.
    ngram, batched_output, is_batched_reader
        The readers' common values.
    """

    def __init__(self, readers: Sequence[Any], probabilities: Sequence[float], seed: Optional[int] = None) -> None:
        readers = list(readers)
        if len(readers) <= 1:
            raise PetastormArgumentError(f"Two or more readers must be specified. Got {len(readers)}.")
        weights = np.asarray(list(probabilities), dtype=np.float64)
        if weights.ndim != 1 or len(weights) != len(readers):
            raise PetastormArgumentError(f"readers and probabilities are expected to be lists of the same length: got "
                             f"{weights.size} probabilities for {len(readers)} readers")
        if not np.isfinite(weights).all() or (weights < 0).any() or weights.sum() <= 0:
            raise PetastormArgumentError(f"probabilities must be finite, not negative, and not all zero; got {weights.tolist()}")
        _ensure_compatible(readers)
        self._readers = readers
        self._probabilities = weights / weights.sum()
        self._rng = np.random.default_rng(seed)
        first = readers[0]
        self.schema = first.schema
        self.ngram = getattr(first, "ngram", None)
        self.batched_output = getattr(first, "batched_output", False)
        self.is_batched_reader = getattr(first, "is_batched_reader", self.batched_output)

    @property
    def probabilities(self) -> np.ndarray:
        """Normalised probabilities, shape ``(len(readers),)``, summing to 1."""
        return self._probabilities.copy()

    @property
    def last_row_consumed(self) -> bool:
        """True when one of the readers has yielded its last row."""
        return any(getattr(r, "last_row_consumed", False) for r in self._readers)

    def __iter__(self) -> "WeightedSamplingReader":
        return self

    def __next__(self) -> Any:
        index = int(self._rng.choice(len(self._readers), p=self._probabilities))
        return next(self._readers[index])

    def next(self) -> Any:
        """Same as ``next(reader)`` (the original's name)."""
        return self.__next__()

    def reset(self) -> None:
        """Start a new pass: reset every reader (a loader's second pass calls this).

        Possible only when every reader has yielded its last row: the mix ends as soon as the first reader
        picked is exhausted, so the others are usually in the middle of their pass and cannot restart.

        Raises
        ------
        PetastormReaderError
            If a reader is in the middle of its pass (names it); the original 0.12.1 has no ``reset``
            (``AttributeError``).
        """
        for i, reader in enumerate(self._readers):
            if hasattr(reader, "reset") and not getattr(reader, "last_row_consumed", True):
                raise PetastormReaderError(
                    f"WeightedSamplingReader cannot start a new pass: reader {i} is in the middle of its pass (the "
                    f"mix ended when another reader was exhausted). Give the readers num_epochs=None and stop after "
                    f"the number of items you need, or make new readers and a new WeightedSamplingReader per pass")
        for reader in self._readers:
            if hasattr(reader, "reset"):
                reader.reset()

    def stop(self) -> None:
        """Stop every reader."""
        for reader in self._readers:
            reader.stop()

    def join(self) -> None:
        """Wait for every reader to stop."""
        for reader in self._readers:
            reader.join()

    def __enter__(self) -> "WeightedSamplingReader":
        return self

    def __exit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        self.stop()
        self.join()


def _ensure_compatible(readers: list) -> None:
    first = readers[0]
    if not hasattr(first, "schema"):
        raise PetastormArgumentError(f"reader 0 ({type(first).__name__}) has no schema: WeightedSamplingReader takes readers "
                         f"made by make_reader/make_batch_reader or ReaderMock")
    names = list(first.schema.fields)
    for i, reader in enumerate(readers[1:], start=1):
        if not hasattr(reader, "schema"):
            raise PetastormArgumentError(f"reader {i} ({type(reader).__name__}) has no schema")
        other = list(reader.schema.fields)
        if set(other) != set(names):
            only_first = sorted(set(names) - set(other))
            only_other = sorted(set(other) - set(names))
            raise PetastormArgumentError(f"All readers passed to WeightedSamplingReader should have the same schema: "
                             f"reader {i} lacks fields {only_first} of reader 0 and has fields {only_other} "
                             f"that reader 0 lacks")
        if getattr(reader, "batched_output", False) != getattr(first, "batched_output", False):
            raise PetastormArgumentError(f"All readers passed to WeightedSamplingReader should have the same value of "
                             f"\"batched_output\" attribute: reader 0 has {getattr(first, 'batched_output', False)}, "
                             f"reader {i} has {getattr(reader, 'batched_output', False)}")
        ngram_a, ngram_b = getattr(first, "ngram", None), getattr(reader, "ngram", None)
        if (ngram_a is None) != (ngram_b is None) or (ngram_a is not None and _ngram_key(ngram_a) != _ngram_key(ngram_b)):
            raise PetastormArgumentError(f"All readers passed to WeightedSamplingReader should have the same ngram spec: "
                             f"reader 0 has {ngram_a!r}, reader {i} has {ngram_b!r}")


def _ngram_key(ngram: Any) -> tuple:
    """What makes two ngram specs yield the same kind of window: the offsets and the field names at each.

    ``delta_threshold``, ``timestamp_field`` and ``timestamp_overlap`` may differ (datasets recorded at
    different rates mix), as in 0.12.1: they change which windows are formed, not their shape.
    """
    def name(f: Any) -> str:
        return f if isinstance(f, str) else f.name

    fields = getattr(ngram, "fields", {}) or {}
    return tuple(sorted((k, tuple(sorted(name(f) for f in v))) for k, v in fields.items()))
