"""The pure planning stage: which rows each epoch reads, in which order, as a list of :class:`WorkItem`.

Everything here is a pure function of the row counts of the selected row groups, the options, the seed
and the epoch: no I/O, no clock, no global random state. Random streams come from
``numpy.random.default_rng((seed, epoch, tag))`` (and, for the original sharding, from a private
``random.Random(shard_seed)``), so the same inputs always give the same plan on every machine, pool type
and worker count. Resuming a reader regenerates the plan and skips to the saved position.

Two sharding modes (``PlanOptions.shard_mode``):

``'original'``
    The original library's assignment (measured as a black box): shard ``k`` reads the row groups whose
    dataset-order index is ``k`` modulo ``shard_count``; a non-zero ``shard_seed`` only reorders them
    (:func:`shard_row_groups`). The set of row groups of a shard does not depend on the epoch; shards
    may differ in row count.
``'balanced'``
    Every shard yields exactly the same number of rows per epoch, so distributed ranks never wait on
    each other. See :func:`make_epoch_plan` for the algorithm and its trade-offs.
"""
from __future__ import annotations

import operator
import random
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from petastorm.errors import NoDataAvailableError, PetastormArgumentError
from petastorm.reader_impl.work_item import WorkItem

__all__ = [
    "PlanOptions",
    "SHARD_MODES",
    "BALANCED_REMAINDERS",
    "shard_row_groups",
    "balanced_shard_bounds",
    "make_epoch_plan",
    "rows_in_epoch",
    "plan_row_offsets",
    "locate_global_row",
    "balanced_sequence",
    "cut_sequence",
    "items_to_plan",
]

#: Accepted values of ``PlanOptions.shard_mode``.
SHARD_MODES = ("original", "balanced")
#: Accepted values of ``PlanOptions.balanced_remainder``.
BALANCED_REMAINDERS = ("drop", "pad")

# Tags that keep the random streams of the planner independent of each other.
_TAG_ORDER = 1          # order of the items of a shard (original mode / no sharding)
_TAG_ROWS = 2           # per-item row seeds (shuffle_rows)
_TAG_BALANCED = 3       # per-epoch global order of the balanced mode
_TAG_BALANCED_FIXED = 4  # epoch-independent global order of the balanced mode (shard_seed, no shuffle)

# The original's wording, kept at the start of our messages (user code matches on it).
_BOTH_SHARD_ARGS = "partition and num_partitions must be ints and both specified to use partitioning"
_TOO_MANY_SHARDS = ("Number of row-groups in the dataset must be greater or equal to the number of requested "
                    "shards. Otherwise, some of the shards will end up being empty.")

_U64 = np.uint64
_MASK63 = np.uint64((1 << 63) - 1)


def _entropy(value: int) -> int:
    """A non-negative int for ``SeedSequence`` (which refuses negative entropy); injective on 128 bits."""
    return int(value) % (1 << 128)


def _is_int(value) -> bool:
    try:
        operator.index(value)
    except TypeError:
        return False
    return True


@dataclass(frozen=True)
class PlanOptions:
    """Options that decide the plan; see :func:`make_epoch_plan`.

    Attributes
    ----------
    seed : int
        Seed of the row-group and row order. The reader resolves ``seed=None`` to a random int before
        planning, so the planner always gets an int (any sign, any size).
    shuffle_row_groups : bool
        Shuffle the order of the items (row groups or their drop partitions) every epoch.
    shuffle_rows : bool
        Give each item a ``row_seed`` so the worker permutes its rows.
    shuffle_row_drop_partitions : int
        Split every row group into this many contiguous row slices, each a separate item (>= 1).
    cur_shard, shard_count : int or None
        This shard and the number of shards; both or neither.
    shard_seed : int or None
        ``'original'`` mode: a non-zero value reorders the shard's row groups as the original does (the
        assignment itself never changes). ``'balanced'`` mode: seed of the global order that is dealt to
        the shards (the same on every rank). 0 and None mean the same.
    shard_mode : str
        ``'original'`` or ``'balanced'``.
    balanced_remainder : str
        ``'drop'`` (shards get ``floor(total / shard_count)`` rows) or ``'pad'`` (``ceil``, the
        remainder padded with rows from the start of the epoch's global sequence). Balanced mode only.
    """

    seed: int
    shuffle_row_groups: bool = True
    shuffle_rows: bool = False
    shuffle_row_drop_partitions: int = 1
    cur_shard: Optional[int] = None
    shard_count: Optional[int] = None
    shard_seed: Optional[int] = None
    shard_mode: str = "original"
    balanced_remainder: str = "drop"

    @property
    def sharded(self) -> bool:
        """True when ``cur_shard``/``shard_count`` are set."""
        return self.shard_count is not None

    def validate(self) -> "PlanOptions":
        """Check every option; raise :class:`PetastormArgumentError` naming the argument and value.

        Returns ``self`` so it can be chained.
        """
        if not _is_int(self.seed):
            raise PetastormArgumentError(
                f"seed must be an int for planning, got {self.seed!r} ({type(self.seed).__name__})")
        if not _is_int(self.shuffle_row_drop_partitions) or self.shuffle_row_drop_partitions < 1:
            raise PetastormArgumentError(
                f"shuffle_row_drop_partitions must be a positive integer, got "
                f"{self.shuffle_row_drop_partitions!r}")
        _check_shard_args(self.cur_shard, self.shard_count, self.shard_seed)
        if self.shard_mode not in SHARD_MODES:
            raise PetastormArgumentError(
                f"shard_mode must be one of {', '.join(map(repr, SHARD_MODES))}, got {self.shard_mode!r}")
        if self.balanced_remainder not in BALANCED_REMAINDERS:
            raise PetastormArgumentError(
                f"balanced_remainder must be one of {', '.join(map(repr, BALANCED_REMAINDERS))}, got "
                f"{self.balanced_remainder!r}")
        return self


def _check_shard_args(cur_shard, shard_count, shard_seed) -> None:
    if (cur_shard is None) != (shard_count is None):
        given, missing = ("cur_shard", "shard_count") if shard_count is None else ("shard_count", "cur_shard")
        raise PetastormArgumentError(
            f"{_BOTH_SHARD_ARGS}: {given}={cur_shard if given == 'cur_shard' else shard_count!r} was given "
            f"without {missing}; pass both cur_shard and shard_count, or neither")
    if shard_count is None:
        if shard_seed is not None and not _is_int(shard_seed):
            raise PetastormArgumentError(f"shard_seed must be an int or None, got {shard_seed!r}")
        return
    if not _is_int(shard_count) or shard_count < 1:
        raise PetastormArgumentError(
            f"{_BOTH_SHARD_ARGS}: shard_count must be a positive integer, got shard_count={shard_count!r}")
    if not _is_int(cur_shard):
        raise PetastormArgumentError(
            f"{_BOTH_SHARD_ARGS}: cur_shard must be an integer, got cur_shard={cur_shard!r}")
    if not 0 <= cur_shard < shard_count:
        raise PetastormArgumentError(
            f"cur_shard must be an integer in [0, shard_count) = [0, {shard_count}), got cur_shard="
            f"{cur_shard!r}")
    if shard_seed is not None and not _is_int(shard_seed):
        raise PetastormArgumentError(f"shard_seed must be an int or None, got {shard_seed!r}")


def _ensure_rows(rows_per_group) -> np.ndarray:
    rows = np.asarray(rows_per_group)
    if rows.ndim != 1:
        raise PetastormArgumentError(
            f"rows_per_group must be a 1-D array of row counts, got shape {rows.shape}")
    if rows.size and not np.issubdtype(rows.dtype, np.integer):
        raise PetastormArgumentError(f"rows_per_group must hold integers, got dtype {rows.dtype}")
    rows = rows.astype(np.int64, copy=False)
    if rows.size and rows.min() < 0:
        bad = int(np.flatnonzero(rows < 0)[0])
        raise PetastormArgumentError(
            f"rows_per_group[{bad}] is {int(rows[bad])}: row counts cannot be negative")
    return rows


def _ensure_epoch(epoch) -> int:
    if not _is_int(epoch) or epoch < 0:
        raise PetastormArgumentError(f"epoch must be a non-negative integer, got {epoch!r}")
    return int(epoch)


def shard_row_groups(num_row_groups: int, cur_shard: Optional[int], shard_count: Optional[int],
                     shard_seed: Optional[int] = None) -> np.ndarray:
    """Row groups of shard ``cur_shard`` in the ``'original'`` mode, as the original library assigns them.

    Shard ``k`` gets the row groups whose dataset-order index ``i`` has ``i % shard_count == k``, whatever
    ``shard_seed``. A non-zero ``shard_seed`` only changes their order: the whole list is shuffled with
    ``random.Random(shard_seed).shuffle`` and the shard keeps its row groups in that shuffled order
    (``shard_seed=0`` is the same as None). Both are what the original 0.12.1 does, recorded as a black box
    in ``tools_compat/original_errors.json`` ("sharding"). The assignment depends on neither the seed nor
    the epoch.

    Parameters
    ----------
    num_row_groups : int
        Number of selected row groups.
    cur_shard, shard_count : int or None
        Both None: every row group.
    shard_seed : int or None

    Returns
    -------
    np.ndarray, shape (n,), int64
        Indexes (into the dataset-ordered row-group list) of this shard's row groups, in the order the
        shard reads them when ``shuffle_row_groups=False``: ascending, or the ``shard_seed`` order.

    Raises
    ------
    NoDataAvailableError
        When there are fewer row groups than shards (some shard would be empty); raised on every shard,
        as the original does, so that all ranks fail alike.
    """
    _check_shard_args(cur_shard, shard_count, shard_seed)
    n = operator.index(num_row_groups)
    if shard_count is None:
        return np.arange(n, dtype=np.int64)
    if n == 0:
        raise NoDataAvailableError(
            f"{_TOO_MANY_SHARDS} No row group is selected (the dataset has none, or rowgroup_selector/filters "
            f"select none), so every one of the {shard_count} shards would be empty")
    if n < shard_count:
        raise NoDataAvailableError(
            f"{_TOO_MANY_SHARDS} The dataset has {n} row group(s) after selection and shard_count is "
            f"{shard_count}: use at most {n} shards, shard_mode='balanced' (which deals rows instead of "
            f"row groups), or write the dataset with smaller row groups")
    order = list(range(n))
    if shard_seed:
        random.Random(operator.index(shard_seed)).shuffle(order)
    return np.asarray([i for i in order if i % shard_count == cur_shard], dtype=np.int64)


def _split(groups: np.ndarray, rows: np.ndarray, parts: int):
    """Items ``(row_group, start, stop)`` splitting each of ``groups`` (in order) into ``parts`` slices.

    Empty slices are left out. Returns three int64 arrays of equal length.
    """
    n = rows[groups]
    k = np.arange(parts, dtype=np.int64)
    starts = (n[:, None] * k[None, :]) // parts
    stops = (n[:, None] * (k + 1)[None, :]) // parts
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


def _splitmix64(x: np.ndarray) -> np.ndarray:
    x = x + _U64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> _U64(27))) * _U64(0x94D049BB133111EB)
    return x ^ (x >> _U64(31))


def _row_seeds(seed: int, epoch: int, rg: np.ndarray, starts: np.ndarray) -> list[int]:
    """63-bit seeds, one per item, a hash of ``(seed, epoch, row_group, row_start)``."""
    k0, k1 = np.random.SeedSequence((_entropy(seed), epoch, _TAG_ROWS)).generate_state(2, np.uint64)
    with np.errstate(over="ignore"):
        h = _splitmix64(rg.astype(_U64) ^ k0)
        h = _splitmix64(h ^ starts.astype(_U64) ^ k1)
    return (h & _MASK63).tolist()


def make_epoch_plan(rows_per_group: Sequence[int] | np.ndarray, options: PlanOptions,
                    epoch: int) -> list[WorkItem]:
    """The deterministic list of work items of one epoch for this shard.

    Parameters
    ----------
    rows_per_group : np.ndarray, shape (n_groups,), int
        Rows in each selected row group, in dataset order (sorted relative paths, then row-group index),
        after selectors, partition predicates and filters. ``WorkItem.row_group`` indexes this array.
    options : PlanOptions
    epoch : int
        0-based epoch; the same ``(rows_per_group, options, epoch)`` always gives the same plan.

    Returns
    -------
    list of WorkItem
        Positions ``0..len-1``. Items with no rows are left out.

    Notes
    -----
    * Items: every row group is cut into ``shuffle_row_drop_partitions`` contiguous slices of (nearly)
      equal size; with ``shuffle_row_groups=False`` and ``shuffle_rows=False`` the rows come in dataset
      (file, row-group, row) order.
    * No sharding or ``'original'`` mode: the shard's row groups (:func:`shard_row_groups`, the same every
      epoch, in ascending order or the original's ``shard_seed`` order) are split into items, and the
      items are permuted with ``default_rng((seed, epoch))`` when ``shuffle_row_groups``.
    * ``'balanced'`` mode, like ``torch.utils.data.DistributedSampler`` with row-group granularity: all
      the items of the dataset form the epoch's *global sequence* — permuted per epoch when
      ``shuffle_row_groups``, by a stream seeded with ``(shard_seed or 0, epoch)``; otherwise dataset
      order, or a fixed permutation seeded by ``shard_seed`` when non-zero. The global order must be the
      same on every rank, so it never depends on ``seed`` (which may differ between ranks, e.g. when
      ``seed=None``); ``seed`` still seeds ``shuffle_rows``. The concatenated rows are cut into
      ``shard_count`` equal contiguous ranges (:func:`balanced_shard_bounds`) and each shard's range is
      expressed as row-group slices, kept in global order, so a shard's position maps to a global row
      offset (:func:`locate_global_row`), which an elastic resume under a different ``shard_count``
      needs. Trade-offs: at most two items per shard are partial row groups (a row group read by two
      shards costs one extra read of it); with shuffling, a shard reads different row groups every epoch
      (a local cache then fills with more of the dataset than the shard's share), but the dropped or
      padded rows also change every epoch, so no row is left out for good; with ``'drop'`` up to
      ``shard_count - 1`` rows per epoch are not read, with ``'pad'`` up to ``shard_count - 1`` rows are
      read twice.

    Raises
    ------
    PetastormArgumentError
        Invalid options, epoch or row counts (the message names the argument).
    NoDataAvailableError
        A shard would be empty: fewer row groups than shards (original mode), fewer rows than shards
        (balanced, ``'drop'``) or no rows at all (balanced, ``'pad'``).
    """
    options.validate()
    epoch = _ensure_epoch(epoch)
    rows = _ensure_rows(rows_per_group)
    parts = int(options.shuffle_row_drop_partitions)
    seed = int(options.seed)

    if options.sharded and options.shard_mode == "balanced":
        rg, starts, stops = _balanced_items(rows, options, epoch, parts)
    else:
        groups = shard_row_groups(len(rows), options.cur_shard, options.shard_count, options.shard_seed)
        rg, starts, stops = _split(groups, rows, parts)
        if options.shuffle_row_groups and len(rg) > 1:
            perm = np.random.default_rng((_entropy(seed), epoch, _TAG_ORDER)).permutation(len(rg))
            rg, starts, stops = rg[perm], starts[perm], stops[perm]

    if options.shuffle_rows:
        seeds = _row_seeds(seed, epoch, rg, starts)
    else:
        seeds = [None] * len(rg)
    make = tuple.__new__  # WorkItem(...) runs NamedTuple's Python-level __new__: ~1 us per item
    return [make(WorkItem, (epoch, pos, g, s, e, rs))
            for pos, (g, s, e, rs) in enumerate(zip(rg.tolist(), starts.tolist(), stops.tolist(), seeds))]


def balanced_sequence(rows_per_group: Sequence[int] | np.ndarray, options: PlanOptions, epoch: int):
    """The epoch's global sequence of the balanced mode, before it is dealt to shards.

    It depends on the row counts, ``shuffle_row_groups``, ``shuffle_row_drop_partitions``, ``shard_seed``
    and the epoch, never on ``cur_shard``/``shard_count`` (elastic resume deals it again to another
    number of shards).

    Returns
    -------
    rg, starts, stops, cum : np.ndarray, shape (n_items,), int64
        The items in sequence order (row group, first row, end row) and the cumulative row counts.
    """
    rows = _ensure_rows(rows_per_group)
    parts = int(options.shuffle_row_drop_partitions)
    rg, starts, stops = _split(np.arange(len(rows), dtype=np.int64), rows, parts)
    shard_seed = options.shard_seed
    if options.shuffle_row_groups and len(rg) > 1:
        key = (_entropy(0 if shard_seed is None else shard_seed), epoch, _TAG_BALANCED)
        perm = np.random.default_rng(key).permutation(len(rg))
        rg, starts, stops = rg[perm], starts[perm], stops[perm]
    elif shard_seed and len(rg) > 1:
        perm = np.random.default_rng((_entropy(shard_seed), _TAG_BALANCED_FIXED)).permutation(len(rg))
        rg, starts, stops = rg[perm], starts[perm], stops[perm]
    return rg, starts, stops, np.cumsum(stops - starts)


def cut_sequence(rg: np.ndarray, starts: np.ndarray, stops: np.ndarray, cum: np.ndarray,
                 ranges: Sequence[Sequence[int]]):
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


def items_to_plan(rg: np.ndarray, starts: np.ndarray, stops: np.ndarray, options: PlanOptions,
                  epoch: int) -> list[WorkItem]:
    """WorkItems at positions ``0..n-1`` (with row seeds when ``shuffle_rows``)."""
    if options.shuffle_rows:
        seeds = _row_seeds(int(options.seed), epoch, rg, starts)
    else:
        seeds = [None] * len(rg)
    make = tuple.__new__  # WorkItem(...) runs NamedTuple's Python-level __new__: ~1 us per item
    return [make(WorkItem, (epoch, pos, g, s, e, rs))
            for pos, (g, s, e, rs) in enumerate(zip(rg.tolist(), starts.tolist(), stops.tolist(), seeds))]


def _balanced_items(rows: np.ndarray, options: PlanOptions, epoch: int, parts: int):
    rg, starts, stops, cum = balanced_sequence(rows, options, epoch)
    total = int(cum[-1]) if len(cum) else 0
    lo, hi = balanced_shard_bounds(total, options.shard_count, options.cur_shard, options.balanced_remainder)
    if total == 0:
        raise NoDataAvailableError(
            f"shard {options.cur_shard} of {options.shard_count} would be empty: no row is selected (the "
            f"selected row groups hold none, or rowgroup_selector/filters select none)")
    if hi <= lo:
        raise NoDataAvailableError(
            f"shard {options.cur_shard} of {options.shard_count} would be empty: shard_mode='balanced' "
            f"with balanced_remainder={options.balanced_remainder!r} deals {total} rows to "
            f"{options.shard_count} shards, {hi - lo} each. Use fewer shards"
            + (" or balanced_remainder='pad'" if total and options.balanced_remainder == "drop" else ""))
    pieces = []
    while lo < hi:  # wraps around the sequence only when padding
        a = lo % total
        b = min(total, a + (hi - lo))
        pieces.append(_cut(rg, starts, stops, cum, a, b))
        lo += b - a
    return tuple(np.concatenate([p[i] for p in pieces]) for i in range(3))


def rows_in_epoch(plan: Sequence[WorkItem]) -> int:
    """Rows the plan reads before any predicate (sum of ``item.num_rows``)."""
    return int(sum(item.num_rows for item in plan))


def plan_row_offsets(plan: Sequence[WorkItem]) -> np.ndarray:
    """Rows before each item of the plan.

    Returns
    -------
    np.ndarray, shape (len(plan) + 1,), int64
        ``offsets[i]`` rows come before position ``i``; ``offsets[-1] == rows_in_epoch(plan)``.
    """
    counts = np.fromiter((item.num_rows for item in plan), dtype=np.int64, count=len(plan))
    return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)


def locate_global_row(rows_per_group: Sequence[int] | np.ndarray, options: PlanOptions, epoch: int,
                      position: int, rows_into_item: int = 0,
                      plan: Optional[Sequence[WorkItem]] = None) -> int:
    """Offset in the epoch's global row sequence of the next row of a shard (for elastic resume).

    Balanced mode: the shard's items are its range of the global sequence in order, so the next row read
    at ``(position, rows_into_item)`` is global row ``shard_start + rows before position +
    rows_into_item`` (exact when no predicate drops rows; ``rows_into_item`` counts rows after
    predicates). Without sharding the offset is within this reader's own sequence. May exceed the
    epoch's total rows when padding.

    Parameters
    ----------
    rows_per_group, options, epoch
        As for :func:`make_epoch_plan`.
    position, rows_into_item : int
        The cursor (``position == len(plan)`` is the end of the epoch).
    plan : list of WorkItem, optional
        ``make_epoch_plan(rows_per_group, options, epoch)`` if already computed (saves recomputing it).

    Raises
    ------
    PetastormArgumentError
        ``shard_mode='original'`` with sharding (its shards are not ranges of one sequence), or a cursor
        outside the plan.
    """
    options.validate()
    if options.sharded and options.shard_mode != "balanced":
        raise PetastormArgumentError(
            "locate_global_row needs shard_mode='balanced' when sharding: shard_mode='original' shards "
            "are not ranges of one global row sequence")
    if plan is None:
        plan = make_epoch_plan(rows_per_group, options, epoch)
    offsets = plan_row_offsets(plan)
    if not 0 <= position <= len(plan):
        raise PetastormArgumentError(f"position {position} is outside the plan of {len(plan)} items")
    if rows_into_item < 0 or (position < len(plan) and rows_into_item > plan[position].num_rows) \
            or (position == len(plan) and rows_into_item):
        raise PetastormArgumentError(
            f"rows_into_item={rows_into_item} does not fit the item at position {position}")
    start = 0
    if options.sharded:
        total = int(_ensure_rows(rows_per_group).sum())
        start, _ = balanced_shard_bounds(total, options.shard_count, options.cur_shard,
                                         options.balanced_remainder)
    return start + int(offsets[position]) + int(rows_into_item)
