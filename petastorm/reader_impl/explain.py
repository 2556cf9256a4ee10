"""``reader.explain()``: what a reader will read, and in which order, before it reads any data.

:func:`explain_reader` turns a built :class:`~petastorm.reader_impl.reader_core.Reader` into a
:class:`ReadPlan`: the files and row groups kept and pruned at each selection stage (rowgroup_selector,
filters and predicate on Hive partition keys, sharding), rows and estimated bytes per shard and per epoch,
the order strategy and its measured shuffle quality (:mod:`petastorm.reader_impl.shuffle_quality`), the
worker pool, and where the metadata came from. ``ReadPlan`` is a frozen dataclass for programs
(``to_dict()`` is JSON-able) whose ``str()`` is a table for people.

What it costs: the plans are pure functions of the row counts (no I/O); one Parquet footer is read to
estimate row-group sizes and the selected columns' share of the bytes (and, with ``row_counts=True``, the
footers of the files whose row counts the Petastorm metadata does not give). No data page is read.

The selection stages are recorded while ``make_reader`` builds the reader (:class:`SelectionLog`).

A loader's shuffling buffer changes the order: ``buffered_quality`` is the quality of the order a loader
serves, from a simulation of its buffer on row ids. The simulation runs the loaders' own code, which lives a
layer above (:mod:`petastorm.adapters.buffer_quality`), so it comes in as an argument (``buffer_order``).
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, List, Optional, Sequence

import numpy as np

from petastorm.errors import PetastormArgumentError

__all__ = ["SelectionStep", "SelectionLog", "ShardRows", "ReadPlan", "BufferOrder", "explain_reader"]

#: A loader's shuffling buffer for :func:`explain_reader`: ``(row ids in the reader's order, shape (n,) int64;
#: the reader's seed) -> the same ids in the order the loader serves them``.
BufferOrder = Callable[[np.ndarray, int], np.ndarray]

#: Shards listed one by one in a ReadPlan (more are summarised by min/max).
MAX_LISTED_SHARDS = 16
#: Rows up to which a loader's shuffling buffer is simulated on row ids.
MAX_SIMULATED_ROWS = 5_000_000


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


# --- building the plan -----------------------------------------------------------------------------------

def _metadata_source(dataset: Any, rows_exact: bool, estimated_from: str) -> str:
    from petastorm.etl.dataset_metadata import ROW_GROUPS_PER_FILE_KEY, UNISCHEMA_JSON_KEY, UNISCHEMA_KEY

    md = dataset.metadata or {}
    name = "no metadata file"
    if dataset.root and md:
        from petastorm.etl.dataset_metadata import find_metadata_file

        name = (find_metadata_file(dataset.filesystem, dataset.root) or "metadata file").rsplit("/", 1)[-1]
    key = "JSON" if UNISCHEMA_JSON_KEY in md else ("pickle" if UNISCHEMA_KEY in md else None)
    if key:
        schema = f"Petastorm schema from {name} ({key} key)"
    else:
        schema = f"schema inferred from the Parquet schema ({name})"
    groups = "row groups per file from " + (
        f"{name} (Petastorm metadata)" if ROW_GROUPS_PER_FILE_KEY in md and dataset.root
        else f"the footers of {len(dataset.files):,} file(s)")
    rows = "rows from the file footers" if rows_exact else f"rows estimated from {estimated_from}"
    return f"{schema}; {groups}; {rows}"


def _footer(dataset: Any, path: str) -> Any:
    from petastorm.reader_impl.dataset import read_footer

    try:
        return read_footer(dataset.filesystem, path)
    except Exception:  # noqa: BLE001 - an estimate only: without it, bytes use the whole file size
        return None


def _column_share(footer: Any, fields: Sequence[str]) -> float:
    """Share of a file's compressed bytes in the columns named ``fields`` (1.0 when unknown)."""
    if footer is None or footer.num_row_groups == 0:
        return 1.0
    wanted = set(fields)
    total = part = 0
    for i in range(footer.num_row_groups):
        rg = footer.row_group(i)
        for j in range(rg.num_columns):
            col = rg.column(j)
            size = col.total_compressed_size
            total += size
            if col.path_in_schema.split(".")[0] in wanted:
                part += size
    return part / total if total else 1.0


def _group_bytes(groups: Sequence[Any], rows: np.ndarray, footer: Any, fields: Sequence[str]) -> np.ndarray:
    """Estimated bytes read from each row group (the selected columns, compressed).

    With every file's size known (a listing that gives sizes): the file's size shared among its row groups
    by rows, times the selected columns' share of the bytes in ``footer``. Otherwise (a local listing
    does not stat the files): the selected columns' compressed bytes per row in ``footer``, times rows.
    """
    share = _column_share(footer, fields)
    if any(int(rg.file_size) <= 0 for rg in groups):
        per_row = 0.0
        if footer is not None and footer.num_rows:
            per_row = share * sum(_compressed(footer.row_group(i))
                                  for i in range(footer.num_row_groups)) / footer.num_rows
        return np.maximum(rows, 0).astype(np.float64) * per_row
    file_rows: dict = {}
    for rg, n in zip(groups, rows):
        file_rows[rg.path] = file_rows.get(rg.path, 0) + max(int(n), 0)
    out = np.empty(len(groups), dtype=np.float64)
    for i, (rg, n) in enumerate(zip(groups, rows)):
        size = max(int(rg.file_size), 0)
        out[i] = size * (max(int(n), 0) / file_rows[rg.path]) if file_rows[rg.path] else 0.0
    return out * share


def _compressed(row_group: Any) -> int:
    return sum(row_group.column(j).total_compressed_size for j in range(row_group.num_columns))


def _order_text(o: Any) -> str:
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


def _shard_table(rows: np.ndarray, nbytes: np.ndarray, o: Any, epoch: int, dealt: Any = None) -> List[ShardRows]:
    import dataclasses

    from petastorm.reader_impl.plan import make_epoch_plan

    if not o.sharded:
        # row groups planned with 0 rows (rejected by the rowgroup_selector / the predicate on partition keys,
        # or empty) are never read
        return [ShardRows(0, int(np.count_nonzero(rows)), int(rows.sum()), int(nbytes.sum()))]
    k = int(o.shard_count)
    shown = list(range(min(k, MAX_LISTED_SHARDS)))
    if o.cur_shard not in shown:
        shown.append(int(o.cur_shard))
    if o.shard_mode == "balanced":  # the shards' ranges of the epoch's global sequence: plan each listed one
        out = []
        for s in shown:
            plan = make_epoch_plan(rows if dealt is None else dealt, dataclasses.replace(o, cur_shard=s), epoch)
            n, b = _plan_rows_bytes(plan, rows, nbytes)
            out.append(ShardRows(s, len({it.row_group for it in plan}), n, int(b)))
        return out
    owner = np.arange(len(rows)) % k  # the original's assignment (shard_seed only reorders)
    shard_rows = np.bincount(owner, weights=rows, minlength=k)
    shard_bytes = np.bincount(owner, weights=nbytes, minlength=k)
    counts = np.bincount(owner[rows > 0], minlength=k)  # 0 rows: rejected by the selector/predicate, never read
    return [ShardRows(s, int(counts[s]), int(shard_rows[s]), int(shard_bytes[s])) for s in shown]


def _plan_rows_bytes(plan: Sequence[Any], rows: np.ndarray, nbytes: np.ndarray) -> tuple:
    """(rows, estimated bytes) a plan reads: an item's bytes are its row group's, pro rata of its rows."""
    if not len(plan):
        return 0, 0.0
    n = np.fromiter((it.row_stop - it.row_start for it in plan), dtype=np.int64, count=len(plan))
    g = np.fromiter((it.row_group for it in plan), dtype=np.int64, count=len(plan))
    per_row = nbytes[g] / np.where(rows[g] > 0, rows[g], 1)
    return int(n.sum()), float(np.dot(per_row, n))


def explain_reader(reader: Any, epoch: Optional[int] = None, *, row_counts: bool = False,
                   shuffling_queue_capacity: int = 0, batch_size: int = 1,
                   min_after_retrieve: Optional[int] = None,
                   buffer_order: Optional[BufferOrder] = None) -> ReadPlan:
    """The :class:`ReadPlan` of ``reader`` (see ``Reader.explain``); reads no data.

    Parameters
    ----------
    reader : Reader
    epoch : int, optional
        Epoch to explain (default: the reader's current epoch).
    row_counts : bool
        Read the footers of files whose row counts are not known yet (a Petastorm dataset's metadata
        gives only row groups per file): exact rows and bytes, at the cost of one footer read per file.
        Otherwise rows are estimated from one footer.
    shuffling_queue_capacity, batch_size : int
        Also measure the order after a loader's shuffling buffer of that many rows (simulated on row
        ids, for up to ``MAX_SIMULATED_ROWS`` rows), seeded as a ``BatchedDataLoader``'s first pass over
        this reader (``reader.explain``'s shortcut for
        ``buffer_order=petastorm.adapters.buffer_quality.loader_buffer(...)``).
    min_after_retrieve : int, optional
        The loader's ``min_after_retrieve`` (default ``shuffling_queue_capacity - batch_size``).
    buffer_order : callable, optional
        Instead of ``shuffling_queue_capacity``: ``(row ids in the reader's order, the reader's seed) -> row
        ids in the order a loader serves them`` (the loaders build it with
        :func:`petastorm.adapters.buffer_quality.loader_buffer`, with their own seed). Its order's quality is
        ``buffered_quality``.
    """
    from petastorm.reader_impl.dataset import UNKNOWN_ROWS
    from petastorm.reader_impl.plan import make_epoch_plan
    from petastorm.reader_impl.plan_balanced import passing_of
    from petastorm.reader_impl.shuffle_quality import plan_quality, plan_row_sequence, sequence_quality

    for name, value, low in (("shuffling_queue_capacity", shuffling_queue_capacity, 0), ("batch_size", batch_size, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise PetastormArgumentError(f"{name} must be an integer >= {low}, got {value!r}")
    if buffer_order is not None and not callable(buffer_order):
        raise PetastormArgumentError(f"buffer_order must be callable or None, got {buffer_order!r}")
    if buffer_order is not None and shuffling_queue_capacity:
        raise PetastormArgumentError("pass shuffling_queue_capacity or buffer_order, not both")
    if shuffling_queue_capacity:
        # reader.explain(shuffling_queue_capacity=...): the one import of a higher layer (the loaders' buffer
        # runs in adapters/), see KNOWN_INVERSIONS in tests/package/test_layers.py; loaders pass buffer_order
        from petastorm.adapters.buffer_quality import loader_buffer

        buffer_order = loader_buffer(int(shuffling_queue_capacity), int(batch_size),
                                     min_after_retrieve=min_after_retrieve)
    p = reader._p
    options = p.plan_options
    if epoch is None:
        epoch = int(p.epoch)
    if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
        raise PetastormArgumentError(f"epoch must be a non-negative integer, got {epoch!r}")
    dataset = reader.dataset
    log: Optional[SelectionLog] = getattr(reader, "_explain_log", None)
    setup: dict = getattr(reader, "_explain_setup", None) or {}
    rg_ids = setup.get("rg_ids", list(range(len(dataset.row_groups))))
    fields = list(setup.get("fields", reader.schema.fields))
    notes: List[str] = []

    groups = [dataset.row_groups[i] for i in rg_ids]
    unknown = [g.path for g in groups if g.num_rows == UNKNOWN_ROWS]
    if unknown and row_counts:
        filled = copy.copy(dataset)
        filled.ensure_row_counts()
        groups = [filled.row_groups[i] for i in rg_ids]
        unknown = []
    footer = _footer(dataset, groups[0].path) if groups else None
    estimated_from = ""
    rows = np.asarray([g.num_rows for g in groups], dtype=np.int64)
    if unknown:
        per_group = 0
        if footer is not None and footer.num_row_groups:
            per_group = int(round(footer.num_rows / footer.num_row_groups))
        rows = np.where(rows == UNKNOWN_ROWS, per_group, rows)
        estimated_from = f"the footer of {groups[0].relative_path!r} ({per_group:,} rows per row group)"
        notes.append("rows and bytes are estimates (~): row counts come from file footers; "
                     "explain(row_counts=True) or --row-counts reads them all")
    rows[list(setup.get("zero_rows", ()))] = 0  # rejected by the predicate on partition keys (after sharding)
    nbytes = _group_bytes(groups, rows, footer, fields)

    # balanced shards of filtered rows are dealt in passing-row space (the reader's plan_rows carry it)
    dealt = p.plan_rows if passing_of(p.plan_rows) is not None else rows
    plan = p.plans.get(epoch) if dealt is p.plan_rows or np.array_equal(p.plan_rows, rows) else None
    if plan is None:
        plan = make_epoch_plan(dealt, options, epoch) if len(rows) else []
    epoch_rows, epoch_bytes = _plan_rows_bytes(plan, rows, nbytes)
    read_groups = {it.row_group for it in plan}

    selection = list(log.steps) if log is not None else [
        SelectionStep("dataset", len(dataset.row_groups), len(dataset.files))]
    if options.sharded:
        last = selection[-1]
        files = len({groups[i].path for i in read_groups})
        selection.append(SelectionStep("sharding", len(read_groups), files, last.row_groups - len(read_groups),
                                       last.files - files,
                                       f"shard {options.cur_shard} of {options.shard_count} ({options.shard_mode})"))
    if options.sharded and options.shard_count > MAX_LISTED_SHARDS:
        notes.append(f"the first {MAX_LISTED_SHARDS} of {options.shard_count} shards are listed (and this one)")
    quality = plan_quality(plan)
    buffered = None
    if buffer_order is not None:
        n = epoch_rows
        if n <= MAX_SIMULATED_ROWS:
            seq = buffer_order(plan_row_sequence(plan, rows), int(options.seed))
            buffered = sequence_quality(seq, rows_per_group=rows).to_dict()
        else:
            notes.append(f"the loader buffer is not simulated over {n:,} rows (> {MAX_SIMULATED_ROWS:,})")
    if reader.ngram is not None:
        notes.append("ngram reader: windows are formed from whole row groups; the quality is that of the rows")
    pool = reader._pool
    pool_type = {"ThreadPool": "thread", "ProcessPool": "process", "DummyPool": "dummy"}.get(
        type(pool).__name__, type(pool).__name__)
    url = dataset.url if isinstance(dataset.url, str) else f"{len(dataset.url)} file URLs"
    return ReadPlan(
        url=str(url),
        metadata_source=_metadata_source(dataset, not unknown, estimated_from),
        fields=tuple(fields),
        selection=tuple(selection),
        row_filters=tuple(log.row_filters) if log is not None else (),
        epoch=int(epoch), items=len(plan), rows_per_epoch=epoch_rows, bytes_per_epoch=int(epoch_bytes),
        rows_exact=not unknown, num_epochs=p.num_epochs, shard_mode=options.shard_mode,
        cur_shard=options.cur_shard, shard_count=options.shard_count,
        shards=tuple(_shard_table(rows, nbytes, options, int(epoch), dealt)),
        order=_order_text(options),
        options={"seed": int(options.seed), "shuffle_row_groups": options.shuffle_row_groups,
                 "shuffle_rows": options.shuffle_rows,
                 "shuffle_row_drop_partitions": int(options.shuffle_row_drop_partitions),
                 "shard_seed": options.shard_seed, "balanced_remainder": options.balanced_remainder},
        shuffle_quality=quality.to_dict(), buffered_quality=buffered,
        pool={"type": pool_type, "workers_count": int(getattr(pool, "workers_count", 1)),
              "results_queue_size": int(getattr(pool, "results_queue_size", 0))},
        notes=tuple(notes))
