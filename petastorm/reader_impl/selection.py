"""Selection stage: which row groups a reader reads, decided before any data is read.

``filters`` (pyarrow DNF or an ``Expression``) become one expression and the columns it reads; a filter or a
predicate that reads Hive partition keys only is evaluated once per partition, here, so the row groups of
pruned partitions are never planned (the original prunes by such predicates at planning time too).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Optional

from petastorm.errors import PetastormArgumentError, PetastormSchemaError

__all__ = ["Selection", "select_row_groups", "filters_expression", "coerce_filter_values", "filter_columns",
           "prune_by_partition_filters", "prune_by_partition_predicate"]


@dataclass(frozen=True)
class Selection:
    """The row groups a reader reads, and how its ``filters`` are applied.

    Attributes
    ----------
    rg_ids : list of int
        Ids (dataset order) of the selected row groups.
    expression : pyarrow.compute.Expression or None
        ``filters`` as one expression.
    filter_columns : list of str
        Columns that ``filters`` read.
    pruned_by_filters : bool
        True when ``filters`` read partition keys only and were applied here (the workers skip them).
    log : SelectionLog
        What each stage pruned, for ``reader.explain()``.
    planned_ids : list of int
        Ids (dataset order) of the row groups that sharding deals out: those left by ``filters``, a superset
        of ``rg_ids``. The original shards before it applies the ``rowgroup_selector`` and the predicate on
        partition keys (recorded from 0.12.1: ``cur_shard``/``shard_count`` deal out the row groups the
        filters leave, then each shard keeps those of its row groups that the selector picks and the
        predicate accepts); the reader plans the ids not in ``rg_ids`` with 0 rows, so no shard reads them.
    """

    rg_ids: list
    expression: Any
    filter_columns: list
    pruned_by_filters: bool
    log: Any
    planned_ids: Optional[list] = None

    @property
    def row_filter_expression(self) -> Any:
        """The expression the workers evaluate on every row (None when partition pruning applied it)."""
        return None if self.pruned_by_filters else self.expression


def select_row_groups(dataset: Any, url: Any, rowgroup_selector: Any, filters: Any, predicate: Any,
                      warn_stacklevel: int = 2) -> Selection:
    """Run the selection stages in order: ``filters`` on Hive partition keys, ``rowgroup_selector`` (stored
    indexes), ``predicate`` on Hive partition keys (the original shards between the filters and the other
    two: see :attr:`Selection.planned_ids`).

    Raises
    ------
    PetastormArgumentError
        ``rowgroup_selector`` needs an index the dataset lacks, or ``filters`` is not valid.
    PetastormSchemaError
        ``filters`` read columns that are not in the dataset.
    """
    from petastorm.reader_impl.dataset import describe_url
    from petastorm.reader_impl.explain import SelectionLog

    rg_ids = list(range(len(dataset.row_groups)))
    log = SelectionLog(dataset)
    selected = None
    if rowgroup_selector is not None and not (callable(getattr(rowgroup_selector, "get_index_names", None))
                                              and callable(getattr(rowgroup_selector, "select_row_groups", None))):
        # the original's ValueError and message (recorded from 0.12.1; a bare AttributeError before)
        raise PetastormArgumentError(f"rowgroup_selector parameter is expected to be derived from RowGroupSelectorBase, "
                                     f"got {type(rowgroup_selector).__name__}: {rowgroup_selector!r:.100}")
    if rowgroup_selector is not None:
        from petastorm.etl.rowgroup_indexing import load_rowgroup_indexes

        indexes = load_rowgroup_indexes(dataset.metadata, dataset.root or str(url))
        missing = [n for n in rowgroup_selector.get_index_names() if n not in indexes]
        if missing:  # the original's two messages (recorded from 0.12.1), then what to do
            lead = (f"Some of required indexes {missing} are not available in {list(indexes)}" if indexes else
                    "Row groups index is not available in the dataset metadata file. You can generate it on an "
                    "existing dataset using rowgroup_indexing_run.py")
            raise PetastormArgumentError(
                f"{lead}. rowgroup_selector needs indexes {missing}; dataset {url!r} has {sorted(indexes) or 'none'} "
                f"(build them with petastorm.etl.rowgroup_indexing.build_rowgroup_index)")
        selected = set(rowgroup_selector.select_row_groups(indexes))
    filters = coerce_filter_values(filters, dataset.arrow_schema)
    expression = filters_expression(filters)
    columns = filter_columns(filters, dataset.arrow_schema)
    if expression is not None:
        _check_filters_apply(filters, expression, columns, dataset.arrow_schema)
    rg_ids, pruned = prune_by_partition_filters(dataset, expression, columns, rg_ids)
    if pruned:
        log.record("filters", rg_ids, f"{expression} (partition keys)")
    elif expression is not None:
        log.row_filter(f"filters {expression}")
    # the rowgroup_selector and the predicate on partition keys come after sharding in 0.12.1 (recorded): the
    # reader shards planned_ids and plans the row groups they reject with 0 rows
    kept = rg_ids
    if selected is not None:
        kept = [i for i in kept if i in selected]
        log.record("rowgroup_selector", kept, repr(rowgroup_selector))
    kept = prune_by_partition_predicate(dataset, predicate, kept)
    if predicate is not None:
        if predicate.get_fields() and set(predicate.get_fields()) <= set(dataset.partition_names):
            log.record("predicate", kept, f"{type(predicate).__name__} on partition keys")
        log.row_filter(f"predicate {type(predicate).__name__} on {sorted(predicate.get_fields())}")
    if not kept and dataset.row_groups:
        warnings.warn("No matching data is available for loading after rowgroup selector were applied and the data "
                      f"was sharded: no row group of {describe_url(url)!r} is left after the rowgroup_selector, "
                      "filters and the predicate on partition keys", UserWarning, stacklevel=warn_stacklevel)
    # No row group selected: the reader yields nothing, as the original's does (sharding what the filters
    # leave still raises the original's NoDataAvailableError, in the plan, when they leave too few row groups).
    return Selection(kept, expression, columns, pruned, log, rg_ids)


def _check_filters_apply(filters: Any, expression: Any, columns: list, schema: Any) -> None:
    """Raise, naming ``filters``, when they read columns the dataset lacks or compare a column with a value of
    another type (pyarrow's bare ``ArrowNotImplementedError`` at the first read, before)."""
    import pyarrow as pa

    unknown = [c for c in columns if c not in schema.names]
    if unknown:
        raise PetastormSchemaError(f"filters use columns {unknown} that are not in the dataset")
    try:
        pa.Table.from_batches([], schema=schema).filter(expression)
    except (pa.ArrowException, TypeError, ValueError) as e:
        raise PetastormArgumentError(f"filters {filters!r} do not apply to the dataset's columns "
                                     f"({', '.join(f'{n}: {schema.field(n).type}' for n in columns)}): {e}") from None


def filters_expression(filters: Any) -> Any:
    """``filters`` (pyarrow DNF: a list of tuples or of lists of tuples, or a ``pyarrow.compute.Expression``) as
    an Expression; None for None; an error naming ``filters`` when pyarrow cannot read it."""
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


_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")
_COMPARISONS = ("=", "==", "!=", "<", ">", "<=", ">=")


def _coerce_literal(value: Any, typ: Any, term: Any) -> Any:
    """A filter's str literal as a value of the column's Arrow type ``typ`` (numbers, booleans, decimals, ISO
    dates and timestamps), an int as a ``Decimal`` for a decimal column (pyarrow cannot compare a decimal column
    with an int literal: 'Precision is not great enough'); others as given."""
    import datetime
    import decimal

    import pyarrow.types as pat

    if pat.is_decimal(typ) and isinstance(value, int) and not isinstance(value, bool):
        return decimal.Decimal(value)
    if not isinstance(value, str):
        return value
    text = value.strip()
    try:
        if pat.is_integer(typ):
            return int(text)
        if pat.is_floating(typ):
            return float(text)
        if pat.is_decimal(typ):
            return decimal.Decimal(text)
        if pat.is_date(typ):
            return datetime.date.fromisoformat(text)
        if pat.is_timestamp(typ):
            return datetime.datetime.fromisoformat(text)
        if pat.is_boolean(typ):
            if text.lower() in _TRUE + _FALSE:
                return text.lower() in _TRUE
        else:
            return value
    except (ValueError, ArithmeticError):  # decimal.InvalidOperation is an ArithmeticError
        pass
    raise PetastormArgumentError(f"filters term {term!r}: {value!r} is not a value of column {term[0]!r} ({typ})")


def coerce_filter_values(filters: Any, schema: Any) -> Any:
    """DNF ``filters`` with str literals of number, boolean, decimal, date and timestamp columns turned into
    values of the column's type; a comparison with None or NaN (which selects no row, or keeps the NaN rows of
    '!=') is a ``PetastormArgumentError`` naming the term and the ``is_null()``/``is_nan()`` expressions.

    The directory names of Hive partitions are strings, and 0.12.1 compared ``('year', '=', '2020')`` with an
    integer partition key as ``2020`` (recorded: ``'='``, ``'!='``, ``'>'``, ``'in'`` select the same rows as
    with ints); pyarrow refuses to compare an int32 column with a string (``ArrowNotImplementedError``). A
    literal that is not a value of the column's type is a ``PetastormArgumentError`` naming the term.
    A pyarrow ``Expression`` is returned as given.
    """
    if not isinstance(filters, (list, tuple)) or not filters:
        return filters
    nested = isinstance(filters[0], (list, tuple)) and filters[0] and isinstance(filters[0][0], (list, tuple))
    out = []
    for conj in (filters if nested else [filters]):
        terms = []
        for term in conj:
            if isinstance(term, (list, tuple)) and len(term) == 3 and term[2] is None and term[1] in _COMPARISONS:
                # Arrow compares with null as null: the term would select no row, silently (0.12.1 ignored such
                # a filter on a column and raised a TypeError on a partition key)
                raise PetastormArgumentError(
                    f"filters term {tuple(term)!r} compares {term[0]!r} with None, which selects no row (a "
                    f"comparison with null is null). For the rows where {term[0]!r} is null give filters="
                    f"pyarrow.compute.field({term[0]!r}).is_null(), for the others ~pyarrow.compute.field("
                    f"{term[0]!r}).is_null()")
            if isinstance(term, (list, tuple)) and len(term) == 3 and term[0] in schema.names:
                typ = schema.field(term[0]).type
                value = term[2]
                if isinstance(value, (list, tuple, set, frozenset)):
                    value = type(value)(_coerce_literal(v, typ, term) for v in value)
                else:
                    value = _coerce_literal(value, typ, term)
                term = (term[0], term[1], value)
                if term[1] in _COMPARISONS and isinstance(value, float) and value != value:
                    # NaN equals nothing and differs from everything, itself included: '=' selected no row and
                    # '!=' kept the NaN rows, silently
                    raise PetastormArgumentError(
                        f"filters term {term!r} compares {term[0]!r} with NaN, which is neither equal to nor "
                        f"ordered with any value (NaN itself included). For the NaN rows give filters="
                        f"pyarrow.compute.field({term[0]!r}).is_nan(), for the others "
                        f"~pyarrow.compute.field({term[0]!r}).is_nan()")
            terms.append(term)
        out.append(terms)
    return out if nested else out[0]


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

    from petastorm.reader_impl.row_filters import filter_mask, partition_scalar

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
        cols[name] = pa.array([partition_scalar(v, typ, name) for v in vals], type=typ)
    mask = filter_mask(pa.table(cols), expression)
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
    from petastorm.reader_impl.row_filters import partition_scalar

    types = {name: dataset.arrow_schema.field(name).type for name in fields}
    verdicts: dict = {}
    keep = []
    for i in rg_ids:
        partition = dataset.row_groups[i].partition
        if partition not in verdicts:
            values = dict(partition)
            row = {name: partition_scalar(values.get(name), types[name], name) for name in fields}
            try:
                verdicts[partition] = bool(predicate.do_include(row))
            except Exception:
                return rg_ids
        if verdicts[partition]:
            keep.append(i)
    return keep
