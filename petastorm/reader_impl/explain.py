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

The selection stages are recorded while ``make_reader`` builds the reader (:class:`SelectionLog`). The plan's
records and its table are in :mod:`petastorm.reader_impl.read_plan`, the estimates of rows and bytes in
:mod:`petastorm.reader_impl.read_estimates`.

A loader's shuffling buffer changes the order: ``buffered_quality`` is the quality of the order a loader
serves, from a simulation of its buffer on row ids. The simulation runs the loaders' own code, which lives a
layer above (:mod:`petastorm.adapters.buffer_quality`), so it comes in as an argument (``buffer_order``).
"""
from __future__ import annotations

import copy
from typing import Any, Callable, List, Optional

import numpy as np

from petastorm.errors import PetastormArgumentError
from petastorm.reader_impl.read_estimates import footer_or_none, group_bytes, plan_rows_bytes, shard_table
from petastorm.reader_impl.read_plan import (
    MAX_LISTED_SHARDS,
    ReadPlan,
    SelectionLog,
    SelectionStep,
    ShardRows,
    order_text,
)

__all__ = ["SelectionStep", "SelectionLog", "ShardRows", "ReadPlan", "BufferOrder", "explain_reader"]

#: A loader's shuffling buffer for :func:`explain_reader`: ``(row ids in the reader's order, shape (n,) int64;
#: the reader's seed) -> the same ids in the order the loader serves them``.
BufferOrder = Callable[[np.ndarray, int], np.ndarray]

#: Rows up to which a loader's shuffling buffer is simulated on row ids.
MAX_SIMULATED_ROWS = 5_000_000


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
    footer = footer_or_none(dataset, groups[0].path) if groups else None
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
    nbytes = group_bytes(groups, rows, footer, fields)

    # balanced shards of filtered rows are dealt in passing-row space (the reader's plan_rows carry it)
    dealt = p.plan_rows if passing_of(p.plan_rows) is not None else rows
    plan = p.plans.get(epoch) if dealt is p.plan_rows or np.array_equal(p.plan_rows, rows) else None
    if plan is None:
        plan = make_epoch_plan(dealt, options, epoch) if len(rows) else []
    epoch_rows, epoch_bytes = plan_rows_bytes(plan, rows, nbytes)
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
        shards=tuple(shard_table(rows, nbytes, options, int(epoch), dealt)),
        order=order_text(options),
        options={"seed": int(options.seed), "shuffle_row_groups": options.shuffle_row_groups,
                 "shuffle_rows": options.shuffle_rows,
                 "shuffle_row_drop_partitions": int(options.shuffle_row_drop_partitions),
                 "shard_seed": options.shard_seed, "balanced_remainder": options.balanced_remainder},
        shuffle_quality=quality.to_dict(), buffered_quality=buffered,
        pool={"type": pool_type, "workers_count": int(getattr(pool, "workers_count", 1)),
              "results_queue_size": int(getattr(pool, "results_queue_size", 0))},
        notes=tuple(notes))
