"""The result of ``reader.explain()``: :class:`ReadPlan` and its parts, and the table its ``str()`` prints.

A :class:`ReadPlan` is a frozen dataclass for programs (``to_dict()`` is JSON-able) whose ``str()`` is a table
for people. :class:`SelectionLog` records what each selection stage kept while ``make_reader`` builds the
reader. :func:`~petastorm.reader_impl.explain.explain_reader` fills a plan in; nothing here reads data.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, List, Optional, Sequence

__all__ = ["SelectionStep", "SelectionLog", "ShardRows", "ReadPlan", "MAX_LISTED_SHARDS", "order_text"]

#: Shards listed one by one in a ReadPlan (more are summarised by min/max).
MAX_LISTED_SHARDS = 16


@dataclass(frozen=True)
class SelectionStep:
    """What is left after one selection stage.

    Attributes
    ----------
    stage : str
        ``'dataset'``, ``'rowgroup_selector'``, ``'filters'``, ``'predicate'`` or ``'sharding'``.
    row_groups, files : int
        Row groups and files kept after this stage.
    pruned_row_groups, pruned_files : int
        Removed by this stage.
    detail : str
        What the stage applied (the selector, the filters...).
    """

    stage: str
    row_groups: int
    files: int
    pruned_row_groups: int = 0
    pruned_files: int = 0
    detail: str = ""


class SelectionLog:
    """Records the row groups left after each selection stage while a reader is built."""

    def __init__(self, dataset: Any) -> None:
        self._dataset = dataset
        self.steps: List[SelectionStep] = [SelectionStep("dataset", len(dataset.row_groups), len(dataset.files))]
        self.row_filters: List[str] = []

    def _files(self, rg_ids: Sequence[int]) -> int:
        groups = self._dataset.row_groups
        return len({groups[i].path for i in rg_ids})

    def record(self, stage: str, rg_ids: Sequence[int], detail: str = "") -> None:
        """The row groups ``rg_ids`` are left after ``stage``."""
        last = self.steps[-1]
        files = self._files(rg_ids) if len(rg_ids) != last.row_groups else last.files
        self.steps.append(SelectionStep(stage, len(rg_ids), files, last.row_groups - len(rg_ids),
                                        last.files - files, _short(detail)))

    def row_filter(self, what: str) -> None:
        """``what`` is evaluated on every row in the workers (it prunes no row group)."""
        self.row_filters.append(_short(what))


def _short(text: str, limit: int = 120) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


@dataclass(frozen=True)
class ShardRows:
    """Rows and estimated bytes one shard reads per epoch."""

    shard: int
    row_groups: int
    rows: int
    bytes: int


@dataclass(frozen=True)
class ReadPlan:
    """What a reader will read: the result of ``reader.explain()``.

    Attributes
    ----------
    url : str
    metadata_source : str
        Where the schema, the row groups and their row counts came from.
    fields : tuple of str
        Columns read.
    selection : tuple of SelectionStep
        The dataset, then every stage that pruned (or could prune) row groups, ending with sharding.
    row_filters : tuple of str
        Filters evaluated per row in the workers (rows they drop are not known before reading).
    epoch : int
        The epoch explained.
    items : int
        Work items of this reader's shard in that epoch.
    rows_per_epoch, bytes_per_epoch : int
        This reader's rows (before row filters) and estimated bytes read per epoch.
    rows_exact : bool
        False when row counts are estimated (the Petastorm metadata gives row groups, not rows, and the
        footers were not read: ``explain(row_counts=True)`` reads them).
    num_epochs : int or None
    shard_mode : str
    cur_shard, shard_count : int or None
    shards : tuple of ShardRows
        Every shard (the first ``MAX_LISTED_SHARDS``), this reader's included.
    order : str
        The order strategy in words.
    options : dict
        seed, shuffle_row_groups, shuffle_rows, shuffle_row_drop_partitions, shard_seed,
        balanced_remainder.
    shuffle_quality : dict
        :class:`~petastorm.reader_impl.shuffle_quality.ShuffleQuality` of this shard's epoch, as a dict.
    buffered_quality : dict or None
        The same after a loader's shuffling buffer (``explain(shuffling_queue_capacity=...)``).
    pool : dict
        ``type``, ``workers_count``, ``results_queue_size``.
    notes : tuple of str
    """

    url: str
    metadata_source: str
    fields: tuple
    selection: tuple
    row_filters: tuple
    epoch: int
    items: int
    rows_per_epoch: int
    bytes_per_epoch: int
    rows_exact: bool
    num_epochs: Optional[int]
    shard_mode: str
    cur_shard: Optional[int]
    shard_count: Optional[int]
    shards: tuple
    order: str
    options: dict
    shuffle_quality: dict
    buffered_quality: Optional[dict]
    pool: dict
    notes: tuple = field(default=())

    def to_dict(self) -> dict:
        """A JSON-able dict of every field."""
        return asdict(self)

    @property
    def kept(self) -> SelectionStep:
        """The last selection step (what this reader reads)."""
        return self.selection[-1]

    def __str__(self) -> str:
        return _render(self)


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024.0
    return f"{n:.1f} TiB"  # pragma: no cover


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> List[str]:
    cells = [list(map(str, header))] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    line = lambda r: "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    return [line(cells[0]), "  ".join("-" * w for w in widths)] + [line(r) for r in cells[1:]]


def _render(plan: ReadPlan) -> str:
    approx = "" if plan.rows_exact else "~"
    out = [f"Read plan of {plan.url}", f"  metadata: {plan.metadata_source}",
           f"  fields:   {', '.join(plan.fields)}", "", "Selection (row groups and files kept and pruned)"]
    out += ["  " + s for s in _table(
        ["stage", "row groups", "pruned", "files", "pruned", "detail"],
        [[st.stage, f"{st.row_groups:,}", f"{st.pruned_row_groups:,}", f"{st.files:,}", f"{st.pruned_files:,}",
          st.detail] for st in plan.selection])]
    for what in plan.row_filters:
        out.append(f"  per row in the workers: {what}")
    epochs = "unlimited" if plan.num_epochs is None else f"{plan.num_epochs}"
    out += ["", f"Rows per epoch (epoch {plan.epoch}; epochs: {epochs})"]
    shard_rows = [[("* " if s.shard == (plan.cur_shard or 0) else "  ") + str(s.shard), f"{s.row_groups:,}",
                   f"{approx}{s.rows:,}", f"{approx}{_size(s.bytes)}"] for s in plan.shards]
    out += ["  " + s for s in _table(["shard", "row groups", "rows", "bytes"], shard_rows)]
    total = "" if plan.num_epochs is None else (
        f"; {approx}{plan.rows_per_epoch * plan.num_epochs:,} rows, "
        f"{approx}{_size(plan.bytes_per_epoch * plan.num_epochs)} over {plan.num_epochs} epoch(s)")
    out.append(f"  this reader (*): {plan.items:,} work items, {approx}{plan.rows_per_epoch:,} rows, "
               f"{approx}{_size(plan.bytes_per_epoch)} per epoch{total}")
    out += ["", f"Order: {plan.order}"]
    out += ["Shuffle quality (displacement: 0 = dataset order, 1 = uniform permutation; same group: consecutive",
            "  rows from one row group, 'uniform' for a uniform permutation; mixing: 1 = as mixed as uniform;",
            "  neighbours: consecutive rows that follow each other in the dataset)"]
    quality_rows = [_quality_row("reader", plan.shuffle_quality)]
    if plan.buffered_quality is not None:
        quality_rows.append(_quality_row("with loader buffer", plan.buffered_quality))
    out += ["  " + s for s in _table(
        ["order", "displacement", "spread", "same group", "uniform", "mixing", "neighbours"], quality_rows)]
    pool = plan.pool
    out += ["", f"Pool: {pool['type']}, {pool['workers_count']} worker(s), results queue {pool['results_queue_size']}"]
    out += [f"Note: {n}" for n in plan.notes]
    return "\n".join(out)


def _quality_row(name: str, q: dict) -> list:
    return [name, f"{q['displacement_mean']:.3f}", f"{q['displacement_spread']:.3f}",
            f"{q['same_group_fraction']:.3f}", f"{q['same_group_uniform']:.3f}", f"{q['mixing']:.3f}",
            f"{q['adjacent_fraction']:.3f}"]


def order_text(o: Any) -> str:
    """The order strategy in words (:attr:`ReadPlan.order`).

    Parameters
    ----------
    o : petastorm.reader_impl.plan_options.PlanOptions
        The reader's plan options.
    """
    parts = []
    drop = int(o.shuffle_row_drop_partitions)
    unit = f"slices (1/{drop} of a row group)" if drop > 1 else "row groups"
    if o.sharded and o.shard_mode == "balanced":
        how = "shuffled per epoch" if o.shuffle_row_groups else (
            "in a fixed order of shard_seed" if o.shard_seed else "in dataset order")
        parts.append(f"balanced: one global sequence of {unit} {how} (same on every rank), cut into "
                     f"{o.shard_count} equal row ranges, remainder {o.balanced_remainder!r}")
    else:
        if o.sharded:
            parts.append(f"original sharding: row group i goes to shard i % {o.shard_count}")
        parts.append(f"{unit} shuffled per epoch (seed {o.seed})" if o.shuffle_row_groups
                     else f"{unit} in dataset order")
    parts.append("rows shuffled inside each item" if o.shuffle_rows else "rows in file order inside each item")
    return "; ".join(parts)
