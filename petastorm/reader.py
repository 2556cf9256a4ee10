"""``make_reader`` and ``make_batch_reader``: the public entry points of the read pipeline.

The facade checks and normalises arguments (both entry points gather theirs in one ``_ReaderArgs``), then
wires the stages: fs -> dataset (:mod:`petastorm.reader_impl.dataset`) -> fields
(:mod:`petastorm.reader_impl.fields`) -> selection of row groups
(:mod:`petastorm.reader_impl.selection`) -> plan (:mod:`petastorm.reader_impl.plan`) -> pool
(:mod:`petastorm.reader_impl.pool_factory`) -> worker (:mod:`petastorm.reader_impl.worker`) ->
:class:`~petastorm.reader_impl.reader_core.Reader`, which keeps the options' fingerprint
(:mod:`petastorm.reader_impl.fingerprint`) for resume states. No decoding and no I/O happen here.
"""
from __future__ import annotations

import numbers
import os
import secrets
import warnings
from collections.abc import Sized
from dataclasses import dataclass, fields
from typing import Any, Dict, Optional, Sequence, Union

from petastorm.errors import (
    NoDataAvailableError,  # noqa: F401 - importable from here, as from the original's petastorm.reader
    PetastormArgumentError,
    PetastormArgumentTypeError,
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
        # arguments of the wrong type, named (0.12.1 and ours raised a bare TypeError from an arithmetic
        # operator: "unsupported operand type(s) for /: 'str' and 'int'")
        if not isinstance(cache_location, (str, os.PathLike)):
            raise PetastormArgumentTypeError(f"cache_location must be a path (str), got {cache_location!r} "
                                             f"({type(cache_location).__name__})")
        for name, value in (("cache_size_limit", cache_size_limit), ("cache_row_size_estimate", cache_row_size_estimate)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Real)):
                raise PetastormArgumentTypeError(f"{name} must be a number of bytes, got {value!r} "
                                                 f"({type(value).__name__})")
        if cache_extra_settings is not None and not isinstance(cache_extra_settings, dict):
            raise PetastormArgumentTypeError(f"cache_extra_settings must be a dict or None, got "
                                             f"{type(cache_extra_settings).__name__}: {cache_extra_settings!r:.100}")
        from petastorm.local_disk_cache import LocalDiskCache

        return LocalDiskCache(cache_location, cache_size_limit, cache_row_size_estimate or 0,
                              **(cache_extra_settings or {}))
    raise PetastormArgumentError(f"Unknown cache_type: {cache_type}; cache_type must be 'null' or 'local-disk'")


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
    given = locals()  # first: the arguments alone
    if pyarrow_serialize:
        warn_deprecated("pyarrow_serialize")
    if zmq_copy_buffers is not True:
        warn_deprecated("zmq_copy_buffers")
    return _build_reader(_ReaderArgs.of(dataset_url, False, given))


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
    given = locals()  # first: the arguments alone
    if zmq_copy_buffers is not True:
        warn_deprecated("zmq_copy_buffers")
    return _build_reader(_ReaderArgs.of(dataset_url_or_urls, True, given))


@dataclass(frozen=True)
class _ReaderArgs:
    """The arguments of :func:`make_reader` / :func:`make_batch_reader` (their order), as given."""

    url: Any
    is_batched: bool
    schema_fields: Any
    reader_pool_type: str
    workers_count: int
    results_queue_size: int
    seed: Optional[int]
    shuffle_rows: bool
    shuffle_row_groups: bool
    shuffle_row_drop_partitions: int
    predicate: Any
    rowgroup_selector: Any
    num_epochs: Any
    cur_shard: Any
    shard_count: Any
    shard_seed: Any
    cache_type: str
    cache_location: Any
    cache_size_limit: Any
    cache_row_size_estimate: Any
    cache_extra_settings: Any
    hdfs_driver: str
    transform_spec: Any
    filters: Any
    storage_options: Any
    filesystem: Any
    convert_early_to_numpy: bool
    resume_from: Any
    shard_mode: str
    balanced_remainder: str

    @classmethod
    def of(cls, url: Any, is_batched: bool, given: Dict[str, Any]) -> _ReaderArgs:
        """The arguments of one call of an entry point: ``given`` is its ``locals()`` at entry (a parameter per
        field but the URL's, which each entry point names its own way)."""
        return cls(url=url, is_batched=is_batched,
                   **{f.name: given[f.name] for f in fields(cls) if f.name not in ("url", "is_batched")})


def _plan_options(args: _ReaderArgs) -> tuple:
    """(PlanOptions, explicit seed): the seed is the given one, else the resumed state's, else random."""
    from petastorm.reader_impl.plan import PlanOptions
    from petastorm.reader_impl.plan_options import is_int

    seed = args.seed
    if seed is not None and not is_int(seed):  # int(2.5) would quietly be the seed 2, int('3') the seed 3
        raise PetastormArgumentTypeError(f"seed must be an int or None, got {seed!r} ({type(seed).__name__})")
    if seed is None and isinstance(args.resume_from, dict) and args.resume_from.get("seed") is not None:
        try:
            seed = int(args.resume_from["seed"])
        except (TypeError, ValueError):
            seed = None  # check_state_dict reports the malformed state
    if seed is None:
        seed = secrets.randbits(52)
    options = PlanOptions(seed=int(seed), shuffle_row_groups=bool(args.shuffle_row_groups),
                          shuffle_rows=bool(args.shuffle_rows),
                          shuffle_row_drop_partitions=args.shuffle_row_drop_partitions,
                          cur_shard=args.cur_shard, shard_count=args.shard_count, shard_seed=args.shard_seed,
                          shard_mode=args.shard_mode, balanced_remainder=args.balanced_remainder)
    options.validate()
    if args.shard_seed is not None and args.shard_mode == "original":
        warnings.warn("shard_seed was deprecated and will be removed in future versions. Use seed to apply "
                      "randomization effects on sharding row groups.", UserWarning, stacklevel=4)
    return options, args.seed


def _build_reader(args: _ReaderArgs) -> Reader:
    url = _ensure_dataset_url(args.url)
    _ensure_pool(args.reader_pool_type, args.workers_count, args.results_queue_size)
    config = settings()  # the PETASTORM_* variables, checked before any work (a bad value raises here)
    if args.reader_pool_type == "process":
        # start the fork server first: its imports (numpy, pyarrow) overlap this process's own
        # (pyarrow, on a first reader) and the dataset discovery below
        from petastorm.reader_impl.process import ProcessPool

        ProcessPool.start_fork_server()
    import numpy as np

    from petastorm.ngram import NGram
    from petastorm.reader_impl.dataset import PLAN_ALL_ROWS, UNKNOWN_ROWS, describe_url, open_dataset
    from petastorm.reader_impl.fields import check_predicate_fields, ngram_fields, resolve_fields
    from petastorm.reader_impl.fingerprint import ids_fingerprint, options_fingerprint, spec_fingerprint
    from petastorm.reader_impl.plan import make_epoch_plan
    from petastorm.reader_impl.pool_factory import make_pool
    from petastorm.reader_impl.selection import select_row_groups
    from petastorm.reader_impl.worker import ReadSpec, WorkerFactory
    is_batched, predicate, transform_spec = args.is_batched, args.predicate, args.transform_spec
    num_epochs = _ensure_num_epochs(args.num_epochs)
    plan_options, explicit_seed = _plan_options(args)
    cache = _make_cache(args.cache_type, args.cache_location, args.cache_size_limit, args.cache_row_size_estimate,
                        args.cache_extra_settings)

    dataset = open_dataset(url, filesystem=args.filesystem, storage_options=args.storage_options,
                           hdfs_driver=args.hdfs_driver)
    if not is_batched and not dataset.has_petastorm_metadata:
        warnings.warn("Currently make_reader supports reading only Petastorm datasets. To read from a non-Petastorm "
                      f"Parquet store use make_batch_reader ({describe_url(url)!r} has no Petastorm metadata: its "
                      f"schema is inferred from the Parquet schema)", UserWarning, stacklevel=3)
    schema = dataset.schema

    ngram = args.schema_fields if isinstance(args.schema_fields, NGram) else None
    if ngram is not None:
        field_names = ngram_fields(ngram, schema, is_batched)
    else:
        field_names = resolve_fields(schema, args.schema_fields, url,
                                     None if dataset.has_petastorm_metadata else dataset.arrow_schema)
    check_predicate_fields(predicate, schema)

    nothing_selected = args.schema_fields is None or (isinstance(args.schema_fields, Sized)
                                                      and len(args.schema_fields) == 0)  # no truth value: arrays
    if ngram is None and nothing_selected and field_names == list(schema.fields):
        view = schema  # nothing selected: the stored schema itself, as 0.12.1 (rows named '<schema>_view')
    else:
        view = schema.create_schema_view([schema.fields[n] for n in field_names])
    output_schema = view
    if transform_spec is not None:
        from petastorm.transform import transform_schema

        output_schema = transform_schema(view, transform_spec)

    selection = select_row_groups(dataset, url, args.rowgroup_selector, args.filters, predicate, warn_stacklevel=4)
    # the reader plans (and shards) the row groups the filters leave; those the rowgroup_selector or the
    # predicate on partition keys reject get 0 rows, so no item reads them (0.12.1 shards before applying these)
    rg_ids = selection.planned_ids if selection.planned_ids is not None else selection.rg_ids
    kept = set(selection.rg_ids)
    if args.shard_mode == "balanced" or plan_options.shuffle_row_drop_partitions > 1:
        dataset.ensure_row_counts()  # these plans slice row groups by row: they need the counts
    # balanced shards deal the rows that pass filters / a predicate on stored fields (counted below, at plan
    # time); with ngrams (windows across rows) they still deal stored rows, and say so
    deal_passing = args.shard_mode == "balanced" and (selection.row_filter_expression is not None or (
        predicate is not None and not set(predicate.get_fields()) <= set(dataset.partition_names)))
    if deal_passing and ngram is not None:
        deal_passing = False
        warnings.warn("shard_mode='balanced' with ngrams deals the rows before the filters or the predicate drop "
                      "some: the shards get different numbers of rows (a data-parallel job may wait at the end of an "
                      "epoch). Filter the dataset beforehand, or filter on partition keys only", UserWarning,
                      stacklevel=3)
    partition_types = {name: dataset.arrow_schema.field(name).type for name in dataset.partition_names}
    selected_groups = [dataset.row_groups[i] for i in rg_ids]
    spec = ReadSpec(filesystem=dataset.filesystem, row_groups=selected_groups, schema=schema, fields=field_names,
                    partition_types=partition_types, predicate=predicate, transform_spec=transform_spec,
                    filter_expression=selection.row_filter_expression,
                    output_mode="batch" if is_batched else "rows", cache=cache,
                    dataset_fingerprint=dataset.cache_namespace() if cache is not None else "",  # cache keys only
                    output_schema=output_schema if transform_spec is not None else None,
                    filter_columns=selection.filter_columns, direct_read=config.direct_read, settings=config,
                    convert_early_to_numpy=bool(args.convert_early_to_numpy))
    pool = make_pool(args.reader_pool_type, args.workers_count, args.results_queue_size)
    options_fp, options_plain = options_fingerprint(
        batched=is_batched, fields=field_names, shuffle_rows=args.shuffle_rows,
        shuffle_row_groups=args.shuffle_row_groups, drop=args.shuffle_row_drop_partitions,
        predicate=spec_fingerprint(predicate), transform=spec_fingerprint(transform_spec),
        row_groups=ids_fingerprint(rg_ids) + ("" if len(kept) == len(rg_ids) else "/" + ids_fingerprint(sorted(kept))),
        cur_shard=args.cur_shard, shard_count=args.shard_count,
        shard_seed=args.shard_seed, shard_mode=args.shard_mode, remainder=args.balanced_remainder,
        ngram=None if ngram is None else [ngram.length, ngram.delta_threshold, str(ngram.timestamp_field)],
        filters=repr(args.filters), num_epochs=num_epochs,
        # how row groups are cut into shuffle_row_drop_partitions slices (e32336d: the earlier slices take the
        # extra rows, as 0.12.1's): a state saved with the other cut would resume at the wrong rows, so it is
        # refused (the key is there only when drop > 1: states without slices load as before)
        **({"drop_slices": "ceil"} if plan_options.shuffle_row_drop_partitions > 1 else {}),
        # balanced shards with filters deal the rows that pass (before: the stored rows): a state saved with the
        # other deal would resume at the wrong rows, so it is refused
        **({"balanced_deal": "passing"} if deal_passing else {}))

    plan_rows = np.asarray([0 if i not in kept else PLAN_ALL_ROWS if rg.num_rows == UNKNOWN_ROWS else rg.num_rows
                            for i, rg in zip(rg_ids, selected_groups)], dtype=np.int64)
    if deal_passing:
        from petastorm.reader_impl.passing_rows import passing_row_indices
        from petastorm.reader_impl.plan_balanced import PassingRows

        plan_rows = PassingRows.of(passing_row_indices(spec, plan_rows), plan_rows)
    first_plan = make_epoch_plan(plan_rows, plan_options, 0)  # raises now if a shard would be empty
    if not first_plan and kept:  # the selector and the predicate reject every row group of this shard
        warnings.warn("No matching data is available for loading after rowgroup selector were applied and the data "
                      f"was sharded: the rowgroup_selector and the predicate on partition keys leave no row group "
                      f"of shard {args.cur_shard} of {args.shard_count} of {describe_url(url)!r}", UserWarning,
                      stacklevel=3)
    return Reader(dataset=dataset, schema=output_schema, plan_rows=plan_rows, plan_options=plan_options,
                  num_epochs=num_epochs, pool=pool, worker_factory=WorkerFactory(spec), is_batched_reader=is_batched,
                  ngram=ngram, cache=cache, options_fingerprint=options_fp, options=options_plain,
                  explicit_seed=explicit_seed, resume_from=args.resume_from, first_plan=first_plan,
                  ngram_schema=view, selection_log=selection.log,
                  explain_setup={"rg_ids": rg_ids, "fields": field_names,
                                 "zero_rows": [k for k, i in enumerate(rg_ids) if i not in kept]})
