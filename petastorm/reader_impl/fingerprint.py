"""Fingerprints of the reader options that decide the sequence of rows (used by resume states).

``reader.state_dict()`` stores a fingerprint of these options; ``resume_from`` refuses a state whose
options differ. User specs (predicates, transforms) are described by their code and attributes, so the
fingerprint is the same in every process for the same spec (``repr`` would hold memory addresses).
"""
from __future__ import annotations

import types
from typing import Any, Optional, Sequence

from petastorm.reader_impl.reader_state import fingerprint

__all__ = ["options_fingerprint", "canonical", "spec_fingerprint", "ids_fingerprint"]

#: Nesting depth past which a spec is described by its type only.
_MAX_DEPTH = 8


def options_fingerprint(**options: Any) -> tuple:
    """(fingerprint str, JSON-able dict) of the options that decide the sequence of rows; values that are
    not JSON scalars or lists are kept as their ``repr``."""
    plain = {k: (repr(v) if not isinstance(v, (int, str, bool, float, type(None), list)) else v)
             for k, v in options.items()}
    return fingerprint(plain), plain


def canonical(obj: Any, depth: int = 0) -> Any:
    """A JSON-able description of a user spec (predicate, transform) that is stable across processes:
    sets sorted, objects as their class and attributes, functions as their code and closure."""
    if depth > _MAX_DEPTH:
        return repr(type(obj))
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, bytes):
        return obj.hex()
    if isinstance(obj, (list, tuple)):
        return [canonical(x, depth + 1) for x in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted((canonical(x, depth + 1) for x in obj), key=repr)
    if isinstance(obj, dict):
        return sorted(([repr(k), canonical(v, depth + 1)] for k, v in obj.items()), key=lambda kv: kv[0])
    if isinstance(obj, types.FunctionType):
        code = obj.__code__
        closure = [canonical(c.cell_contents, depth + 1) for c in (obj.__closure__ or ())]
        return ["function", obj.__qualname__, code.co_code.hex(), canonical(code.co_consts, depth + 1), closure,
                canonical(obj.__defaults__, depth + 1)]
    if isinstance(obj, types.CodeType):
        return ["code", obj.co_name, obj.co_code.hex()]
    if hasattr(obj, "__dict__"):
        return [type(obj).__qualname__, canonical(vars(obj), depth + 1)]
    return repr(obj)


def spec_fingerprint(spec: Any) -> Optional[str]:
    """Fingerprint of a user spec (None for None); an object :func:`canonical` cannot describe falls back to
    its type's name (a weaker check)."""
    if spec is None:
        return None
    try:
        return fingerprint(canonical(spec))
    except Exception:  # an exotic object: fall back to its type (a weaker check)
        return type(spec).__qualname__


def ids_fingerprint(ids: Sequence[int]) -> str:
    """Fingerprint of the selected row-group ids (dataset order)."""
    return fingerprint([int(i) for i in ids])
