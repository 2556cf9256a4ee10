"""How well an epoch's order is shuffled, measured from the plan alone (no data is read).

Two numbers describe how far a read order is from a uniform random permutation of the same rows:

**Normalised displacement.** Rank the rows of the sequence in dataset order (file, row group, row):
row ``i`` of the sequence has dataset rank ``r_i``, and it moves ``D_i = |i - r_i|`` places. A uniform
random permutation of ``n`` rows moves a row ``(n**2 - 1) / (3 n)`` places on average, so

    ``displacement_mean = mean(D) / ((n**2 - 1) / (3 n))``

is 0 for dataset order and 1 (on average) for a full permutation; ``displacement_spread`` is ``std(D)``
on the same scale (``1/sqrt(2) ~ 0.707`` for a full permutation). A large displacement alone does not
mean a good shuffle: a reversed dataset has a displacement of 1.5.

**Same-group fraction.** The fraction of consecutive pairs of rows that come from the same row group. It
sees what displacement misses: shuffling whole row groups moves rows far (displacement near 1) yet keeps
every row group's rows together (same-group fraction near 1), so every batch holds rows of one or two row
groups. A uniform permutation gives ``sum_g m_g (m_g - 1) / (n (n - 1))`` (``m_g`` rows of group ``g``
in the sequence), about ``1 / groups`` for groups of equal size: ``same_group_uniform``.

**Adjacent fraction.** The fraction of consecutive pairs of rows that are neighbours in the dataset (the
next row of the same row group). ``shuffle_rows`` brings it from ~1 to ~``1 / rows_per_item`` without
changing which row groups share a batch; a uniform permutation gives ``~1 / n``.

Two ways to compute them:

* :func:`plan_quality` — from a plan (a list of :class:`~petastorm.reader_impl.work_item.WorkItem`) in
  ``O(items)``: exact for the item order, and the expectation over the seeded permutation of rows inside
  each item when ``shuffle_rows`` (the realised value differs by a fraction of a percent on large items);
  works on any number of rows, row counts of ``2**40`` included.
* :func:`sequence_quality` — exact, on a concrete sequence of row ids (:func:`plan_row_sequence`,
  optionally passed through a loader's shuffling buffer,
  :func:`petastorm.adapters.buffer_quality.through_shuffling_buffer`, or a :func:`block_shuffle`):
  ``O(n log n)``, for sequences that fit in memory.

Only the plan's metrics live here: the loaders' buffer is simulated with the loaders' own code in the
adapters layer, above this one.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from petastorm.errors import PetastormArgumentError

__all__ = [
    "ShuffleQuality",
    "UNIFORM_SPREAD",
    "plan_quality",
    "plan_row_sequence",
    "sequence_quality",
    "block_shuffle",
]

#: ``displacement_spread`` of a uniform random permutation of many rows: ``std|U - V| / E|U - V|`` for
#: independent uniform ``U, V`` = ``sqrt(1/18) / (1/3)``.
UNIFORM_SPREAD = 1 / math.sqrt(2)


@dataclass(frozen=True)
class ShuffleQuality:
    """How far one epoch's order (of one shard) is from a uniform random permutation of its rows.

    Attributes
    ----------
    rows : int
        Rows in the sequence.
    displacement_mean : float
        Mean distance a row moves from its dataset rank, divided by that of a uniform permutation:
        0 = dataset order, ~1 = fully shuffled.
    displacement_spread : float
        Standard deviation of the distance on the same scale (~0.707 for a full permutation).
    same_group_fraction : float
        Fraction of consecutive row pairs from the same row group (lower is better mixed).
    same_group_uniform : float
        The same fraction for a uniform permutation of these rows (the best reachable value).
    adjacent_fraction : float
        Fraction of consecutive row pairs that are dataset neighbours (row ``i`` then row ``i + 1``).
    method : str
        ``'plan'`` (from the plan, expectation over in-item row permutations) or ``'sequence'`` (exact).
    """

    rows: int
    displacement_mean: float
    displacement_spread: float
    same_group_fraction: float
    same_group_uniform: float
    adjacent_fraction: float = 0.0
    method: str = "plan"

    @property
    def mixing(self) -> float:
        """``(1 - same_group_fraction) / (1 - same_group_uniform)``: 1 when consecutive rows come from the
        same row group no more often than in a uniform permutation, 0 when they always do."""
        best = 1.0 - self.same_group_uniform
        return 1.0 if best <= 0 else max(0.0, (1.0 - self.same_group_fraction) / best)

    def to_dict(self) -> dict:
        """A JSON-able dict of the fields, plus ``mixing``."""
        return {**asdict(self), "mixing": self.mixing}

    def __str__(self) -> str:
        return (f"displacement {self.displacement_mean:.3f} (spread {self.displacement_spread:.3f}; uniform 1 and "
                f"{UNIFORM_SPREAD:.3f}), consecutive rows from one row group {self.same_group_fraction:.3f} "
                f"(uniform {self.same_group_uniform:.3f}), dataset neighbours {self.adjacent_fraction:.3f} over "
                f"{self.rows:,} rows")


def _uniform_mean(n: float) -> float:
    """``E|U - V|`` for independent uniform ``U, V`` on ``{0, ..., n-1}``: ``(n**2 - 1) / (3 n)``."""
    return (n * n - 1.0) / (3.0 * n)


def _items(plan: Sequence[Any]) -> tuple:
    """(row_group, row_start, row_stop, has_row_seed) arrays of a plan's items (int64, int64, int64, bool)."""
    n = len(plan)
    rg = np.fromiter((it.row_group for it in plan), dtype=np.int64, count=n)
    start = np.fromiter((it.row_start for it in plan), dtype=np.int64, count=n)
    stop = np.fromiter((it.row_stop for it in plan), dtype=np.int64, count=n)
    seeded = np.fromiter((it.row_seed is not None for it in plan), dtype=bool, count=n)
    return rg, start, stop, seeded


def _same_group_uniform(groups: np.ndarray, counts: np.ndarray, n: float) -> float:
    """``sum_g m_g (m_g - 1) / (n (n - 1))`` with ``m_g`` the rows of each group (``groups`` may repeat)."""
    if n < 2:
        return 0.0
    if len(groups):
        order = np.argsort(groups, kind="stable")
        g, c = groups[order], counts[order].astype(np.float64)
        starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
        m = np.add.reduceat(c, starts)
    else:
        m = np.zeros(0)
    return float(np.sum(m * (m - 1.0)) / (n * (n - 1.0)))


def plan_quality(plan: Sequence[Any]) -> ShuffleQuality:
    """Shuffle quality of a plan's order, in ``O(items log items)``, without materialising rows.

    Parameters
    ----------
    plan : list of WorkItem
        One epoch of one shard (``make_epoch_plan``). Items are slices of row groups; their rows are
        read in file order, or permuted by a seeded permutation when the item has a ``row_seed``.

    Returns
    -------
    ShuffleQuality
        ``method='plan'``: the item order is exact; within an item of ``L`` rows that starts ``d`` places
        from its dataset rank, a uniform permutation moves a row ``|d| + M(M+1)(M+2) / (3 L**2)`` places
        on average (``M = max(0, L - 1 - |d|)``) with mean square ``d**2 + (L**2 - 1) / 6``.

    Notes
    -----
    Dataset ranks: items are sorted by ``(row_group, row_start)``; a row's rank is the number of the
    plan's rows before it in that order (rows read twice, as when a balanced shard pads, rank twice).
    """
    rg, start, stop, seeded = _items(plan)
    length = (stop - start).astype(np.float64)
    keep = length > 0
    rg, start, length, seeded = rg[keep], start[keep], length[keep], seeded[keep]
    n = float(length.sum())
    if n < 2:
        return ShuffleQuality(int(n), 0.0, 0.0, 0.0, 0.0, 0.0, "plan")
    out_at = np.concatenate([[0.0], np.cumsum(length)[:-1]])  # sequence position of each item's first row
    order = np.lexsort((start, rg))                             # dataset order of the items
    rank = np.empty_like(out_at)
    rank[order] = np.concatenate([[0.0], np.cumsum(length[order])[:-1]])
    d = np.abs(out_at - rank)
    m = np.maximum(0.0, length - 1.0 - d)
    mean_abs = np.where(seeded, d + m * (m + 1.0) * (m + 2.0) / (3.0 * length * length), d)
    mean_sq = np.where(seeded, d * d + (length * length - 1.0) / 6.0, d * d)
    total_abs = float(np.dot(length, mean_abs))
    total_sq = float(np.dot(length, mean_sq))
    mean = total_abs / n
    var = max(0.0, total_sq / n - mean * mean)
    scale = _uniform_mean(n)
    same_rg = rg[1:] == rg[:-1]
    pairs = float(np.sum(length - 1.0)) + float(np.count_nonzero(same_rg))
    # dataset neighbours: inside an item, L - 1 pairs in file order, (L - 1) / L expected when permuted; across
    # items, the last row of one and the first of the next (probability 1 / L when that end is permuted)
    inside = np.where(seeded, (length - 1.0) / length, length - 1.0)
    follows = same_rg & (start[1:] == start[:-1] + length[:-1])
    chance = np.where(seeded[:-1], 1.0 / length[:-1], 1.0) * np.where(seeded[1:], 1.0 / length[1:], 1.0)
    adjacent = float(inside.sum()) + float(np.sum(chance[follows]))
    return ShuffleQuality(int(n), mean / scale, math.sqrt(var) / scale, pairs / (n - 1.0),
                          _same_group_uniform(rg, length, n), adjacent / (n - 1.0), "plan")


def plan_row_sequence(plan: Sequence[Any], rows_per_group: Sequence[int] | np.ndarray,
                      max_rows: int = 50_000_000) -> np.ndarray:
    """The dataset row ids a plan reads, in read order (rows permuted as the worker permutes them).

    Parameters
    ----------
    plan : list of WorkItem
    rows_per_group : np.ndarray, shape (n_groups,), int
        Rows of each row group the plan's ``row_group`` indexes (the reader's plan rows).
    max_rows : int
        Refuse longer sequences (they would not fit in memory: use :func:`plan_quality`).

    Returns
    -------
    np.ndarray, shape (rows,), int64
        Row id ``offset[row_group] + row`` for each row, where ``offset`` is the cumulative row count of
        the row groups before (dataset order). Inside an item with a ``row_seed`` the rows follow
        ``numpy.random.default_rng(row_seed).permutation``, as the worker orders them (no predicate).
    """
    rows = np.asarray(rows_per_group, dtype=np.int64)
    total = sum(int(it.row_stop - it.row_start) for it in plan)
    if total > max_rows:
        raise PetastormArgumentError(f"the plan reads {total:,} rows, more than max_rows={max_rows:,}: use "
                                     f"plan_quality, which does not materialise the rows")
    offsets = np.concatenate([[0], np.cumsum(rows)]).astype(np.int64)
    parts = []
    for it in plan:
        ids = np.arange(it.row_start, it.row_stop, dtype=np.int64) + offsets[it.row_group]
        if it.row_seed is not None and len(ids) > 1:
            ids = ids[np.random.default_rng(it.row_seed).permutation(len(ids))]
        parts.append(ids)
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def sequence_quality(sequence: np.ndarray, group_of_row: np.ndarray | None = None, *,
                     rows_per_group: Sequence[int] | np.ndarray | None = None) -> ShuffleQuality:
    """Exact shuffle quality of a concrete sequence of dataset row ids.

    Parameters
    ----------
    sequence : np.ndarray, shape (n,), int
        Row ids in the order they are served (ids may repeat; their order defines the dataset ranks).
    group_of_row : np.ndarray, shape (n,), int, optional
        Row group of each element of ``sequence``.
    rows_per_group : array of int, optional
        Instead of ``group_of_row``: row ids are ``offset[group] + row`` (as :func:`plan_row_sequence`
        makes them) and the group is found from the counts.
    """
    seq = np.asarray(sequence).astype(np.int64, copy=False)
    n = len(seq)
    if group_of_row is None:
        if rows_per_group is None:
            raise PetastormArgumentError("sequence_quality needs group_of_row or rows_per_group")
        bounds = np.cumsum(np.asarray(rows_per_group, dtype=np.int64))
        group_of_row = np.searchsorted(bounds, seq, side="right")
    groups = np.asarray(group_of_row).astype(np.int64, copy=False)
    if len(groups) != n:
        raise PetastormArgumentError(f"group_of_row has {len(groups)} entries for a sequence of {n} rows")
    if n < 2:
        return ShuffleQuality(n, 0.0, 0.0, 0.0, 0.0, 0.0, "sequence")
    rank = np.empty(n, dtype=np.int64)
    rank[np.argsort(seq, kind="stable")] = np.arange(n, dtype=np.int64)
    moved = np.abs(np.arange(n, dtype=np.int64) - rank).astype(np.float64)
    scale = _uniform_mean(float(n))
    same = float(np.count_nonzero(groups[1:] == groups[:-1])) / (n - 1.0)
    uniform = _same_group_uniform(groups, np.ones(n, dtype=np.int64), float(n))
    adjacent = float(np.count_nonzero((np.diff(seq) == 1) & (groups[1:] == groups[:-1]))) / (n - 1.0)
    return ShuffleQuality(n, float(moved.mean()) / scale, float(moved.std()) / scale, same, uniform, adjacent,
                          "sequence")


def block_shuffle(plan: Sequence[Any], rows_per_group: Sequence[int] | np.ndarray, block_items: int,
                  seed: int = 0) -> np.ndarray:
    """The row sequence of a *block shuffle* (a proposed mode): the rows of every ``block_items``
    consecutive items of the plan are permuted together.

    Memory: one block of items (``block_items`` row groups) held at once, as a shuffling buffer of that
    many rows would hold; unlike the buffer it needs no per-row bookkeeping and mixes the block uniformly.

    Returns
    -------
    np.ndarray, shape (rows,), int64 — row ids as :func:`plan_row_sequence` makes them.
    """
    if isinstance(block_items, bool) or not isinstance(block_items, (int, np.integer)) or block_items < 1:
        raise PetastormArgumentError(f"block_items must be a positive integer, got {block_items!r}")
    rng = np.random.default_rng(seed)
    parts = []
    for i in range(0, len(plan), int(block_items)):
        ids = plan_row_sequence(plan[i:i + int(block_items)], rows_per_group)
        parts.append(ids[rng.permutation(len(ids))])
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
