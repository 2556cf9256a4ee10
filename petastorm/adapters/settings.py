"""Comparing the settings saved in a loader state with the loader's own, naming each one that differs."""
from __future__ import annotations

from typing import Any, Mapping

from petastorm.errors import PetastormStateError

__all__ = ["check_settings"]


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
    diffs = []
    for key in sorted(set(saved) | set(current)):
        if key not in current:
            diffs.append(f"{key} (saved {saved[key]!r}, not a setting of this {what})")
        elif key not in saved:
            diffs.append(f"{key} (not in the saved state, now {current[key]!r})")
        elif saved[key] != current[key]:
            diffs.append(f"{key} (saved {saved[key]!r}, now {current[key]!r})")
    if diffs:
        raise PetastormStateError(f"{what} state was saved with other settings: {'; '.join(diffs)}. Resume with "
                                  f"the settings the state was saved with")
