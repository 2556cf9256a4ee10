"""The rows of each row group that pass a reader's ``filters`` and predicate, counted at plan time.

``shard_mode='balanced'`` with row filters or a predicate on stored fields deals these rows, not the stored
ones, so that every shard gets the same number of rows that pass (see
:class:`petastorm.reader_impl.plan_balanced.PassingRows`). The rows are found as a worker finds them (the
filter columns read with pyarrow and masked, then the predicate's fields decoded by a
:class:`~petastorm.reader_impl.worker.RowGroupWorker` and the predicate evaluated on the rows the filters
keep), reading the filter and predicate columns only, one whole row group at a time, in the calling thread.
The predicate must be a function of the row (the worker evaluates it again on the dealt slices); a copy of it is
evaluated here (when it can be copied), so a stateful predicate object of the user's is not called at plan time.
"""
from __future__ import annotations

import copy
import dataclasses
from typing import Any

import numpy as np

from petastorm.reader_impl.row_filters import filter_mask

__all__ = ["passing_row_indices"]


def passing_row_indices(spec: Any, rows_per_group: Any) -> list:
    """Stored-row indices of the rows of each row group that pass the reader's ``filters`` and predicate.

    Parameters
    ----------
    spec : petastorm.reader_impl.worker.ReadSpec
        The reader's spec (``row_groups``, ``filter_expression``, ``filter_columns``, ``predicate``,
        ``output_mode``).
    rows_per_group : np.ndarray, shape (len(spec.row_groups),), int
        Stored rows of each row group; 0: the row group is not read (rejected by a selector).

    Returns
    -------
    list of np.ndarray of int64
        Sorted indices, one array per row group.
    """
    from petastorm.predicates import evaluate_predicate
    from petastorm.reader_impl.work_item import WorkItem
    from petastorm.reader_impl.worker import RowGroupWorker

    try:
        predicate = copy.deepcopy(spec.predicate)
    except Exception:  # holds something that cannot be copied (a lock, a client): evaluated as given
        predicate = spec.predicate
    pred_fields = sorted(predicate.get_fields()) if predicate is not None else []
    # the worker decodes the predicate's fields of the rows the filters keep (no transform, no cache)
    worker = RowGroupWorker(dataclasses.replace(spec, fields=pred_fields, predicate=None, transform_spec=None,
                                                output_schema=None, cache=None))
    out = []
    try:
        for g, n in enumerate(np.asarray(rows_per_group, dtype=np.int64).tolist()):
            idx = np.arange(n, dtype=np.int64)
            if n and spec.filter_expression is not None:
                table = worker._read_columns(spec.row_groups[g], list(spec.filter_columns))
                idx = idx[filter_mask(table, spec.filter_expression)]
            if pred_fields and len(idx):
                batch = worker(WorkItem(0, 0, g, 0, n))
                mask = np.asarray(evaluate_predicate(predicate, batch.columns, batch.num_rows,
                                                     batch=spec.output_mode == "batch"), dtype=bool)
                idx = idx[mask]
            out.append(idx)
    finally:
        worker.close()
    return out
