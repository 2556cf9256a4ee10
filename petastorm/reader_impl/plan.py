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

Modules: this one makes an epoch's plan; :mod:`~petastorm.reader_impl.plan_options` holds the options and
their checks, :mod:`~petastorm.reader_impl.plan_balanced` the balanced mode's global sequence.
"""
from __future__ import annotations

import operator
import random
from typing import Optional, Sequence

import numpy as np

from petastorm.errors import NoDataAvailableError, PetastormArgumentError
from petastorm.reader_impl.plan_balanced import (
    balanced_dealt_items,
    balanced_sequence,
    balanced_shard_bounds,
    cut_sequence,
    split_row_groups,
)
from petastorm.reader_impl.plan_options import (
    BALANCED_REMAINDERS,
    SHARD_MODES,
    PlanOptions,
    check_shard_args,
    ensure_epoch,
    ensure_rows,
    seed_entropy,
)
from petastorm.reader_impl.work_item import WorkItem

__all__ = [
    "PlanOptions",
    "SHARD_MODES",
    "BALANCED_REMAINDERS",
    "shard_row_groups",
    "balanced_shard_bounds",
    "make_epoch_plan",
    "plan_row_offsets",
    "locate_global_row",
    "balanced_sequence",
    "cut_sequence",
    "items_to_plan",
]

# Tags that keep the random streams of the planner independent of each other (3 and 4: plan_balanced.py).
_TAG_ORDER = 1          # order of the items of a shard (original mode / no sharding)
_TAG_ROWS = 2           # per-item row seeds (shuffle_rows)

_TOO_MANY_SHARDS = ("Number of row-groups in the dataset must be greater or equal to the number of requested "
                    "shards. Otherwise, some of the shards will end up being empty.")

_U64 = np.uint64
_MASK63 = np.uint64((1 << 63) - 1)


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
    check_shard_args(cur_shard, shard_count, shard_seed)
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


def _splitmix64(x: np.ndarray) -> np.ndarray:
    x = x + _U64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> _U64(27))) * _U64(0x94D049BB133111EB)
    return x ^ (x >> _U64(31))


def _row_seeds(seed: int, epoch: int, rg: np.ndarray, starts: np.ndarray) -> list[int]:
    """63-bit seeds, one per item, a hash of ``(seed, epoch, row_group, row_start)``."""
    k0, k1 = np.random.SeedSequence((seed_entropy(seed), epoch, _TAG_ROWS)).generate_state(2, np.uint64)
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
    epoch = ensure_epoch(epoch)
    rows = ensure_rows(rows_per_group)
    parts = int(options.shuffle_row_drop_partitions)
    seed = int(options.seed)

    dealt = None
    if options.sharded and options.shard_mode == "balanced":
        rg, starts, stops, dealt = balanced_dealt_items(rows_per_group, options, epoch)
    else:
        groups = shard_row_groups(len(rows), options.cur_shard, options.shard_count, options.shard_seed)
        rg, starts, stops = split_row_groups(groups, rows, parts)
        if options.shuffle_row_groups and len(rg) > 1:
            perm = np.random.default_rng((seed_entropy(seed), epoch, _TAG_ORDER)).permutation(len(rg))
            rg, starts, stops = rg[perm], starts[perm], stops[perm]

    return items_to_plan(rg, starts, stops, options, epoch, dealt)


def items_to_plan(rg: np.ndarray, starts: np.ndarray, stops: np.ndarray, options: PlanOptions,
                  epoch: int, dealt: Optional[np.ndarray] = None) -> list[WorkItem]:
    """WorkItems at positions ``0..n-1`` (with row seeds when ``shuffle_rows``; ``dealt``: each item's
    passing rows, see :func:`petastorm.reader_impl.plan_balanced.dealt_items`)."""
    if options.shuffle_rows:
        seeds = _row_seeds(int(options.seed), epoch, rg, starts)
    else:
        seeds = [None] * len(rg)
    dealt_list = [None] * len(rg) if dealt is None else dealt.tolist()
    make = tuple.__new__  # WorkItem(...) runs NamedTuple's Python-level __new__ per item
    return [make(WorkItem, (epoch, pos, g, s, e, rs, d))
            for pos, (g, s, e, rs, d) in enumerate(zip(rg.tolist(), starts.tolist(), stops.tolist(), seeds,
                                                       dealt_list))]


def plan_row_offsets(plan: Sequence[WorkItem]) -> np.ndarray:
    """Rows of the global sequence before each item of the plan (``item.rows_dealt``: the rows that pass
    when the plan counted them, else every row of the slice).

    Returns
    -------
    np.ndarray, shape (len(plan) + 1,), int64
        ``offsets[i]`` rows come before position ``i``; ``offsets[-1]`` rows in all.
    """
    counts = np.fromiter((item.rows_dealt for item in plan), dtype=np.int64, count=len(plan))
    return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)


def locate_global_row(rows_per_group: Sequence[int] | np.ndarray, options: PlanOptions, epoch: int,
                      position: int, rows_into_item: int = 0,
                      plan: Optional[Sequence[WorkItem]] = None) -> int:
    """Offset in the epoch's global row sequence of the next row of a shard (for elastic resume).

    Balanced mode: the shard's items are its range of the global sequence in order, so the next row read
    at ``(position, rows_into_item)`` is global row ``shard_start + rows before position +
    rows_into_item`` (``rows_into_item`` counts rows after predicates: exact when no predicate drops rows, or
    when the reader planned with the passing rows, :class:`~petastorm.reader_impl.plan_balanced.PassingRows`). Without sharding the offset is within this reader's own sequence. May exceed the
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
    if rows_into_item < 0 or (position < len(plan) and rows_into_item > plan[position].rows_dealt) \
            or (position == len(plan) and rows_into_item):
        raise PetastormArgumentError(
            f"rows_into_item={rows_into_item} does not fit the item at position {position}")
    start = 0
    if options.sharded:
        total = int(ensure_rows(rows_per_group).sum())
        start, _ = balanced_shard_bounds(total, options.shard_count, options.cur_shard,
                                         options.balanced_remainder)
    return start + int(offsets[position]) + int(rows_into_item)
