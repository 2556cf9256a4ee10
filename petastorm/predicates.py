"""Row predicates: which rows a reader returns.

A predicate names the fields it needs (:meth:`PredicateBase.get_fields`) and decides per row
(:meth:`PredicateBase.do_include`). The reader's worker reads and decodes only those fields first,
calls :func:`evaluate_predicate` on the whole column batch, and decodes the other fields only for the
rows that pass. The built-in predicates evaluate a batch with numpy where they can (``in_set`` on a
scalar column is one ``np.isin``). Any other predicate gets what the original library passed it: with
``make_reader``, ``do_include`` is called once per row with a dict of the row's values; with
``make_batch_reader``, once per batch with a ``pandas.DataFrame`` of its fields (``len(values)`` rows,
``values[name]`` a Series) and returns a boolean Series (or array) of that length.

Every predicate pickles with ``cloudpickle`` (lambdas included), so it runs in process-pool workers.
"""
from __future__ import annotations

import hashlib
import sys
from typing import Any, Callable, Iterable, Optional

import numpy as np

from petastorm.errors import PetastormArgumentError, PetastormSchemaError

__all__ = [
    "PredicateBase",
    "in_set",
    "in_intersection",
    "in_lambda",
    "in_negate",
    "in_reduce",
    "in_pseudorandom_split",
    "evaluate_predicate",
]


class PredicateBase:
    """Base class of row predicates.

    Subclasses implement :meth:`get_fields` and :meth:`do_include`; they may also override
    :meth:`_evaluate_columns` with a vectorised version (the default calls ``do_include`` per row).
    """

    def get_fields(self) -> set:
        """Names of the fields :meth:`do_include` looks at (a set of str)."""
        raise NotImplementedError

    def do_include(self, values: dict) -> bool:
        """Whether to include a row, given a dict of its values for :meth:`get_fields`."""
        raise NotImplementedError

    def _evaluate_columns(self, columns: dict, num_rows: int) -> np.ndarray:
        """``do_include`` of every row of a column batch: bool array of shape ``(num_rows,)``."""
        return _row_loop(self, columns, num_rows)


class _BatchColumns(dict):
    """The decoded columns of a ``make_batch_reader`` batch: a user's predicate gets them as a DataFrame."""


def _frame_call(predicate: Any, columns: dict, num_rows: int) -> np.ndarray:
    """``do_include`` called once with a ``pandas.DataFrame`` of the predicate's fields (the original's
    ``make_batch_reader`` contract); its boolean Series (or array) is the mask."""
    names = sorted(predicate.get_fields())
    result = predicate.do_include(_frame(columns, names))
    mask = _as_array(result)
    if mask.shape != (num_rows,):
        raise PetastormSchemaError(
            f"predicate {type(predicate).__name__}: make_batch_reader passes do_include a pandas.DataFrame of "
            f"{num_rows} rows of the fields {names} and expects a boolean Series of {num_rows} values, got "
            f"{type(result).__name__} of shape {mask.shape}")
    return mask


def _series_call(func: Callable, names: list, columns: dict, extra: list, num_rows: int) -> Optional[np.ndarray]:
    """``func`` called once with a ``pandas.Series`` per field, as the original's ``make_batch_reader`` calls an
    ``in_lambda``'s function; its boolean result of ``num_rows`` values is the mask. None when the function
    raises or gives anything else (one written for single values, e.g. ``lambda x: x in ids``): it is then
    called per row, as it is without pandas (an optional dependency)."""
    try:
        frame = _frame(columns, names)
    except ImportError:
        return None
    try:
        mask = _as_array(func(*[frame[n] for n in names], *extra))
    except Exception:
        return None
    if mask.shape != (num_rows,) or mask.dtype != bool:
        return None
    return mask


def _frame(columns: dict, names: list) -> Any:
    """A ``pandas.DataFrame`` of the columns ``names`` (each once, in the order given)."""
    from petastorm.transform import columns_to_dataframe

    return columns_to_dataframe({n: columns[n] for n in dict.fromkeys(names)})


def _as_array(result: Any) -> np.ndarray:
    """A predicate's result (a pandas Series, an array, a list or a bool) as a numpy array."""
    return np.asarray(getattr(result, "values", result))


def _is_users(predicate: Any) -> bool:
    """A predicate whose only way to decide is ``do_include`` (not one of the vectorised built-ins)."""
    return not isinstance(predicate, PredicateBase) or \
        type(predicate)._evaluate_columns is PredicateBase._evaluate_columns


def _row_loop(predicate: PredicateBase, columns: dict, num_rows: int) -> np.ndarray:
    names = sorted(predicate.get_fields())
    cols = [columns[n] for n in names]
    out = np.empty(num_rows, dtype=bool)
    for i in range(num_rows):
        out[i] = bool(predicate.do_include({n: c[i] for n, c in zip(names, cols)}))
    return out


def _is_plain_scalar_column(col: Any) -> bool:
    return isinstance(col, np.ndarray) and col.ndim == 1 and col.dtype != object


def _same_kind(col: np.ndarray, probe: np.ndarray) -> bool:
    """Whether ``np.isin(col, probe)`` means what Python's ``value in set`` means."""
    ck, pk = col.dtype.kind, probe.dtype.kind
    if ck in "biuf" and pk in "biuf":
        return True
    return ck == pk and ck in "US"


class in_set(PredicateBase):
    """Include rows whose ``predicate_field`` value is in ``inclusion_values``."""

    def __init__(self, inclusion_values: Iterable, predicate_field: str) -> None:
        self._inclusion_values = set(inclusion_values)
        self._predicate_field = predicate_field

    def get_fields(self) -> set:
        return {self._predicate_field}

    def do_include(self, values: dict) -> bool:
        return values[self._predicate_field] in self._inclusion_values

    def _evaluate_columns(self, columns: dict, num_rows: int) -> np.ndarray:
        col = columns[self._predicate_field]
        if _is_plain_scalar_column(col) and self._inclusion_values:
            probe = _probe_array(self._inclusion_values)
            if probe is not None and _same_kind(col, probe):
                return np.isin(col, probe)
        values = self._inclusion_values
        if isinstance(col, np.ndarray) and col.ndim == 1:
            try:
                return np.fromiter((v in values for v in col), dtype=bool, count=num_rows)
            except TypeError:  # unhashable cells (arrays): fall back to do_include's own error
                pass
        return _row_loop(self, columns, num_rows)


def _probe_array(values: set) -> Optional[np.ndarray]:
    """The inclusion values as one numpy array of numbers, str or bytes; None if they mix kinds."""
    items = list(values)
    if all(isinstance(v, (bool, int, float, np.bool_, np.integer, np.floating)) for v in items):
        probe = np.asarray(items)
        return probe if probe.dtype != object else None
    if all(isinstance(v, str) for v in items) or all(isinstance(v, bytes) for v in items):
        return np.asarray(items)
    return None


class in_intersection(PredicateBase):
    """Include rows whose ``predicate_field`` (a list or array) holds at least one of ``inclusion_values``."""

    def __init__(self, inclusion_values: Iterable, _predicate_field: str) -> None:
        self._inclusion_values = list(inclusion_values)
        self._predicate_field = _predicate_field

    def get_fields(self) -> set:
        return {self._predicate_field}

    def do_include(self, values: dict) -> bool:
        value = values[self._predicate_field]
        if value is None:
            return False
        return bool(np.isin(np.asarray(value), self._inclusion_values).any())

    def _evaluate_columns(self, columns: dict, num_rows: int) -> np.ndarray:
        col = columns[self._predicate_field]
        if isinstance(col, np.ndarray) and col.ndim == 2 and col.dtype != object:
            probe = _probe_array(set(self._inclusion_values)) if self._inclusion_values else None
            if probe is not None and _same_kind(col, probe):
                return np.isin(col, probe).any(axis=1)
        return _row_loop(self, columns, num_rows)


class in_lambda(PredicateBase):
    """Include rows for which ``predicate_func(*values_of_predicate_fields[, state_arg])`` is true.

    Example: ``in_lambda(['labels'], lambda labels: len(labels) > 3)``.

    Parameters
    ----------
    predicate_fields : list of str
    predicate_func : callable
        Called with the values of ``predicate_fields`` in that order, then ``state_arg`` if not None.
    state_arg : optional
        An extra last argument passed to every call.
    """

    def __init__(self, predicate_fields: list, predicate_func: Callable, state_arg: Any = None) -> None:
        if not isinstance(predicate_fields, list):
            raise PetastormArgumentError(f"Predicate fields should be a list, got {type(predicate_fields).__name__}: "
                             f"{predicate_fields!r}")
        if not callable(predicate_func):
            raise PetastormArgumentError(f"predicate_func must be callable, got {type(predicate_func).__name__}")
        self._predicate_fields = predicate_fields
        self._predicate_func = predicate_func
        self._state_arg = state_arg

    def get_fields(self) -> set:
        return set(self._predicate_fields)

    def do_include(self, values: dict) -> bool:
        args = [values[f] for f in self._predicate_fields]
        if self._state_arg is not None:
            args.append(self._state_arg)
        return self._predicate_func(*args)

    def _evaluate_columns(self, columns: dict, num_rows: int) -> np.ndarray:
        cols = [columns[f] for f in self._predicate_fields]
        func = self._predicate_func
        extra = [self._state_arg] if self._state_arg is not None else []
        if isinstance(columns, _BatchColumns):
            mask = _series_call(func, self._predicate_fields, columns, extra, num_rows)
            if mask is not None:
                return mask
        out = np.empty(num_rows, dtype=bool)
        for i in range(num_rows):
            out[i] = bool(func(*[c[i] for c in cols], *extra))
        return out


class in_negate(PredicateBase):
    """Include the rows that ``predicate`` excludes."""

    def __init__(self, predicate: PredicateBase) -> None:
        _ensure_predicate(predicate, "in_negate")
        self._predicate = predicate

    def get_fields(self) -> set:
        return self._predicate.get_fields()

    def do_include(self, values: dict) -> bool:
        return not self._predicate.do_include(values)

    def _evaluate_columns(self, columns: dict, num_rows: int) -> np.ndarray:
        return ~_evaluate(self._predicate, columns, num_rows)


class in_reduce(PredicateBase):
    """Combine predicates: ``reduce_func([p.do_include(values) for p in predicate_list])``.

    ``reduce_func`` is typically ``all`` or ``any`` (evaluated with numpy on whole batches); any other
    function is called once per row with the list of booleans.
    """

    def __init__(self, predicate_list: list, reduce_func: Callable) -> None:
        for p in predicate_list:
            _ensure_predicate(p, "in_reduce")
        self._predicate_list = list(predicate_list)
        self._reduce_func = reduce_func

    def get_fields(self) -> set:
        fields: set = set()
        for p in self._predicate_list:
            fields |= set(p.get_fields())
        return fields

    def do_include(self, values: dict) -> bool:
        return self._reduce_func([p.do_include(values) for p in self._predicate_list])

    def _evaluate_columns(self, columns: dict, num_rows: int) -> np.ndarray:
        masks = [_evaluate(p, columns, num_rows) for p in self._predicate_list]
        if self._reduce_func is all:
            return np.logical_and.reduce(masks) if masks else np.ones(num_rows, bool)
        if self._reduce_func is any:
            return np.logical_or.reduce(masks) if masks else np.zeros(num_rows, bool)
        rows = np.stack(masks, axis=1).tolist() if masks else [[] for _ in range(num_rows)]
        return np.fromiter((bool(self._reduce_func(r)) for r in rows), dtype=bool, count=num_rows)


_BUCKET_NUM = sys.maxsize  # the original's bucket count: keeps every split the same as in the original


def _string_to_bucket(string: str, bucket_num: int) -> int:
    return int(hashlib.md5(string.encode("utf-8")).hexdigest(), 16) % bucket_num


class in_pseudorandom_split(PredicateBase):
    """Split a dataset into subsets by a stable hash of a field's value.

    ``str(value)`` is hashed with md5 onto ``[0, 1)``; subset ``i`` holds the values whose hash falls in
    ``[sum(fraction_list[:i]), sum(fraction_list[:i + 1]))``. The assignment depends on the value only
    (no seed), and is the original library's, so splits stay the same across versions.

    Example: ``fraction_list=[0.5, 0.2, 0.3]`` splits into three subsets holding about half, a fifth
    and three tenths of the distinct values. The split is not exact; avoid tiny fractions.

    Parameters
    ----------
    fraction_list : list of float
    subset_index : int
        Which subset this predicate includes, ``0 <= subset_index < len(fraction_list)``.
    predicate_field : str
    """

    def __init__(self, fraction_list: list, subset_index: int, predicate_field: str) -> None:
        if not 0 <= subset_index < len(fraction_list):
            raise PetastormArgumentError(f"subset_index is out of range: {subset_index} for a fraction_list of "
                             f"{len(fraction_list)} items")
        self._predicate_field = predicate_field
        self._bucket_low = sum(fraction_list[:subset_index]) * _BUCKET_NUM
        self._bucket_high = sum(fraction_list[:subset_index + 1]) * _BUCKET_NUM

    def get_fields(self) -> set:
        return {self._predicate_field}

    def do_include(self, values: dict) -> bool:
        if self._predicate_field not in values:
            raise PetastormArgumentError(f"Tested values does not have split key: {self._predicate_field} "
                             f"(got keys {sorted(values)})")
        return self._in_range(values[self._predicate_field])

    def _in_range(self, value: Any) -> bool:
        bucket = _string_to_bucket(str(value), _BUCKET_NUM)
        return self._bucket_low <= bucket < self._bucket_high

    def _evaluate_columns(self, columns: dict, num_rows: int) -> np.ndarray:
        col = columns[self._predicate_field]
        if _is_plain_scalar_column(col) and col.dtype.kind in "biuUS":
            uniques, inverse = np.unique(col, return_inverse=True)
            hits = np.fromiter((self._in_range(v) for v in uniques), dtype=bool, count=len(uniques))
            return hits[inverse.reshape(-1)]
        return _row_loop(self, columns, num_rows)


def _ensure_predicate(p: Any, where: str) -> None:
    if not isinstance(p, PredicateBase):
        # the original's ValueError and lead phrase (recorded from 0.12.1), then what is wrong
        raise PetastormArgumentError(f"Predicate is nor derived from PredicateBase: {where} takes predicates "
                                     f"(PredicateBase instances), got {type(p).__name__}: {p!r}")


def _evaluate(predicate: Any, columns: dict, num_rows: int) -> np.ndarray:
    if _is_users(predicate):  # a user's PredicateBase subclass, or a duck-typed get_fields/do_include
        if isinstance(columns, _BatchColumns):
            mask = _frame_call(predicate, columns, num_rows)
        else:
            mask = _row_loop(predicate, columns, num_rows)
    else:
        mask = predicate._evaluate_columns(columns, num_rows)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != (num_rows,):
        raise PetastormSchemaError(f"predicate {type(predicate).__name__} produced a mask of shape {mask.shape}, "
                                   f"expected ({num_rows},)")
    return mask


def evaluate_predicate(predicate: Any, columns: dict, num_rows: int, batch: bool = False) -> np.ndarray:
    """Which rows of a column batch pass ``predicate``.

    Parameters
    ----------
    predicate : PredicateBase (or any object with ``get_fields`` and ``do_include``)
    columns : dict of str to numpy.ndarray
        Must hold every field of ``predicate.get_fields()``; each array has ``num_rows`` rows (shape
        ``(num_rows,) + field shape`` or an object array of shape ``(num_rows,)``).
    num_rows : int
    batch : bool
        For ``make_batch_reader``: a predicate of the user's gets one ``pandas.DataFrame`` of its fields
        (the original's contract) instead of a dict per row.

    Returns
    -------
    numpy.ndarray of bool, shape ``(num_rows,)``.

    Raises
    ------
    PetastormSchemaError
        If a field the predicate needs is not in ``columns``.
    """
    needed = set(predicate.get_fields())
    missing = sorted(n for n in needed if n not in columns)
    if missing:
        raise PetastormSchemaError(
            f"predicate {type(predicate).__name__} needs field(s) {missing} that are not in the data "
            f"(available: {sorted(columns)})")
    if num_rows == 0:
        return np.zeros(0, dtype=bool)
    return _evaluate(predicate, _BatchColumns(columns) if batch else columns, num_rows)
