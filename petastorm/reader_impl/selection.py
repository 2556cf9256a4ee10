"""Selection stage: which row groups a reader reads, decided before any data is read.

``filters`` (pyarrow DNF or an ``Expression``) become one expression and the columns it reads; a filter or a
predicate that reads Hive partition keys only is evaluated once per partition, here, so the row groups of
pruned partitions are never planned (the original prunes by such predicates at planning time too).
"""
from __future__ import annotations

from typing import Any, Optional

from petastorm.errors import PetastormArgumentError

__all__ = ["filters_expression", "filter_columns", "prune_by_partition_filters", "prune_by_partition_predicate"]


def filters_expression(filters: Any) -> Any:
    if filters is None:
        return None
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    if isinstance(filters, pc.Expression):
        return filters
    try:
        return pq.filters_to_expression(filters)
    except Exception as e:
        raise PetastormArgumentError(f"filters {filters!r} is not valid pyarrow DNF: {e}") from e


def expression_columns(expression: Any, schema: Any) -> list:
    """Columns of ``schema`` that a pyarrow ``Expression`` refers to (pyarrow does not list them: a column
    is referred to when the expression no longer binds without it)."""
    import pyarrow as pa

    def bind_error(candidate: Any) -> Optional[Exception]:
        try:
            pa.Table.from_batches([], schema=candidate).filter(expression)
        except (pa.ArrowException, ValueError, TypeError, KeyError) as e:
            return e
        return None

    error = bind_error(schema)
    if error is not None:
        raise PetastormArgumentError(f"filters expression {expression} does not apply to the dataset's columns "
                                     f"{schema.names}: {error}")
    text = str(expression)  # a referenced column's name appears in the expression's text: test only those
    return [name for i, name in enumerate(schema.names) if name in text and bind_error(schema.remove(i)) is not None]


def filter_columns(filters: Any, schema: Any) -> list:
    """Columns of the dataset's Arrow ``schema`` that ``filters`` (DNF list or pyarrow ``Expression``) read."""
    if filters is None:
        return []
    if not isinstance(filters, (list, tuple)):
        return expression_columns(filters, schema)
    names = []
    items = filters if filters and isinstance(filters[0], (list, tuple)) and filters[0] and \
        isinstance(filters[0][0], (list, tuple)) else [filters]
    for conj in items:
        for term in conj:
            names.append(term[0])
    return list(dict.fromkeys(names))


def prune_by_partition_filters(dataset: Any, expression: Any, columns: list, rg_ids: list) -> tuple:
    """Drop row groups whose Hive partition values fail ``filters`` (when only partition columns are used)."""
    if expression is None or not columns or not set(columns) <= set(dataset.partition_names):
        return rg_ids, False
    import pyarrow as pa

    from petastorm.reader_impl.worker import _filter_mask, _partition_scalar

    schema = dataset.arrow_schema
    keep = []
    distinct = {}
    for i in rg_ids:
        distinct.setdefault(dataset.row_groups[i].partition, []).append(i)
    parts = list(distinct)
    cols = {}
    for name in columns:
        typ = schema.field(name).type
        vals = [dict(p).get(name) for p in parts]
        cols[name] = pa.array([_partition_scalar(v, typ, name) for v in vals], type=typ)
    mask = _filter_mask(pa.table(cols), expression)
    for p, ok in zip(parts, mask):
        if ok:
            keep.extend(distinct[p])
    return sorted(keep), True


def prune_by_partition_predicate(dataset: Any, predicate: Any, rg_ids: list) -> list:
    """Drop row groups whose Hive partition values fail ``predicate`` when it reads partition keys only, as
    the original does at planning time: ``predicate.do_include`` is called once per distinct partition with
    a dict of its typed values. A predicate that raises there is left to the workers (they raise it)."""
    if predicate is None or not dataset.partition_names:
        return rg_ids
    fields = set(predicate.get_fields())
    if not fields or not fields <= set(dataset.partition_names):
        return rg_ids
    from petastorm.reader_impl.worker import _partition_scalar

    types = {name: dataset.arrow_schema.field(name).type for name in fields}
    verdicts: dict = {}
    keep = []
    for i in rg_ids:
        partition = dataset.row_groups[i].partition
        if partition not in verdicts:
            values = dict(partition)
            row = {name: _partition_scalar(values.get(name), types[name], name) for name in fields}
            try:
                verdicts[partition] = bool(predicate.do_include(row))
            except Exception:
                return rg_ids
        if verdicts[partition]:
            keep.append(i)
    return keep
