"""The balanced sharding mode's global sequence: every item of the dataset in one seeded order, cut into
equal row ranges, one per shard (see :func:`petastorm.reader_impl.plan.make_epoch_plan`).

Pure numpy functions of the row counts, the options and the epoch. Items are three int64 arrays of equal
length, ``(row_group, start, stop)``: row group ``row_group[i]``'s rows ``[start[i], stop[i])``. The
sequence never depends on ``cur_shard``/``shard_count``, so elastic resume can deal it again to another
number of shards (:func:`cut_sequence`).

With row filters or a predicate that drop rows, the reader plans with :class:`PassingRows` (the rows of each
row group that pass, counted at plan time): the sequence and the deal are then in *passing-row* space (every
shard gets the same number of the rows that pass, +-1 with ``'drop'``), and :func:`dealt_items` turns each
slice of passing rows back into the smallest slice of stored rows that holds them (the worker applies the
filters again there and keeps exactly those rows). Costs: the filter/predicate columns of every selected row
group are read (and the predicate's fields decoded and the predicate evaluated) once at plan time, on every
rank (:mod:`~petastorm.reader_impl.passing_rows`); the predicate must be a function of the row.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np

from petastorm.errors import NoDataAvailableError
from petastorm.reader_impl.plan_options import PlanOptions, ensure_rows, seed_entropy

__all__ = ["split_row_groups", "balanced_shard_bounds", "balanced_sequence", "cut_sequence",
           "balanced_dealt_items", "PassingRows", "passing_of", "dealt_items"]

# Tags that keep the balanced mode's random streams apart from the planner's others (plan.py uses 1 and 2).
_TAG_BALANCED = 3       # per-epoch global order of the balanced mode
_TAG_BALANCED_FIXED = 4  # epoch-independent global order of the balanced mode (shard_seed, no shuffle)


class PassingRows(np.ndarray):
    """Rows per row group that pass the row filters / predicate (int64, shape (n_groups,)), with the stored-row
    indices of those rows in ``passing`` (a tuple, one entry per row group: a sorted int32/int64 array, or None
    when every stored row of the group passes: 4 bytes per passing row of the groups the filters cut, 0 for the
    others).

    A plain ndarray everywhere a row count is read (totals, elastic deals); the balanced planner reads
    ``passing`` (:func:`passing_of`) to map passing rows back to stored rows. Build with :meth:`of`.
    """

    passing: tuple

    @classmethod
    def of(cls, passing: Sequence[np.ndarray], stored_rows: Sequence[int] | None = None) -> "PassingRows":
        """From the stored-row indices of the passing rows of each row group (and the stored rows of each, to
        keep no indices for the groups whose rows all pass)."""
        arrays = [np.asarray(p, dtype=np.int64) for p in passing]
        counts = np.fromiter((len(p) for p in arrays), dtype=np.int64, count=len(arrays)).view(cls)
        stored = None if stored_rows is None else np.asarray(stored_rows, dtype=np.int64).tolist()
        kept = []
        for g, a in enumerate(arrays):
            if stored is not None and len(a) == stored[g]:
                kept.append(None)  # every row passes: row k of the passing rows is stored row k
            else:
                kept.append(a.astype(np.int32) if len(a) and a[-1] < 2 ** 31 else a)
        counts.passing = tuple(kept)
        return counts

    def __array_finalize__(self, obj) -> None:
        # a slice or a computation from these counts is a plain count array: no mapping
        self.passing = None


def passing_of(rows_per_group) -> "tuple | None":
    """The passing-row indices carried by ``rows_per_group`` (a :class:`PassingRows`), else None."""
    return getattr(rows_per_group, "passing", None) if isinstance(rows_per_group, PassingRows) else None


def _to_stored(rg: np.ndarray, starts: np.ndarray, stops: np.ndarray, passing: tuple):
    """Passing-row items ``[start, stop)`` as stored-row items (from the first passing row of the slice to
    just after its last), with the number of passing rows each holds."""
    def stored(g: int, k: int) -> int:
        index = passing[g]
        return k if index is None else int(index[k])

    first = np.fromiter((stored(g, s) for g, s in zip(rg.tolist(), starts.tolist())), dtype=np.int64,
                        count=len(rg))
    last = np.fromiter((stored(g, e - 1) for g, e in zip(rg.tolist(), stops.tolist())), dtype=np.int64,
                       count=len(rg))
    return rg, first, last + 1, stops - starts


def dealt_items(rows_per_group, options: PlanOptions, epoch: int, ranges: Sequence[Sequence[int]]):
    """The items covering the ``[lo, hi)`` ranges of the epoch's global sequence (an elastic deal), as
    stored-row items.

    Returns
    -------
    rg, starts, stops : np.ndarray, int64
        Row group and stored rows ``[start, stop)`` of each item.
    dealt : np.ndarray of int64 or None
        Rows of the sequence each item holds (the rows that pass) when ``rows_per_group`` is a
        :class:`PassingRows`; None otherwise (every stored row is dealt).
    """
    rg, starts, stops, cum = balanced_sequence(rows_per_group, options, epoch)
    rg, starts, stops = cut_sequence(rg, starts, stops, cum, ranges)
    passing = passing_of(rows_per_group)
    if passing is None:
        return rg, starts, stops, None
    return _to_stored(rg, starts, stops, passing)


def split_row_groups(groups: np.ndarray, rows: np.ndarray, parts: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Items ``(row_group, start, stop)`` splitting each of ``groups`` (in order) into ``parts`` slices.

    Empty slices are left out. Returns three int64 arrays of equal length.
    """
    n = rows[groups]
    k = np.arange(parts, dtype=np.int64)
    # slice j is rows [ceil(n * j / parts), ceil(n * (j + 1) / parts)): the earlier slices take the extra rows,
    # as 0.12.1's do (recorded: 5 rows in 2 parts are [3, 2], 6 rows in 4 parts [2, 1, 2, 1])
    starts = -((-n[:, None] * k[None, :]) // parts)
    stops = -((-n[:, None] * (k + 1)[None, :]) // parts)
    rg = np.repeat(groups, parts)
    starts, stops = starts.ravel(), stops.ravel()
    keep = stops > starts
    return rg[keep], starts[keep], stops[keep]


def _cut(rg: np.ndarray, starts: np.ndarray, stops: np.ndarray, cum: np.ndarray, lo: int, hi: int):
    """The items covering rows ``[lo, hi)`` of the sequence formed by concatenating the items.

    ``cum`` is ``np.cumsum(stops - starts)``; ``0 <= lo < hi <= cum[-1]``.
    """
    i0 = int(np.searchsorted(cum, lo, side="right"))
    i1 = int(np.searchsorted(cum, hi, side="left"))
    rg, s, e = rg[i0:i1 + 1], starts[i0:i1 + 1].copy(), stops[i0:i1 + 1].copy()
    before = cum[i0] - (stops[i0] - starts[i0])  # sequence row of item i0's first row
    s[0] += lo - before
    e[-1] -= cum[i1] - hi
    return rg, s, e


def balanced_shard_bounds(total_rows: int, shard_count: int, cur_shard: int,
                          remainder: str = "drop") -> tuple[int, int]:
    """Range ``[start, stop)`` of the epoch's global row sequence dealt to ``cur_shard`` (balanced mode).

    Every shard gets ``floor(total_rows / shard_count)`` rows (``remainder='drop'``) or ``ceil``
    (``'pad'``; ``stop`` may then exceed ``total_rows``: positions wrap to the start of the sequence).
    """
    per = total_rows // shard_count if remainder == "drop" else -(-total_rows // shard_count)
    return cur_shard * per, (cur_shard + 1) * per


def balanced_sequence(rows_per_group: Sequence[int] | np.ndarray, options: PlanOptions, epoch: int) -> tuple:
    """The epoch's global sequence of the balanced mode, before it is dealt to shards.

    It depends on the row counts, ``shuffle_row_groups``, ``shuffle_row_drop_partitions``, ``shard_seed``
    and the epoch, never on ``cur_shard``/``shard_count`` (elastic resume deals it again to another
    number of shards).

    Returns
    -------
    rg, starts, stops, cum : np.ndarray, shape (n_items,), int64
        The items in sequence order (row group, first row, end row) and the cumulative row counts.
    """
    rows = ensure_rows(rows_per_group)
    parts = int(options.shuffle_row_drop_partitions)
    rg, starts, stops = split_row_groups(np.arange(len(rows), dtype=np.int64), rows, parts)
    shard_seed = options.shard_seed
    if options.shuffle_row_groups and len(rg) > 1:
        key = (seed_entropy(0 if shard_seed is None else shard_seed), epoch, _TAG_BALANCED)
        perm = np.random.default_rng(key).permutation(len(rg))
        rg, starts, stops = rg[perm], starts[perm], stops[perm]
    elif shard_seed and len(rg) > 1:
        perm = np.random.default_rng((seed_entropy(shard_seed), _TAG_BALANCED_FIXED)).permutation(len(rg))
        rg, starts, stops = rg[perm], starts[perm], stops[perm]
    return rg, starts, stops, np.cumsum(stops - starts)


def cut_sequence(rg: np.ndarray, starts: np.ndarray, stops: np.ndarray, cum: np.ndarray,
                 ranges: Sequence[Sequence[int]]) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The items covering the given ``[lo, hi)`` ranges of a global sequence, in range order.

    Positions at or past the sequence's total wrap to its start (the ``'pad'`` remainder). Returns
    three int64 arrays ``(row_group, start, stop)``.
    """
    total = int(cum[-1]) if len(cum) else 0
    pieces = []
    for lo, hi in ranges:
        lo, hi = int(lo), int(hi)
        while lo < hi and total:
            a = lo % total
            b = min(total, a + (hi - lo))
            pieces.append(_cut(rg, starts, stops, cum, a, b))
            lo += b - a
    if not pieces:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty.copy(), empty.copy()
    return tuple(np.concatenate([p[i] for p in pieces]) for i in range(3))


def balanced_dealt_items(rows: np.ndarray, options: PlanOptions, epoch: int) -> tuple:
    """This shard's items of the epoch (``options.cur_shard`` of ``options.shard_count``), in sequence order,
    and, as :func:`dealt_items`, the rows each item is dealt (None: all its rows).

    Returns ``(row_group, start, stop, dealt)``: int64 arrays of the row group and stored rows
    ``[start, stop)`` of each item, and ``dealt`` as :func:`dealt_items` gives it.

    Raises
    ------
    NoDataAvailableError
        No row is selected, or the shard's range would be empty (``'drop'`` with fewer rows than shards).
    """
    total = int(ensure_rows(rows).sum())
    lo, hi = balanced_shard_bounds(total, options.shard_count, options.cur_shard, options.balanced_remainder)
    if total == 0:
        raise NoDataAvailableError(
            f"shard {options.cur_shard} of {options.shard_count} would be empty: no row is selected (the "
            f"selected row groups hold none, or rowgroup_selector/filters/predicate select none)")
    if hi <= lo:
        raise NoDataAvailableError(
            f"shard {options.cur_shard} of {options.shard_count} would be empty: shard_mode='balanced' "
            f"with balanced_remainder={options.balanced_remainder!r} deals {total} rows"
            f"{' (the rows that pass the filters / predicate)' if passing_of(rows) is not None else ''} to "
            f"{options.shard_count} shards, {hi - lo} each. Use fewer shards"
            + (" or balanced_remainder='pad'" if total and options.balanced_remainder == "drop" else ""))
    return dealt_items(rows, options, epoch, [(lo, hi)])  # wraps around only when padding
