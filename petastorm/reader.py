"""``make_reader`` and ``make_batch_reader``: the public entry points of the read pipeline.

The facade checks and normalises arguments, then wires the stages:
fs -> dataset (:mod:`petastorm.reader_impl.dataset`) -> plan (:mod:`petastorm.reader_impl.plan`) ->
pool (:mod:`petastorm.reader_impl.pool_factory`) -> worker (:mod:`petastorm.reader_impl.worker`) ->
:class:`~petastorm.reader_impl.reader_core.Reader`. No decoding and no I/O happen here.
"""
from __future__ import annotations

import re
import secrets
from typing import Any, Optional, Sequence, Union

from petastorm.errors import (
    NoDataAvailableError,  # noqa: F401 - importable from here, as from the original's petastorm.reader
    NoMatchingFieldsError,
    PetastormArgumentError,
    PetastormSchemaError,
)
from petastorm.reader_impl.reader_core import Reader, warn_deprecated
from petastorm.settings import settings

__all__ = ["make_reader", "make_batch_reader", "Reader"]

_POOL_TYPES = ("thread", "process", "dummy")


# --- argument checks ------------------------------------------------------------------------------------

def _ensure_pool(reader_pool_type: str, workers_count: Any, results_queue_size: Any) -> None:
    if reader_pool_type not in _POOL_TYPES:
        raise PetastormArgumentError(
            f"Unknown reader_pool_type: {reader_pool_type}; reader_pool_type must be one of {list(_POOL_TYPES)}")
    if isinstance(workers_count, bool) or not isinstance(workers_count, int) or workers_count < 1:
        raise PetastormArgumentError(f"workers_count must be a positive integer, got {workers_count!r}")
    if isinstance(results_queue_size, bool) or not isinstance(results_queue_size, int) or results_queue_size < 1:
        raise PetastormArgumentError(f"results_queue_size must be a positive integer, got {results_queue_size!r}")


def _ensure_dataset_url(url: Any) -> Union[str, list]:
    """A dataset URL (str or ``os.PathLike``) or a non-empty list of them, else the original's ValueError."""
    import os

    if isinstance(url, (list, tuple)):
        if not url:
            raise PetastormArgumentError("dataset url list must be non-empty. dataset_url_or_urls: the list of "
                                         "dataset URLs is empty")
        return [_ensure_dataset_url(u) for u in url]
    if isinstance(url, os.PathLike):
        url = os.fspath(url)
    if not isinstance(url, str) or not url:
        raise PetastormArgumentError(f"directory url must be a string: dataset_url must be a URL string (or a list "
                                     f"of them), got {type(url).__name__} {url!r}")
    return url


def _ensure_num_epochs(num_epochs: Any) -> Optional[int]:
    if num_epochs is None:
        return None
    if isinstance(num_epochs, bool) or not isinstance(num_epochs, int) or num_epochs < 1:
        raise PetastormArgumentError(
            f"iterations must be positive integer or None: num_epochs must be a positive integer or None, "
            f"got {num_epochs!r}")
    return num_epochs


def _make_cache(cache_type: str, cache_location: Optional[str], cache_size_limit: Optional[int],
                cache_row_size_estimate: Optional[int], cache_extra_settings: Optional[dict]) -> Any:
    if cache_type in (None, "null"):
        return None
    if cache_type == "local-disk":
        if not cache_location or cache_size_limit is None:
            raise PetastormArgumentError("cache_type='local-disk' needs cache_location and cache_size_limit")
        from petastorm.local_disk_cache import LocalDiskCache

        return LocalDiskCache(cache_location, cache_size_limit, cache_row_size_estimate or 0,
                              **(cache_extra_settings or {}))
    raise PetastormArgumentError(f"Unknown cache_type: {cache_type}; cache_type must be 'null' or 'local-disk'")


def _resolve_fields(schema: Any, schema_fields: Any, url: Any = None, arrow_schema: Any = None) -> list:
    """Names of the fields selected by ``schema_fields`` (UnischemaFields and/or regex strings): the given
    UnischemaFields in their order, then the fields that the regexes match, in schema order."""
    from petastorm.unischema import UnischemaField, match_unischema_fields

    if schema_fields is None:
        return list(schema.fields)
    if isinstance(schema_fields, (str, UnischemaField)):
        schema_fields = [schema_fields]
    names = []
    regexes = []
    for f in schema_fields:
        if isinstance(f, UnischemaField):
            if f.name not in schema.fields:
                raise PetastormSchemaError(
                    f"field {{{f.name!r}}} does not belong to the schema {schema}; schema_fields: field {f.name!r} "
                    f"is not in the dataset's schema (fields: {list(schema.fields)})")
            names.append(f.name)
        elif isinstance(f, str):
            regexes.append(f)
        else:
            raise PetastormArgumentError(
                f"schema_fields must hold UnischemaFields or regex strings, got {type(f).__name__}: {f!r}")
    matched = [f.name for f in match_unischema_fields(schema, regexes)]
    if arrow_schema is not None:
        # a regex that names a column the inferred schema left out (unsupported type): say why
        from petastorm.arrow_types import arrow_field_to_unischema_field

        for pattern in regexes:
            if any(re.fullmatch(pattern, n) for n in schema.fields):
                continue
            for arrow_field in arrow_schema:
                if arrow_field.name not in schema.fields and re.fullmatch(pattern, arrow_field.name):
                    arrow_field_to_unischema_field(arrow_field)  # raises naming the column and its type
    # as the original: the UnischemaFields in the order given, then the regex matches (in schema order here;
    # the original's came in a hash-seeded order)
    resolved = list(dict.fromkeys(names + matched))
    if not resolved:
        raise NoMatchingFieldsError(
            f"No fields matching the criteria '{list(schema_fields)}' were found in the dataset {url}. "
            f"Fields of the dataset: {list(schema.fields)} (regexes match whole field names)")
    return resolved


def _options_fingerprint(**options: Any) -> tuple:
    """(fingerprint, JSON-able dict) of the options that decide the sequence of rows."""
    from petastorm.reader_impl.reader_state import fingerprint

    plain = {k: (repr(v) if not isinstance(v, (int, str, bool, float, type(None), list)) else v)
             for k, v in options.items()}
    return fingerprint(plain), plain


def _canonical(obj: Any, depth: int = 0) -> Any:
    """A JSON-able description of a user spec (predicate, transform) that is stable across processes:
    sets sorted, objects as their class and attributes, functions as their code and closure."""
    import types

    if depth > 8:
        return repr(type(obj))
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, bytes):
        return obj.hex()
    if isinstance(obj, (list, tuple)):
        return [_canonical(x, depth + 1) for x in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted((_canonical(x, depth + 1) for x in obj), key=repr)
    if isinstance(obj, dict):
        return sorted(([repr(k), _canonical(v, depth + 1)] for k, v in obj.items()), key=lambda kv: kv[0])
    if isinstance(obj, types.FunctionType):
        code = obj.__code__
        closure = [_canonical(c.cell_contents, depth + 1) for c in (obj.__closure__ or ())]
        return ["function", obj.__qualname__, code.co_code.hex(), _canonical(code.co_consts, depth + 1), closure,
                _canonical(obj.__defaults__, depth + 1)]
    if isinstance(obj, types.CodeType):
        return ["code", obj.co_name, obj.co_code.hex()]
    if hasattr(obj, "__dict__"):
        return [type(obj).__qualname__, _canonical(vars(obj), depth + 1)]
    return repr(obj)


def _spec_fingerprint(spec: Any) -> Optional[str]:
    if spec is None:
        return None
    from petastorm.reader_impl.reader_state import fingerprint

    try:
        return fingerprint(_canonical(spec))
    except Exception:  # an exotic object: fall back to its type (a weaker check)
        return type(spec).__qualname__


def _ids_fingerprint(ids: list) -> str:
    from petastorm.reader_impl.reader_state import fingerprint

    return fingerprint([int(i) for i in ids])


# --- the entry points -------------------------------------------------------------------------------------

def make_reader(dataset_url: str, schema_fields: Any = None, reader_pool_type: str = "thread", workers_count: int = 10,
                pyarrow_serialize: bool = False, results_queue_size: int = 50, seed: Optional[int] = None,
                shuffle_rows: bool = False, shuffle_row_groups: bool = True, shuffle_row_drop_partitions: int = 1,
                predicate: Any = None, rowgroup_selector: Any = None, num_epochs: Optional[int] = 1,
                cur_shard: Optional[int] = None, shard_count: Optional[int] = None, shard_seed: Optional[int] = None,
                cache_type: str = "null", cache_location: Optional[str] = None, cache_size_limit: Optional[int] = None,
                cache_row_size_estimate: Optional[int] = None, cache_extra_settings: Optional[dict] = None,
                hdfs_driver: str = "libhdfs3", transform_spec: Any = None, filters: Any = None,
                storage_options: Optional[dict] = None, zmq_copy_buffers: bool = True, filesystem: Any = None,
                convert_early_to_numpy: bool = False, *, resume_from: Optional[dict] = None, shard_mode: str = "original",
                balanced_remainder: str = "drop") -> Reader:
    """A reader of decoded rows of a Petastorm dataset (one written with ``materialize_dataset`` or
    ``write_dataset``): an iterator of namedtuples, one per row, or of ngram dicts.

    Parameters
    ----------
    dataset_url : str
        ``file://``, plain path, ``s3://``, ``hdfs://``, ``gs://``... of the dataset directory.
    schema_fields : list of UnischemaField or regex str, or NGram, optional
        Fields to read (regexes match field names in full); an ``NGram`` reads windows of rows.
    reader_pool_type : {'thread', 'process', 'dummy'}
    workers_count : int
        Worker threads or processes.
    results_queue_size : int
        Decoded row groups buffered ahead of the consumer; with ``workers_count`` it bounds memory.
    seed : int, optional
        Seed of every shuffle; the same seed gives the same sequence for any pool type and worker count.
    shuffle_rows, shuffle_row_groups : bool
    shuffle_row_drop_partitions : int
        Split each row group into this many row slices, each read as a separate work item.
    predicate : PredicateBase, optional
        Rows for which ``predicate.do_include`` is False are skipped; only its fields are decoded first.
    rowgroup_selector : RowGroupSelectorBase, optional
        Selects row groups through the indexes stored in the dataset.
    num_epochs : int or None
        Passes over the data; None reads forever.
    cur_shard, shard_count, shard_seed : int, optional
        Read one shard of the row groups (the original's assignment); see ``shard_mode``.
    cache_type : {'null', 'local-disk'}
    cache_location, cache_size_limit, cache_row_size_estimate, cache_extra_settings
        Local disk cache settings (size limit in bytes).
    hdfs_driver : str
    transform_spec : TransformSpec, optional
        Runs in the workers on each row (a dict) after decoding.
    filters : list of tuples or list of lists of tuples (pyarrow DNF), optional
    storage_options : dict, optional
        fsspec-style filesystem options (credentials, ``endpoint_url``...).
    filesystem : pyarrow.fs.FileSystem or fsspec filesystem, optional
    resume_from : dict, optional
        A ``reader.state_dict()``: continue exactly where that reader stopped. Or, with
        ``shard_mode='balanced'``, a job state from ``petastorm.merge_state_dicts`` (the states of every
        rank of a checkpoint): continue the job as rank ``cur_shard`` of ``shard_count``, at any world size
        (see ``docs/elastic_resume.md``).
    shard_mode : {'original', 'balanced'}
        'balanced' gives every shard the same number of rows per epoch.
    balanced_remainder : {'drop', 'pad'}
        In balanced mode, drop the remainder rows or pad shards by repeating rows.
    convert_early_to_numpy : bool
        As in petastorm 0.13: see :class:`~petastorm.reader_impl.worker.ReadSpec`.
    pyarrow_serialize, zmq_copy_buffers
        Accepted for compatibility; no effect (a ``DeprecationWarning`` when set).

    Returns
    -------
    Reader
    """
    if pyarrow_serialize:
        warn_deprecated("pyarrow_serialize")
    if zmq_copy_buffers is not True:
        warn_deprecated("zmq_copy_buffers")
    return _build_reader(
        dataset_url, is_batched=False, schema_fields=schema_fields, reader_pool_type=reader_pool_type,
        workers_count=workers_count, results_queue_size=results_queue_size, seed=seed, shuffle_rows=shuffle_rows,
        shuffle_row_groups=shuffle_row_groups, shuffle_row_drop_partitions=shuffle_row_drop_partitions,
        predicate=predicate, rowgroup_selector=rowgroup_selector, num_epochs=num_epochs, cur_shard=cur_shard,
        shard_count=shard_count, shard_seed=shard_seed, cache_type=cache_type, cache_location=cache_location,
        cache_size_limit=cache_size_limit, cache_row_size_estimate=cache_row_size_estimate,
        cache_extra_settings=cache_extra_settings, hdfs_driver=hdfs_driver, transform_spec=transform_spec,
        filters=filters, storage_options=storage_options, filesystem=filesystem, resume_from=resume_from,
        convert_early_to_numpy=convert_early_to_numpy,
        shard_mode=shard_mode, balanced_remainder=balanced_remainder)


def make_batch_reader(dataset_url_or_urls: Union[str, Sequence[str]], schema_fields: Any = None,
                      reader_pool_type: str = "thread", workers_count: int = 10, results_queue_size: int = 50,
                      seed: Optional[int] = None, shuffle_rows: bool = False, shuffle_row_groups: bool = True,
                      shuffle_row_drop_partitions: int = 1, predicate: Any = None, rowgroup_selector: Any = None,
                      num_epochs: Optional[int] = 1, cur_shard: Optional[int] = None, shard_count: Optional[int] = None,
                      shard_seed: Optional[int] = None, cache_type: str = "null", cache_location: Optional[str] = None,
                      cache_size_limit: Optional[int] = None, cache_row_size_estimate: Optional[int] = None,
                      cache_extra_settings: Optional[dict] = None, hdfs_driver: str = "libhdfs3",
                      transform_spec: Any = None, filters: Any = None, storage_options: Optional[dict] = None,
                      zmq_copy_buffers: bool = True, filesystem: Any = None, convert_early_to_numpy: bool = False,
                      *, resume_from: Optional[dict] = None, shard_mode: str = "original",
                      balanced_remainder: str = "drop") -> Reader:
    """A reader of column batches of any Parquet store (Petastorm metadata or not): an iterator of
    namedtuples whose fields are numpy arrays of shape ``(rows_in_batch,) + field shape``, one batch per
    row group (or drop partition of one).

    Parameters are those of :func:`make_reader`, except:

    dataset_url_or_urls : str or list of str
        A dataset directory URL, or a list of Parquet file URLs on one filesystem.
    transform_spec : TransformSpec, optional
        ``func`` receives a ``pandas.DataFrame`` of a batch and returns one.
    """
    if zmq_copy_buffers is not True:
        warn_deprecated("zmq_copy_buffers")
    return _build_reader(
        dataset_url_or_urls, is_batched=True, schema_fields=schema_fields, reader_pool_type=reader_pool_type,
        workers_count=workers_count, results_queue_size=results_queue_size, seed=seed, shuffle_rows=shuffle_rows,
        shuffle_row_groups=shuffle_row_groups, shuffle_row_drop_partitions=shuffle_row_drop_partitions,
        predicate=predicate, rowgroup_selector=rowgroup_selector, num_epochs=num_epochs, cur_shard=cur_shard,
        shard_count=shard_count, shard_seed=shard_seed, cache_type=cache_type, cache_location=cache_location,
        cache_size_limit=cache_size_limit, cache_row_size_estimate=cache_row_size_estimate,
        cache_extra_settings=cache_extra_settings, hdfs_driver=hdfs_driver, transform_spec=transform_spec,
        filters=filters, storage_options=storage_options, filesystem=filesystem, resume_from=resume_from,
        convert_early_to_numpy=convert_early_to_numpy,
        shard_mode=shard_mode, balanced_remainder=balanced_remainder)


def _build_reader(url: Any, *, is_batched: bool, schema_fields: Any, reader_pool_type: str, workers_count: int,
                  results_queue_size: int, seed: Optional[int], shuffle_rows: bool, shuffle_row_groups: bool,
                  shuffle_row_drop_partitions: int, predicate: Any, rowgroup_selector: Any, num_epochs: Any,
                  cur_shard: Any, shard_count: Any, shard_seed: Any, cache_type: str, cache_location: Any,
                  cache_size_limit: Any, cache_row_size_estimate: Any, cache_extra_settings: Any, hdfs_driver: str,
                  transform_spec: Any, filters: Any, storage_options: Any, filesystem: Any, resume_from: Any,
                  shard_mode: str, balanced_remainder: str, convert_early_to_numpy: bool) -> Reader:
    url = _ensure_dataset_url(url)
    _ensure_pool(reader_pool_type, workers_count, results_queue_size)
    config = settings()  # the PETASTORM_* variables, checked before any work (a bad value raises here)
    if reader_pool_type == "process":
        # start the fork server first: its imports (numpy, pyarrow: ~0.2 s) overlap this process's own
        # (pyarrow, on a first reader) and the dataset discovery below
        from petastorm.reader_impl.process import ProcessPool

        ProcessPool.start_fork_server()
    import numpy as np

    from petastorm.reader_impl.dataset import describe_url, open_dataset
    from petastorm.reader_impl.plan import PlanOptions
    from petastorm.reader_impl.pool_factory import make_pool
    from petastorm.reader_impl.selection import (
        filter_columns,
        filters_expression,
        prune_by_partition_filters,
        prune_by_partition_predicate,
    )
    from petastorm.reader_impl.worker import ReadSpec, WorkerFactory
    num_epochs = _ensure_num_epochs(num_epochs)
    explicit_seed = seed
    if seed is None and isinstance(resume_from, dict) and resume_from.get("seed") is not None:
        try:
            seed = int(resume_from["seed"])
        except (TypeError, ValueError):
            seed = None  # check_state_dict reports the malformed state
    if seed is None:
        seed = secrets.randbits(52)
    plan_options = PlanOptions(seed=int(seed), shuffle_row_groups=bool(shuffle_row_groups),
                               shuffle_rows=bool(shuffle_rows),
                               shuffle_row_drop_partitions=shuffle_row_drop_partitions,
                               cur_shard=cur_shard, shard_count=shard_count, shard_seed=shard_seed,
                               shard_mode=shard_mode, balanced_remainder=balanced_remainder)
    plan_options.validate()
    if shard_seed is not None and shard_mode == "original":
        import warnings

        warnings.warn("shard_seed was deprecated and will be removed in future versions. Use seed to apply "
                      "randomization effects on sharding row groups.", UserWarning, stacklevel=3)
    cache = _make_cache(cache_type, cache_location, cache_size_limit, cache_row_size_estimate, cache_extra_settings)

    dataset = open_dataset(url, filesystem=filesystem, storage_options=storage_options, hdfs_driver=hdfs_driver)
    if not is_batched and not dataset.has_petastorm_metadata:
        import warnings

        warnings.warn("Currently make_reader supports reading only Petastorm datasets. To read from a non-Petastorm "
                      f"Parquet store use make_batch_reader ({describe_url(url)!r} has no Petastorm metadata: its "
                      f"schema is inferred from the Parquet schema)", UserWarning, stacklevel=3)
    schema = dataset.schema

    from petastorm.ngram import NGram

    ngram = schema_fields if isinstance(schema_fields, NGram) else None
    if ngram is not None:
        if is_batched:
            raise NotImplementedError("ngrams are not supported by ArrowReaderWorker: make_batch_reader does not "
                                      "read NGram schema_fields; use make_reader")
        ngram.resolve_regex_field_names(schema)
        ts = ngram.timestamp_field
        wanted = {getattr(f, "name", f) for f in ngram.get_field_names_at_all_timesteps()}
        wanted.add(getattr(ts, "name", ts))
        unknown = sorted(wanted - set(schema.fields))
        if unknown:
            raise PetastormSchemaError(f"NGram fields {unknown} are not in the dataset's schema")
        field_names = [n for n in schema.fields if n in wanted]
    else:
        field_names = _resolve_fields(schema, schema_fields, url,
                                      None if dataset.has_petastorm_metadata else dataset.arrow_schema)
    if predicate is not None:
        unknown = [f for f in predicate.get_fields() if f not in schema.fields]
        if unknown:
            raise PetastormSchemaError(
                f"At least some column names requested by the predicate ({', '.join(sorted(unknown))}) are not "
                f"valid schema names: ({', '.join(schema.fields)})")

    view = schema.create_schema_view([schema.fields[n] for n in field_names])
    output_schema = view
    if transform_spec is not None:
        from petastorm.transform import transform_schema

        output_schema = transform_schema(view, transform_spec)

    rg_ids = list(range(len(dataset.row_groups)))
    from petastorm.reader_impl.explain import SelectionLog

    selection_log = SelectionLog(dataset)  # what each stage pruned, for reader.explain()
    if rowgroup_selector is not None:
        from petastorm.etl.rowgroup_indexing import load_rowgroup_indexes

        indexes = load_rowgroup_indexes(dataset.metadata, dataset.root or str(url))
        missing = [n for n in rowgroup_selector.get_index_names() if n not in indexes]
        if missing:
            raise PetastormArgumentError(
                f"Row groups index is not available in the dataset metadata file. You can generate it on an "
                f"existing dataset using rowgroup_indexing_run.py. rowgroup_selector needs indexes {missing}; "
                f"dataset {url!r} has {sorted(indexes) or 'none'} (build them with "
                f"petastorm.etl.rowgroup_indexing.build_rowgroup_index)")
        selected = set(rowgroup_selector.select_row_groups(indexes))
        rg_ids = [i for i in rg_ids if i in selected]
        selection_log.record("rowgroup_selector", rg_ids, repr(rowgroup_selector))
    expression = filters_expression(filters)
    filter_cols = filter_columns(filters, dataset.arrow_schema)
    rg_ids, pruned = prune_by_partition_filters(dataset, expression, filter_cols, rg_ids)
    if pruned:
        selection_log.record("filters", rg_ids, f"{expression} (partition keys)")
    elif expression is not None:
        selection_log.row_filter(f"filters {expression}")
    rg_ids = prune_by_partition_predicate(dataset, predicate, rg_ids)
    if predicate is not None:
        if predicate.get_fields() and set(predicate.get_fields()) <= set(dataset.partition_names):
            selection_log.record("predicate", rg_ids, f"{type(predicate).__name__} on partition keys")
        selection_log.row_filter(f"predicate {type(predicate).__name__} on {sorted(predicate.get_fields())}")
    if not rg_ids and dataset.row_groups:
        import warnings

        warnings.warn("No matching data is available for loading after rowgroup selector were applied and the data "
                      f"was sharded: no row group of {describe_url(url)!r} is left after the rowgroup_selector, "
                      "filters and the predicate on partition keys", UserWarning, stacklevel=3)
    # No row group selected by rowgroup_selector/filters: the reader yields nothing, as the original's does
    # (sharding an empty selection still raises the original's NoDataAvailableError, in the plan).
    if expression is not None and not pruned:
        unknown = [c for c in filter_cols if c not in dataset.arrow_schema.names]
        if unknown:
            raise PetastormSchemaError(f"filters use columns {unknown} that are not in the dataset")

    if shard_mode == "balanced" or plan_options.shuffle_row_drop_partitions > 1:
        dataset.ensure_row_counts()  # these plans slice row groups by row: they need the counts
    partition_types = {name: dataset.arrow_schema.field(name).type for name in dataset.partition_names}
    selected_groups = [dataset.row_groups[i] for i in rg_ids]
    spec = ReadSpec(filesystem=dataset.filesystem, row_groups=selected_groups, schema=schema, fields=field_names,
                    partition_types=partition_types, predicate=predicate, transform_spec=transform_spec,
                    filter_expression=None if pruned else expression,
                    output_mode="batch" if is_batched else "rows", cache=cache,
                    dataset_fingerprint=dataset.fingerprint() if cache is not None else "",  # cache keys only
                    output_schema=output_schema if transform_spec is not None else None,
                    filter_columns=filter_cols, direct_read=config.direct_read, settings=config,
                    convert_early_to_numpy=bool(convert_early_to_numpy))
    pool = make_pool(reader_pool_type, workers_count, results_queue_size)
    options_fp, options_plain = _options_fingerprint(
        batched=is_batched, fields=field_names, shuffle_rows=shuffle_rows, shuffle_row_groups=shuffle_row_groups,
        drop=shuffle_row_drop_partitions, predicate=_spec_fingerprint(predicate),
        transform=_spec_fingerprint(transform_spec), row_groups=_ids_fingerprint(rg_ids), cur_shard=cur_shard,
        shard_count=shard_count, shard_seed=shard_seed, shard_mode=shard_mode, remainder=balanced_remainder,
        ngram=None if ngram is None else [ngram.length, ngram.delta_threshold, str(ngram.timestamp_field)],
        filters=repr(filters), num_epochs=num_epochs)
    from petastorm.reader_impl.dataset import PLAN_ALL_ROWS, UNKNOWN_ROWS

    plan_rows = np.asarray([PLAN_ALL_ROWS if rg.num_rows == UNKNOWN_ROWS else rg.num_rows
                            for rg in selected_groups], dtype=np.int64)
    from petastorm.reader_impl.plan import make_epoch_plan

    first_plan = make_epoch_plan(plan_rows, plan_options, 0)  # raises now if a shard would be empty
    reader = Reader(dataset=dataset, schema=output_schema, plan_rows=plan_rows, plan_options=plan_options,
                    num_epochs=num_epochs, pool=pool, worker_factory=WorkerFactory(spec), is_batched_reader=is_batched,
                    ngram=ngram, cache=cache, options_fingerprint=options_fp, options=options_plain,
                    explicit_seed=explicit_seed, resume_from=resume_from, first_plan=first_plan,
                    ngram_schema=view)
    reader._explain_log = selection_log
    reader._explain_setup = {"rg_ids": rg_ids, "fields": field_names}
    return reader
