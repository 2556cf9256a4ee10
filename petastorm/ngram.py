"""NGram: read windows of consecutive rows (by a timestamp field) instead of single rows.

An :class:`NGram` names the fields to return at each offset of the window, the timestamp field that
orders rows, and the largest gap allowed between consecutive timestamps in a window. Windows are
formed within one row group; they never span two. A work item that is a slice of a row group (a drop
partition, a balanced-shard slice) reads the whole row group and keeps the windows whose first row is in
its slice (:func:`windows_in_row_slice`).

The reader's worker calls :meth:`NGram.form_ngrams_from_columns` on a decoded column batch; the
per-row :meth:`NGram.form_ngram` of the original is kept for users.
"""
from __future__ import annotations

import numbers
from typing import Any, Optional

import numpy as np

from petastorm.errors import PetastormArgumentError, PetastormSchemaError, PetastormValueTypeError
from petastorm.unischema import Unischema, UnischemaField, match_unischema_fields

__all__ = ["NGram", "ngram_window_starts", "windows_in_row_slice"]


class NGram:
    """Windows of ``length`` consecutive rows, as dicts of offset -> row.

    Consecutive rows of a window are no further apart than ``delta_threshold`` (inclusive) in
    ``timestamp_field``. Offsets are the keys of ``fields``: with ``fields = {-1: [...], 0: [...]}``
    each window is ``{-1: earlier_row, 0: later_row}``, each row holding only the fields listed at its
    offset. Offsets between the smallest and largest key that ``fields`` does not list are part of
    the window with no fields (``{-1: [...], 1: [...]}`` has length 3; offset 0 is empty).

    Example (delta_threshold=4, timestamps A=0, B=3, C=8, D=10, E=11, G=20, H=30, offsets -1 and 0):
    the windows are ``{-1: A, 0: B}``, ``{-1: C, 0: D}``, ``{-1: D, 0: E}``; (B, C), (E, G) and (G, H)
    are more than 4 apart. With ``timestamp_overlap=False`` a window starts only at a timestamp greater
    than the last timestamp of the previous window returned, so windows share no row:
    ``{-1: A, 0: B}``, ``{-1: C, 0: D}``.

    Parameters
    ----------
    fields : dict of int to list of (UnischemaField or str)
        Fields at each offset; strings are regular expressions matched against the schema's field
        names (resolved by :meth:`resolve_regex_field_names`).
    delta_threshold : number
        Largest difference allowed between the timestamps of two consecutive rows of a window.
    timestamp_field : UnischemaField or str
        The field that orders rows (a name or regular expression).
    timestamp_overlap : bool
        If False, windows returned from one row group share no rows.
    """

    def __init__(self, fields: dict, delta_threshold: Any, timestamp_field: Any,
                 timestamp_overlap: bool = True) -> None:
        self._validate_ngram(fields, delta_threshold, timestamp_field, timestamp_overlap)
        self._fields = {k: list(v) for k, v in fields.items()}
        self._delta_threshold = delta_threshold
        self._timestamp_field = timestamp_field
        self.timestamp_overlap = timestamp_overlap

    @staticmethod
    def _validate_ngram(fields: Any, delta_threshold: Any, timestamp_field: Any, timestamp_overlap: Any) -> None:
        if fields is None or not isinstance(fields, dict):
            raise PetastormArgumentError("Fields must be set and must be a dictionary.")
        if not fields:
            raise PetastormArgumentError("Fields must be set and must be a dictionary. Got an empty dictionary: give the "
                             "fields of at least one offset")
        for key, value in fields.items():
            if isinstance(key, bool) or not isinstance(key, numbers.Integral):
                raise PetastormArgumentError(f"NGram offsets (the keys of fields) must be integers, got {key!r}")
            if not isinstance(value, list):
                raise PetastormArgumentError(f"Each field value must be a list of unischema fields/regular expression(s); "
                                 f"offset {key} has {type(value).__name__}: {value!r}")
            for field in value:
                if not isinstance(field, (UnischemaField, str)):
                    raise PetastormArgumentError(f"All field values must be of type UnischemaField/regular expression; "
                                     f"offset {key} has {type(field).__name__}: {field!r}")
        if delta_threshold is None or isinstance(delta_threshold, bool) or \
                not isinstance(delta_threshold, (numbers.Number, np.timedelta64)):
            raise PetastormArgumentError(f"delta_threshold must be a number. Got {delta_threshold!r}")
        if timestamp_field is None or not isinstance(timestamp_field, (UnischemaField, str)):
            raise PetastormArgumentError(f"timestamp_field must be set and must be of type UnischemaField or regular "
                             f"expression. Got {timestamp_field!r}")
        if timestamp_overlap is None or not isinstance(timestamp_overlap, bool):
            raise PetastormArgumentError(f"timestamp_overlap must be set and must be of type bool. Got {timestamp_overlap!r}")

    # --- the original's public accessors ----------------------------------------------------------------

    @property
    def length(self) -> int:
        """Number of rows in a window: ``max(offsets) - min(offsets) + 1``."""
        return max(self._fields) - min(self._fields) + 1

    @property
    def fields(self) -> dict:
        """Offset -> list of fields (UnischemaFields once resolved)."""
        return self._fields

    @property
    def delta_threshold(self) -> Any:
        """Largest timestamp difference allowed between consecutive rows."""
        return self._delta_threshold

    @property
    def timestamp_field(self) -> Any:
        """The timestamp field (a UnischemaField once resolved)."""
        return self._timestamp_field

    def _timestamp_name(self) -> str:
        ts = self._timestamp_field
        return ts.name if isinstance(ts, UnischemaField) else ts

    def get_field_names_at_timestep(self, timestep: int) -> list:
        """Names of the fields at offset ``timestep`` (``[]`` for an offset with no fields)."""
        if timestep not in self._fields:
            return []
        return [f.name if isinstance(f, UnischemaField) else f for f in self._fields[timestep]]

    def get_schema_at_timestep(self, schema: Unischema, timestep: int) -> Unischema:
        """The view of ``schema`` holding the fields at offset ``timestep``, in schema order (as the
        original's ngram rows)."""
        names = set(self.get_field_names_at_timestep(timestep))
        return schema.create_schema_view([f for n, f in schema.fields.items() if n in names])

    def get_field_names_at_all_timesteps(self) -> list:
        """Fields present at one offset at least (as the original: a list of the field objects, each once,
        in offset order; the timestamp field only if an offset lists it)."""
        seen: dict = {}
        for key in sorted(self._fields):
            for f in self._fields[key]:
                seen.setdefault(f.name if isinstance(f, UnischemaField) else f, f)
        return list(seen.values())

    def resolve_regex_field_names(self, schema: Unischema) -> None:
        """Replace the regular expressions in ``fields`` and ``timestamp_field`` by the schema's fields.

        Raises
        ------
        PetastormSchemaError
            If the timestamp field (name or pattern) matches no field of ``schema``, or matches several.
        """
        self._fields = {k: self.convert_fields(schema, v) for k, v in self._fields.items()}
        ts = self.convert_fields(schema, [self._timestamp_field])
        if len(ts) != 1:
            raise PetastormSchemaError(
                f"NGram timestamp_field {self._timestamp_name()!r} matches {len(ts)} fields of schema "
                f"{schema._name!r} ({[f.name for f in ts]}); it must match exactly one of {list(schema.fields)}")
        self._timestamp_field = ts[0]

    def convert_fields(self, unischema: Unischema, field_list: list) -> list:
        """UnischemaFields of ``field_list`` (fields kept, regular expressions matched against the schema)."""
        explicit = [f for f in field_list if isinstance(f, UnischemaField)]
        patterns = [f for f in field_list if isinstance(f, str)]
        out: dict = {}
        for f in explicit:
            out.setdefault(f.name, f)
        for f in match_unischema_fields(unischema, patterns):
            out.setdefault(f.name, f)
        return list(out.values())

    def make_namedtuple(self, schema: Unischema, ngram_as_dicts: dict) -> dict:
        """``{offset: dict of values}`` -> ``{offset: namedtuple of the schema view at that offset}``."""
        return {t: schema.create_schema_view([f for n, f in schema.fields.items() if n in d]).make_namedtuple(**d)
                for t, d in ngram_as_dicts.items()}

    # --- forming windows ---------------------------------------------------------------------------------

    def _window_from_rows(self, rows: list) -> dict:
        base = min(self._fields)
        out = {}
        for k, row in enumerate(rows):
            names = self.get_field_names_at_timestep(base + k)
            out[base + k] = {n: row[n] for n in names if n in row}
        return out

    def form_ngram(self, data: list, schema: Unischema) -> list:
        """All the windows of a list of rows (dicts), in order.

        Parameters
        ----------
        data : list of dict
            Rows sorted by the timestamp field.
        schema : Unischema
            Unused (kept for the original's signature).

        Returns
        -------
        list of dict of offset -> dict of field values.

        Raises
        ------
        NotImplementedError
            If the rows are not sorted by the timestamp field (the original's exception).
        """
        ts_name = self._timestamp_name()
        n = self.length
        for i in range(len(data) - 1):
            if data[i + 1][ts_name] < data[i][ts_name] and len(data) >= n > 1:
                raise NotImplementedError(
                    f"NGram assumes that the data is sorted by {ts_name} field which is not the case "
                    f"(row {i + 1} has {data[i + 1][ts_name]!r} after {data[i][ts_name]!r})")
        timestamps = [row[ts_name] for row in data]
        starts = _window_starts_py(timestamps, n, self._delta_threshold, self.timestamp_overlap)
        return [self._window_from_rows(data[s:s + n]) for s in starts]

    def form_ngrams_from_columns(self, columns: dict, num_rows: int, schema: Optional[Unischema] = None,
                                 row_slice: Optional[tuple] = None) -> list:
        """All the windows of a column batch (one work item).

        Rows are first sorted by the timestamp column (stable sort, so equal timestamps keep batch
        order); windows are then formed as in :meth:`form_ngram`.

        Parameters
        ----------
        columns : dict of str to numpy.ndarray
            Decoded columns, each with ``num_rows`` rows; must hold the timestamp field and every field of
            :meth:`get_field_names_at_all_timesteps`.
        num_rows : int
        schema : Unischema, optional
            Unused; for symmetry with :meth:`form_ngram`.
        row_slice : tuple of (int, int, int), optional
            ``(row_start, row_stop, rows_in_group)`` when the batch holds a whole row group but the work
            item is one of its drop partitions (or balanced-shard slices): only the windows anchored in
            rows ``[row_start, row_stop)`` are returned (:func:`windows_in_row_slice`), so the partitions
            of a row group together return each of its windows exactly once.

        Returns
        -------
        list of dict of offset -> dict of field name -> value (a numpy scalar or an array view of
        the row in its column).

        Raises
        ------
        PetastormSchemaError
            If the timestamp column is missing or holds None. Other fields missing from the batch (removed
            by a TransformSpec) are left out of the windows, as in 0.12.1.
        PetastormValueTypeError
            If consecutive timestamps cannot be subtracted and compared with ``delta_threshold`` (a string
            timestamp field, say); a ``TypeError`` as 0.12.1's.
        """
        ts_name = self._timestamp_name()
        base = min(self._fields)
        n = self.length
        if ts_name not in columns:
            raise PetastormSchemaError(f"NGram needs the timestamp column {ts_name!r} that the batch does not hold "
                                       f"(batch columns: {sorted(columns)}; a TransformSpec may not remove it)")
        if num_rows < n:
            return []
        timestamps = _timestamp_array(columns[ts_name], ts_name)
        order = np.argsort(timestamps, kind="stable")
        sorted_ts = timestamps[order]
        try:
            starts = ngram_window_starts(sorted_ts, n, self._delta_threshold, self.timestamp_overlap)
        except TypeError as exc:  # e.g. a string timestamp: numpy's bare UFuncTypeError names no field
            raise PetastormValueTypeError(
                f"NGram timestamp field {ts_name!r} (dtype {sorted_ts.dtype}) cannot be compared with "
                f"delta_threshold={self._delta_threshold!r}: consecutive timestamps must subtract to a value "
                f"comparable with it ({exc})") from exc
        if row_slice is not None:
            starts = starts[windows_in_row_slice(order[starts], num_rows, *row_slice)]
        # a field listed at an offset but not in the batch (a TransformSpec's removed_fields) is left out of
        # the windows, as 0.12.1 does
        per_offset = [(base + k, [(name, columns[name]) for name in self.get_field_names_at_timestep(base + k)
                                  if name in columns])
                      for k in range(n)]
        result = []
        for s in starts.tolist():
            window = {}
            for k, (offset, cols) in enumerate(per_offset):
                row = order[s + k]
                window[offset] = {name: col[row] for name, col in cols}
            result.append(window)
        return result

    def __eq__(self, other: object) -> bool:
        """Equal when both list the same fields at each offset (order and repeats aside, as the original),
        and have the same ``delta_threshold``, ``timestamp_field`` and ``timestamp_overlap``.

        Fields compare as given: a regular expression is not equal to the field it matches until
        :meth:`resolve_regex_field_names` replaced it. Unhashable, as the original.
        """
        if not isinstance(other, NGram):
            return NotImplemented
        return (self._fields.keys() == other._fields.keys()
                and all(_same_items(v, other._fields[k]) for k, v in self._fields.items())
                and bool(self._delta_threshold == other._delta_threshold)
                and self._timestamp_field == other._timestamp_field
                and self.timestamp_overlap == other.timestamp_overlap)

    def __ne__(self, other: object) -> bool:
        result = self.__eq__(other)
        return result if result is NotImplemented else not result

    __hash__ = None  # type: ignore[assignment]  # mutable (resolve_regex_field_names), as the original

    def __repr__(self) -> str:
        return (f"NGram(fields={self._fields!r}, delta_threshold={self._delta_threshold!r}, "
                f"timestamp_field={self._timestamp_field!r}, timestamp_overlap={self.timestamp_overlap!r})")


def _same_items(a: list, b: list) -> bool:
    """``set(a) == set(b)`` for lists of UnischemaFields and strings."""
    return all(x in b for x in a) and all(x in a for x in b)


def _timestamp_array(col: Any, name: str) -> np.ndarray:
    col = np.asarray(col)
    if col.ndim != 1:
        raise PetastormSchemaError(f"NGram timestamp field {name!r} must be a scalar column, got shape {col.shape[1:]}")
    if col.dtype == object:
        if any(v is None for v in col):
            raise PetastormSchemaError(f"NGram timestamp field {name!r} holds None values; timestamps must be set")
        converted = np.asarray(col.tolist())
        if converted.dtype != object:
            return converted
    return col


def ngram_window_starts(timestamps: np.ndarray, length: int, delta_threshold: Any,
                        timestamp_overlap: bool = True) -> np.ndarray:
    """First row of every window, given timestamps sorted ascending.

    A window ``[s, s + length)`` qualifies when every consecutive difference inside it is
    ``<= delta_threshold``. With ``timestamp_overlap=False``, qualifying windows are taken greedily in
    order, skipping any whose first timestamp is not greater than the last timestamp of the window
    taken before it (the original's rule).

    Parameters
    ----------
    timestamps : numpy.ndarray, shape (rows,)
        Sorted ascending.
    length : int
        Rows per window, >= 1.
    delta_threshold : number
    timestamp_overlap : bool

    Returns
    -------
    numpy.ndarray of int64, shape (windows,), increasing.
    """
    ts = np.asarray(timestamps)
    rows = len(ts)
    if rows < length:
        return np.zeros(0, dtype=np.int64)
    if length == 1:
        ok_starts = np.ones(rows, dtype=bool)
    else:
        too_far = np.asarray((ts[1:] - ts[:-1]) > delta_threshold, dtype=bool)  # shape (rows - 1,)
        bad = np.concatenate([[0], np.cumsum(too_far, dtype=np.int64)])
        # window s covers gaps s .. s + length - 2
        ok_starts = (bad[length - 1:] - bad[:rows - length + 1]) == 0
    starts = np.flatnonzero(ok_starts).astype(np.int64)
    if timestamp_overlap or len(starts) == 0:
        return starts
    taken = []
    last_end = None
    for s in starts.tolist():
        if last_end is not None and not ts[s] > last_end:
            continue
        taken.append(s)
        last_end = ts[s + length - 1]
    return np.asarray(taken, dtype=np.int64)


def windows_in_row_slice(first_rows: np.ndarray, num_rows: int, row_start: int, row_stop: int,
                         rows_in_group: int) -> np.ndarray:
    """Which windows of a whole row group belong to the row slice ``[row_start, row_stop)`` of it.

    A window belongs to the slice holding its first row, so the slices of a row group (its drop
    partitions) deal its windows out exactly once each, and a window may run past the end of its slice:
    the windows of all the partitions are those of the whole row group (petastorm 0.12.1 reads the rows of
    a partition plus the ``length - 1`` after it, and returns the windows that start in the partition: the
    same set when no predicate drops rows). When a predicate dropped rows, the batch's ``num_rows`` rows
    are spread over the group's ``rows_in_group`` in proportion (batch row ``i`` counts as row
    ``i * rows_in_group // num_rows``): each window still goes to exactly one slice.

    Parameters
    ----------
    first_rows : numpy.ndarray, shape (windows,), int
        Batch row of the first row of each window.
    num_rows : int
        Rows in the batch (the row group after any predicate).
    row_start, row_stop : int
        The slice, in rows of the row group.
    rows_in_group : int
        Rows in the row group before any predicate.

    Returns
    -------
    numpy.ndarray of bool, shape (windows,)
    """
    first_rows = np.asarray(first_rows, dtype=np.int64)
    anchors = first_rows if num_rows == rows_in_group else first_rows * rows_in_group // max(num_rows, 1)
    return (anchors >= row_start) & (anchors < row_stop)


def _window_starts_py(timestamps: list, length: int, delta_threshold: Any, timestamp_overlap: bool) -> list:
    """:func:`ngram_window_starts` over Python values (any type with ``-`` and ``<=``)."""
    rows = len(timestamps)
    starts = []
    last_end = None
    for s in range(rows - length + 1):
        if not timestamp_overlap and last_end is not None and not timestamps[s] > last_end:
            continue
        if all(timestamps[i + 1] - timestamps[i] <= delta_threshold for i in range(s, s + length - 1)):
            starts.append(s)
            last_end = timestamps[s + length - 1]
    return starts
