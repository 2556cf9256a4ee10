"""Argument and state checks shared by the loaders: integer arguments, the settings saved in a loader state
compared with the loader's own (naming each one that differs), and the parts of a saved state (a malformed or
truncated part is a :class:`~petastorm.errors.PetastormStateError` naming it, whatever fails while loading it)."""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Any, Iterator, Mapping, Optional

import numpy as np

from petastorm.errors import (
    PetastormArgumentError,
    PetastormArgumentTypeError,
    PetastormError,
    PetastormSchemaError,
    PetastormStateError,
)
from petastorm.reader_impl.reader_state import describe_differences

__all__ = ["check_settings", "ensure_int", "ensure_aligned", "ensure_outside", "OWN_THREAD_PREFIXES", "state_batches",
           "state_int", "state_part"]


def ensure_int(name: str, value: Any, minimum: int, allow_none: bool = False,
               integral_float: bool = False) -> Optional[int]:
    """``value`` as an ``int`` of at least ``minimum`` (numpy integers accepted; bool refused).

    Parameters
    ----------
    name : str
        The argument's name, for the message.
    value : Any
        The value given.
    minimum : int
        The smallest value accepted.
    allow_none : bool
        Return None for None.
    integral_float : bool
        Also accept floats with an integral value (``4.0``), as the original ``DataLoader`` did.

    Raises
    ------
    PetastormArgumentTypeError
        Not an integer (the original's loaders raised ``TypeError`` for these: a ``TypeError`` and a
        ``ValueError``); the message names the argument.
    PetastormArgumentError
        Below ``minimum`` (a ``ValueError``); the message names the argument.
    """
    if value is None and allow_none:
        return None
    if integral_float and isinstance(value, (float, np.floating)) and float(value).is_integer():
        value = int(value)
    if isinstance(value, (bool, np.bool_)) or not hasattr(value, "__index__"):
        raise PetastormArgumentTypeError(f"{name} must be an integer >= {minimum}, got {value!r}")
    try:
        value = int(value.__index__())
    except TypeError:  # an array of one or more dimensions has __index__ but refuses it
        raise PetastormArgumentTypeError(f"{name} must be an integer >= {minimum}, got {value!r}") from None
    if value < minimum:
        raise PetastormArgumentError(f"{name} must be an integer >= {minimum}, got {value}")
    return value


#: Name prefixes of the loaders' prefetch thread and of the reader's pool threads (see :func:`ensure_outside`).
OWN_THREAD_PREFIXES = ("petastorm-batch-prefetch", "petastorm-worker-")


def ensure_outside(what: str) -> None:
    """Refuse a call from a thread of the loader's own pipeline (a ``transform_fn``, ``TransformSpec`` or
    ``convert`` function calling ``state_dict()``): the state waits for the prefetch thread to pause between two
    batches, and from that thread, or a reader worker it waits on, it would wait forever.

    Raises
    ------
    PetastormStateError
        Naming the thread and where to call ``what`` from.
    """
    thread = threading.current_thread().name
    if thread.startswith(OWN_THREAD_PREFIXES):
        raise PetastormStateError(f"{what} was called from the loader's or the reader's own thread {thread!r} "
                                  f"(inside a transform_fn, TransformSpec or convert function): call it from the "
                                  f"training loop, between two batches")


def ensure_aligned(columns: Mapping[str, Any], what: str) -> None:
    """Refuse columns of different row counts (a ``transform_fn`` that dropped or added rows of some fields only):
    their rows would be served as if they belonged together.

    Raises
    ------
    PetastormSchemaError
        Naming ``what`` (e.g. ``"transform_fn returned columns"``) and each field's rows (or "a scalar").
    """
    rows = {name: (np.shape(column)[:1] or (None,))[0] for name, column in columns.items()}
    if len(set(rows.values())) > 1:
        sizes = ", ".join(f"{name!r} {'a scalar' if n is None else f'{n} rows'}" for name, n in rows.items())
        raise PetastormSchemaError(f"{what} of different lengths: {sizes}; a transform_fn must keep the rows of "
                                   f"every field aligned")


def check_settings(saved: Any, current: Mapping[str, Any], what: str = "loader") -> None:
    """Refuse a state saved with other settings.

    Parameters
    ----------
    saved : dict
        Settings stored in the state.
    current : dict
        This loader's settings.
    what : str
        Name of the thing in the message (``'loader'``, ``'BatchedDataLoader'``...).

    Raises
    ------
    PetastormStateError
        ``saved`` is not a dict, or some settings differ: ``"... batch_size (saved 8, now 16)"``.
    """
    if not isinstance(saved, Mapping):
        raise PetastormStateError(f"malformed {what} state: 'settings' must be a dict, got {saved!r}")
    diffs = describe_differences(saved, current, f"a setting of this {what}")
    if diffs:
        raise PetastormStateError(f"{what} state was saved with other settings: {'; '.join(diffs)}. Resume with "
                                  f"the settings the state was saved with")


def state_int(state: Mapping[str, Any], key: str, what: str, default: Optional[int] = None) -> int:
    """``state[key]``, an int >= 0 saved by ``state_dict()`` (a bool is refused); ``default`` when the key is
    missing and a default is given.

    Raises
    ------
    PetastormStateError
        The key is missing or holds something else; the message names ``what`` and the key.
    """
    value = state.get(key) if isinstance(state, Mapping) else None
    if value is None and default is not None and isinstance(state, Mapping) and key not in state:
        return default
    if isinstance(value, (bool, np.bool_)) or not hasattr(value, "__index__") or int(value.__index__()) < 0:
        raise PetastormStateError(f"malformed {what}: {key!r} must be an integer >= 0, got {value!r}")
    return int(value.__index__())


@contextmanager
def state_part(what: str) -> Iterator[None]:
    """Load a part of a saved state: what a malformed or truncated part raises while it is loaded (a missing
    key, a value of another type...) becomes a :class:`~petastorm.errors.PetastormStateError` naming ``what``.
    Petastorm's own errors (another dataset, other settings...) pass as they are."""
    try:
        yield
    except PetastormError:
        raise
    except (KeyError, IndexError, TypeError, ValueError, AttributeError, OverflowError) as e:
        raise PetastormStateError(f"malformed {what}: {type(e).__name__}: {e}. Resume from a state_dict() saved by "
                                  f"a loader made with the same arguments, unchanged") from e


def state_batches(value: Any, batch_size: int, what: str) -> list:
    """The numpy batches a state carries (prefetched, not yet yielded): a list of dicts with the same field
    names, each of numpy arrays of one row count in ``1..batch_size``.

    Raises
    ------
    PetastormStateError
        Anything else, naming ``what`` and the first batch that is not one.
    """
    if value is None:
        return []
    if not isinstance(value, list):
        raise PetastormStateError(f"malformed {what}: a list of batches expected, got {type(value).__name__}")
    names = None
    for i, batch in enumerate(value):
        rows = {len(col) for col in batch.values() if isinstance(col, np.ndarray) and col.ndim > 0} \
            if isinstance(batch, Mapping) else set()
        ok = isinstance(batch, Mapping) and batch and len(rows) == 1 and 1 <= min(rows) <= batch_size \
            and all(isinstance(col, np.ndarray) and col.ndim > 0 for col in batch.values())
        if ok and names is not None and list(batch) != names:
            ok = False
        if not ok:
            raise PetastormStateError(f"malformed {what}: batch {i} is not a dict of numpy columns of one row count "
                                      f"(1..{batch_size}) with the fields of the others")
        names = list(batch)
    return value
