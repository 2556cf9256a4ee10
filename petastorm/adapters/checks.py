"""Argument and state checks shared by the loaders: integer arguments, and the settings saved in a loader
state compared with the loader's own, naming each one that differs."""
from __future__ import annotations

from typing import Any, Mapping, Optional

import numpy as np

from petastorm.errors import PetastormArgumentError, PetastormArgumentTypeError, PetastormStateError
from petastorm.reader_impl.reader_state import describe_differences

__all__ = ["check_settings", "ensure_int"]


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
    value = int(value.__index__())
    if value < minimum:
        raise PetastormArgumentError(f"{name} must be an integer >= {minimum}, got {value}")
    return value


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
