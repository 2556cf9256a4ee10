"""Shuffling buffers: hold items and hand them out in (seeded) random order.

- :class:`NoopShufflingBuffer` - first in, first out.
- :class:`RandomShufflingBuffer` - the original's class and arguments, plus an optional seed.

The random buffers are deterministic: the same seed and the same sequence of calls give the same
items in the same order. Their state (items, RNG, finished flag) can be saved with ``state_dict()``
and restored with ``load_state_dict()``.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from typing import Any, Iterable, Mapping, Optional

import numpy as np

from petastorm.errors import (
    PetastormArgumentError,
    PetastormEmptyBufferError,
    PetastormReaderError,
    PetastormStateError,
)

__all__ = ["BufferInterface", "ShufflingBufferBase", "NoopShufflingBuffer", "RandomShufflingBuffer",
           "ADD_AFTER_FINISH_ERROR"]

#: The original's random buffers' message for ``add_many`` after ``finish()`` (recorded from 0.12.1).
ADD_AFTER_FINISH_ERROR = "Can not call add_many after done_adding() was called (finish() was called)."


class BufferInterface(ABC):
    """What every shuffling buffer offers besides adding: this module's (items one at a time) and the torch
    loaders' batched ones (:mod:`petastorm.pytorch_impl.batched_buffers`, batches of rows)."""

    @abstractmethod
    def retrieve(self) -> Any:
        """Remove and return an item (the batched buffers: a batch of rows)."""

    @abstractmethod
    def can_add(self) -> bool:
        """Whether :meth:`add_many` may be called now."""

    @abstractmethod
    def can_retrieve(self) -> bool:
        """Whether :meth:`retrieve` may be called now."""

    @property
    @abstractmethod
    def size(self) -> int:
        """Number of items (the batched buffers: rows) held."""

    @abstractmethod
    def finish(self) -> None:
        """No more items will be added: every item held may now be retrieved (below ``min_after_retrieve``)."""


class ShufflingBufferBase(BufferInterface):
    """Interface of the shuffling buffers."""

    @abstractmethod
    def add_many(self, items: Iterable[Any]) -> None:
        """Add items to the buffer."""


class NoopShufflingBuffer(ShufflingBufferBase):
    """A first-in first-out buffer with no capacity limit (no shuffling)."""

    _ITEMS = "items"

    def __init__(self) -> None:
        self._store: deque = deque()

    def add_many(self, items: Iterable[Any]) -> None:
        self._store.extend(items)

    def retrieve(self) -> Any:
        if not self._store:
            # the original's IndexError (recorded from 0.12.1: "pop from an empty deque") and a RuntimeError
            raise PetastormEmptyBufferError("Can not dequeue: the buffer is empty. Check can_retrieve() first.")
        return self._store.popleft()

    def can_add(self) -> bool:
        return True

    def can_retrieve(self) -> bool:
        return len(self._store) > 0

    @property
    def size(self) -> int:
        return len(self._store)

    def finish(self) -> None:
        pass

    def state_dict(self) -> dict:
        """The items held, in order."""
        return {self._ITEMS: list(self._store)}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`."""
        if not isinstance(state, Mapping):
            raise PetastormStateError(f"not a NoopShufflingBuffer state: a {type(state).__name__}, not a dict")
        if self._ITEMS not in state:
            raise PetastormStateError(f"not a NoopShufflingBuffer state: keys {sorted(state)}")
        self._store = deque(state[self._ITEMS])


class RandomShufflingBuffer(ShufflingBufferBase):
    """A buffer that returns its items in random order.

    Items may be added while the buffer holds fewer than ``shuffling_buffer_capacity`` items (one call to
    :meth:`add_many` may take it above that, up to ``shuffling_buffer_capacity + extra_capacity``).
    Items may be retrieved while it holds at least ``min_after_retrieve`` items, or after :meth:`finish`
    until it is empty. Each :meth:`retrieve` picks a uniformly random item (O(1)).

    Parameters
    ----------
    shuffling_buffer_capacity : int
        Adding is allowed while the buffer holds fewer items than this.
    min_after_retrieve : int
        Retrieving is allowed while the buffer holds at least this many items (before :meth:`finish`).
    extra_capacity : int or None
        How far one :meth:`add_many` may take the buffer above its capacity; None means no hard limit.
    random_seed : int or None
        Seed of the buffer's generator (``numpy.random.default_rng``); the same seed and the same calls
        give the same order. None draws fresh entropy.
    """

    _VERSION = "version"
    _ITEMS = "items"
    _RNG = "rng"
    _FINISHED = "finished"
    _CAPACITY = "capacity"
    _MIN_AFTER_RETRIEVE = "min_after_retrieve"
    _STATE_VERSION = 1

    def __init__(self, shuffling_buffer_capacity: int, min_after_retrieve: int,
                 extra_capacity: Optional[int] = 1000, random_seed: Optional[int] = None) -> None:
        if shuffling_buffer_capacity < 1:
            raise PetastormArgumentError(f"shuffling_buffer_capacity must be >= 1, got {shuffling_buffer_capacity}")
        if min_after_retrieve < 0:
            raise PetastormArgumentError(f"min_after_retrieve must be >= 0, got {min_after_retrieve}")
        if extra_capacity is not None and extra_capacity < 0:
            raise PetastormArgumentError(f"extra_capacity must be >= 0 or None, got {extra_capacity}")
        self._capacity = shuffling_buffer_capacity
        self._min_after_retrieve = min_after_retrieve
        self._extra_capacity = extra_capacity
        self._items: list = []
        self._done_adding = False
        self._rng = np.random.default_rng(random_seed)

    def add_many(self, items: Iterable[Any]) -> None:
        if self._done_adding:
            raise PetastormReaderError(ADD_AFTER_FINISH_ERROR)
        if not self.can_add():
            raise PetastormReaderError(
                'Can not enqueue. Check the return value of "can_enqueue()" to check if more items can be added. '
                f"The buffer holds {len(self._items)} items, its capacity is {self._capacity}.")
        items = list(items)
        if self._extra_capacity is not None:
            maximal = self._capacity + self._extra_capacity
            if len(self._items) + len(items) > maximal:
                raise PetastormReaderError(
                    "Attempt to enqueue more elements than the capacity allows. Current size: "
                    f"{len(self._items)}, new size {len(self._items) + len(items)}, maximum allowed: {maximal}")
        self._items.extend(items)

    def retrieve(self) -> Any:
        if not self.can_retrieve():
            raise PetastormReaderError(
                'Can not dequeue. Check the return value of "can_dequeue()" to check if any items are available. '
                f"The buffer holds {len(self._items)} items, min_after_retrieve is {self._min_after_retrieve}"
                f"{', finish() was called' if self._done_adding else ''}.")
        items = self._items
        index = int(self._rng.integers(len(items)))
        value = items[index]
        last = items.pop()
        if index < len(items):
            items[index] = last
        return value

    def can_add(self) -> bool:
        return len(self._items) < self._capacity and not self._done_adding

    def can_retrieve(self) -> bool:
        n = len(self._items)
        return n > 0 and (n >= self._min_after_retrieve or self._done_adding)

    @property
    def size(self) -> int:
        return len(self._items)

    def finish(self) -> None:
        self._done_adding = True

    def state_dict(self) -> dict:
        """The buffer's items (a list copy, buffer order), its generator state and the finished flag."""
        return {
            self._VERSION: self._STATE_VERSION,
            self._ITEMS: list(self._items),
            self._RNG: self._rng.bit_generator.state,
            self._FINISHED: self._done_adding,
            self._CAPACITY: self._capacity,
            self._MIN_AFTER_RETRIEVE: self._min_after_retrieve,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict`; continues exactly where the saved buffer stopped.

        Raises
        ------
        PetastormStateError
            If the state is not a shuffling buffer's, or was saved from a buffer with another capacity or
            ``min_after_retrieve``.
        """
        if not isinstance(state, Mapping):
            raise PetastormStateError(f"not a shuffling buffer state: a {type(state).__name__}, not a dict")
        missing = [k for k in (self._VERSION, self._ITEMS, self._RNG, self._FINISHED, self._CAPACITY,
                               self._MIN_AFTER_RETRIEVE) if k not in state]
        if missing:
            raise PetastormStateError(f"not a shuffling buffer state: keys {missing} are missing")
        if state[self._VERSION] != self._STATE_VERSION:
            raise PetastormStateError(f"shuffling buffer state version {state[self._VERSION]} is not supported "
                                      f"(expected {self._STATE_VERSION})")
        if (state[self._CAPACITY], state[self._MIN_AFTER_RETRIEVE]) != (self._capacity, self._min_after_retrieve):
            raise PetastormStateError(
                f"saved shuffling buffer has capacity {state[self._CAPACITY]} and min_after_retrieve "
                f"{state[self._MIN_AFTER_RETRIEVE]}, this one {self._capacity} and {self._min_after_retrieve}: "
                f"resume with the same shuffling options")
        rng = np.random.default_rng()
        try:
            rng.bit_generator.state = state[self._RNG]
        except (TypeError, ValueError, KeyError) as e:
            raise PetastormStateError(f"saved shuffling buffer generator state is invalid: {e}") from None
        self._items = list(state[self._ITEMS])
        self._rng = rng
        self._done_adding = bool(state[self._FINISHED])

