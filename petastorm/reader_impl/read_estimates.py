"""Rows and bytes a reader reads, estimated without reading data: per row group from one Parquet footer
(the selected columns' share of the compressed bytes), per shard and per epoch plan.

Used by :func:`~petastorm.reader_impl.explain.explain_reader`; pure functions of row counts but for
:func:`footer_or_none`, which reads one footer.
"""
from __future__ import annotations

from typing import Any, List, Sequence

import numpy as np

from petastorm.reader_impl.read_plan import MAX_LISTED_SHARDS, ShardRows

__all__ = ["footer_or_none", "group_bytes", "shard_table", "plan_rows_bytes"]


def footer_or_none(dataset: Any, path: str) -> Any:
    """The Parquet footer of ``path`` in ``dataset`` (``pyarrow.parquet.FileMetaData``); None when it cannot be
    read (the estimates then do without it)."""
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


def group_bytes(groups: Sequence[Any], rows: np.ndarray, footer: Any, fields: Sequence[str]) -> np.ndarray:
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


def shard_table(rows: np.ndarray, nbytes: np.ndarray, o: Any, epoch: int, dealt: Any = None) -> List[ShardRows]:
    """Rows and estimated bytes of the listed shards in ``epoch`` (the first ``MAX_LISTED_SHARDS`` and this
    reader's; one shard when the reader is not sharded).

    Parameters
    ----------
    rows, nbytes : np.ndarray, shape (n_groups,)
        Rows (int64; 0 for row groups never read) and estimated bytes (float64) of each planned row group.
    o : petastorm.reader_impl.plan_options.PlanOptions
        The reader's plan options.
    epoch : int
    dealt : np.ndarray, optional
        The rows balanced shards are dealt by (the reader's ``plan_rows``: passing rows when rows are
        filtered); default ``rows``.
    """
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
            n, b = plan_rows_bytes(plan, rows, nbytes)
            out.append(ShardRows(s, len({it.row_group for it in plan}), n, int(b)))
        return out
    owner = np.arange(len(rows)) % k  # the original's assignment (shard_seed only reorders)
    shard_rows = np.bincount(owner, weights=rows, minlength=k)
    shard_bytes = np.bincount(owner, weights=nbytes, minlength=k)
    counts = np.bincount(owner[rows > 0], minlength=k)  # 0 rows: rejected by the selector/predicate, never read
    return [ShardRows(s, int(counts[s]), int(shard_rows[s]), int(shard_bytes[s])) for s in shown]


def plan_rows_bytes(plan: Sequence[Any], rows: np.ndarray, nbytes: np.ndarray) -> tuple:
    """(rows, estimated bytes) a plan reads: an item's bytes are its row group's, pro rata of its rows."""
    if not len(plan):
        return 0, 0.0
    n = np.fromiter((it.row_stop - it.row_start for it in plan), dtype=np.int64, count=len(plan))
    g = np.fromiter((it.row_group for it in plan), dtype=np.int64, count=len(plan))
    per_row = nbytes[g] / np.where(rows[g] > 0, rows[g], 1)
    return int(n.sum()), float(np.dot(per_row, n))
