"""Pickle a Unischema (or other metadata) the way the original library writes it, so that it loads there.

The original reads ``_common_metadata`` with plain ``pickle.loads``, importing the classes a pickle names.
:func:`dumps_unischema` writes petastorm's Spark type stand-ins as ``pyspark.sql.types`` globals, numpy 2's
names as numpy 1's, and a Unischema with the original's state (``_name``, ``_fields`` and one attribute per
field). Reading goes the other way through :func:`petastorm.etl.safe_unpickle.safe_loads`.
"""
from __future__ import annotations

import copyreg
import io
import pickle
from typing import Any

import numpy as np

from petastorm.errors import PetastormArgumentError

__all__ = ["dumps_unischema"]


# --- writing a pickle the original library loads --------------------------------------------------------------

def _standin_classes() -> set:
    from petastorm.spark_types import STANDIN_TYPES

    return set(STANDIN_TYPES.values())


class _CompatPickler(pickle._Pickler):  # type: ignore[name-defined]
    """Writes petastorm's Spark type stand-ins as ``pyspark.sql.types.X`` globals (pyspark need not be
    installed to write a dataset that the original library, which imports pyspark, can read)."""

    dispatch = dict(pickle._Pickler.dispatch)  # type: ignore[attr-defined]

    def __init__(self, file: Any, protocol: int) -> None:
        super().__init__(file, protocol=protocol)
        self._standins = _standin_classes()

    def reducer_override(self, obj: Any) -> Any:
        """A Unischema is written with the original's state: ``_name``, ``_fields`` and one attribute per
        field, whatever attributes the class itself defines (the original's has none that clash)."""
        from petastorm.unischema import Unischema

        if type(obj) is Unischema:
            state = {"_name": obj._name, "_fields": obj._fields}
            for field_name, field in obj._fields.items():
                state.setdefault(field_name, field)
            return copyreg.__newobj__, (Unischema,), state
        return NotImplemented

    def save_global(self, obj: Any, name: Any = None) -> None:
        if obj in self._standins:
            self._save_global_as("pyspark.sql.types", obj.__name__, obj)
        elif obj is np.bool_:
            # numpy 2 names it numpy.bool, which numpy 1.x (the original's) does not have
            self._save_global_as("numpy", "bool_", obj)
        elif getattr(obj, "__module__", None) == "numpy._core.multiarray":
            self._save_global_as("numpy.core.multiarray", obj.__name__, obj)
        else:
            super().save_global(obj, name)

    def _save_global_as(self, module: str, name: str, obj: Any) -> None:
        if self.proto >= 4:
            self.save(module)
            self.save(name)
            self.write(pickle.STACK_GLOBAL)
        else:
            self.write(pickle.GLOBAL + f"{module}\n{name}\n".encode("utf-8"))
        self.memoize(obj)


def dumps_unischema(schema: Any, protocol: int = 4) -> bytes:
    """Pickle ``schema`` (a Unischema, or any metadata object such as a dict of indexers) the way the
    original library does, so that it loads there with plain ``pickle.loads``.

    Parameters
    ----------
    schema : Unischema or picklable metadata object
    protocol : int
        2 or 4 (the original 0.12.1 writes 4).
    """
    if protocol not in (2, 3, 4):
        raise PetastormArgumentError(f"protocol must be 2, 3 or 4, got {protocol}")
    buf = io.BytesIO()
    _CompatPickler(buf, protocol).dump(schema)
    return buf.getvalue()
