"""Rows (dicts of field values) for the tests of bad input: a good row with some fields changed or removed."""
from __future__ import annotations

from typing import Any

#: A change that removes the field from the row.
DROP = object()


def changed(row: dict, **changes: Any) -> dict:
    """A copy of ``row`` with each ``field=value`` of ``changes`` set, or removed where ``value`` is :data:`DROP`."""
    out = dict(row)
    for key, value in changes.items():
        if value is DROP:
            del out[key]
        else:
            out[key] = value
    return out
