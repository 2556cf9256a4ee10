"""The converter's framework loaders: context managers that open a ``make_batch_reader`` over the cached
files, hand out a torch ``DataLoader`` or a ``tf.data.Dataset``, and stop the reader on exit.

Also the original's Horovod check: when the Horovod launcher's environment variables say this process is
rank ``r`` of ``n`` (``HOROVOD_RANK``/``HOROVOD_SIZE``, or Open MPI's / PMI's), a reader that does not read
shard ``r`` of ``n`` gets a warning (each worker would otherwise train on all of the data).
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Dict, List, Optional, Tuple

from petastorm.errors import DatasetNotFoundError, PetastormArgumentError
from petastorm.settings import other_program_variable

__all__ = ["TFDatasetContextManager", "TorchDatasetContextManager", "check_rank_and_size_consistent_with_horovod",
           "reader_kwargs"]

logger = logging.getLogger("petastorm.spark.spark_dataset_converter")

DEFAULT_WORKERS_COUNT = 4  # recorded from 0.12.1: the converter's readers use 4 threads
_AUTOTUNE = -1  # tf.data.AUTOTUNE
DEFAULT_TF_BATCH_SIZE = 32  # recorded from 0.12.1: make_tf_dataset(batch_size=None) gives batches of 32

_HOROVOD_ENV = (("HOROVOD_RANK", "HOROVOD_SIZE"), ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),
                ("PMI_RANK", "PMI_SIZE"))


def horovod_rank_and_size() -> Tuple[Optional[int], Optional[int]]:
    """``(rank, size)`` from the launcher's environment variables, ``(None, None)`` when not set (or only
    half of a pair is set)."""
    for rank_var, size_var in _HOROVOD_ENV:
        rank, size = other_program_variable(rank_var), other_program_variable(size_var)
        if rank is not None and size is not None:
            try:
                return int(rank), int(size)
            except ValueError:
                return None, None
        if rank is not None or size is not None:
            return None, None
    return None, None


def check_rank_and_size_consistent_with_horovod(kwargs: Dict[str, Any]) -> bool:
    """False (and a warning) when the reader's ``cur_shard``/``shard_count`` differ from Horovod's rank/size."""
    rank, size = horovod_rank_and_size()
    if rank is None:
        return True
    cur_shard, shard_count = kwargs.get("cur_shard"), kwargs.get("shard_count")
    if cur_shard != rank or shard_count != size:
        logger.warning(
            "The petastorm reader arguments cur_shard(%s) and shard_count(%s) is not consistent with horovod "
            "environments hvd_rank(%s) and hvd_size(%s), If you want each horovod worker train on one "
            "corresponding shard data, you should set argument `cur_shard` to be `hvd.rank()` and argument "
            "`shard_count` to be `hvd.size()`.", cur_shard, shard_count, rank, size)
        return False
    return True


def reader_kwargs(num_epochs: Optional[int], workers_count: Optional[int], extra: Dict[str, Any]) -> Dict[str, Any]:
    """The ``make_batch_reader`` arguments of a converter loader (the Horovod check included)."""
    kwargs = dict(extra)
    kwargs["num_epochs"] = num_epochs
    kwargs["workers_count"] = DEFAULT_WORKERS_COUNT if workers_count is None else workers_count
    check_rank_and_size_consistent_with_horovod(kwargs)
    return kwargs


def _positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not hasattr(value, "__index__") or int(value.__index__()) < 1:
        raise PetastormArgumentError(f"{name} must be a positive integer, got {value!r}")
    return int(value.__index__())


class _ReaderContext:
    """Opens the reader on ``__enter__``, stops and joins it on ``__exit__``."""

    def __init__(self, file_urls: List[str], kwargs: Dict[str, Any]) -> None:
        self.parquet_file_url_list = list(file_urls)
        self.petastorm_reader_kwargs = kwargs
        self.reader: Any = None

    def _open_reader(self) -> Any:
        from petastorm import make_batch_reader

        try:
            self.reader = make_batch_reader(self.parquet_file_url_list, **self.petastorm_reader_kwargs)
        except DatasetNotFoundError as e:
            raise DatasetNotFoundError(
                f"The converter's cached files are gone ({e}): delete() was called on this converter, or on "
                f"another converter of the same DataFrame (they share the files), or they were removed by hand; "
                f"make a new converter with make_spark_converter(df)") from e
        return self.reader

    def _close_reader(self) -> None:
        reader, self.reader = self.reader, None
        if reader is not None:
            reader.stop()
            reader.join()

    def __exit__(self, exc_type: Any, exc_value: Any, traceback: Any) -> None:
        self._close_reader()


class TorchDatasetContextManager(_ReaderContext):
    """``with converter.make_torch_dataloader(...) as loader``: a torch loader over the cached files.

    The loader is ``data_loader_fn(reader, batch_size=..., shuffling_queue_capacity=...)``, by default
    :class:`petastorm.pytorch.DataLoader` (which batches whole columns of a batch reader).
    """

    def __init__(self, file_urls: List[str], batch_size: int, kwargs: Dict[str, Any],
                 shuffling_queue_capacity: int, data_loader_fn: Optional[Callable]) -> None:
        super().__init__(file_urls, kwargs)
        self.batch_size = batch_size
        self.shuffling_queue_capacity = shuffling_queue_capacity
        if data_loader_fn is not None and not callable(data_loader_fn):
            raise PetastormArgumentError(f"data_loader_fn must be callable or None, got {data_loader_fn!r}")
        self.data_loader_fn = data_loader_fn
        self.loader: Any = None

    def __enter__(self) -> Any:
        loader_fn = self.data_loader_fn
        if loader_fn is None:
            from petastorm.pytorch import DataLoader as loader_fn
        reader = self._open_reader()
        try:
            self.loader = loader_fn(reader, batch_size=self.batch_size,
                                    shuffling_queue_capacity=self.shuffling_queue_capacity)
        except BaseException:
            self._close_reader()
            raise
        return self.loader

    def __exit__(self, exc_type: Any, exc_value: Any, traceback: Any) -> None:
        loader, self.loader = self.loader, None
        try:
            if hasattr(loader, "__exit__"):  # our loaders: their prefetch threads end, the reader stops
                loader.__exit__(exc_type, exc_value, traceback)
        finally:
            self._close_reader()  # idempotent: a custom loader may not stop the reader


class TFDatasetContextManager(_ReaderContext):
    """``with converter.make_tf_dataset(...) as dataset``: a ``tf.data.Dataset`` over the cached files.

    Elements are namedtuples of tensors, batches of ``batch_size`` rows (32 when None, as the original;
    the last batch of the data may be shorter), shuffled through a buffer of ``shuffling_queue_capacity``
    rows when given, prefetched ``prefetch`` elements ahead (``tf.data.AUTOTUNE`` when None or -1).
    """

    def __init__(self, file_urls: List[str], batch_size: Optional[int], prefetch: Optional[int],
                 kwargs: Dict[str, Any], shuffling_queue_capacity: Optional[int]) -> None:
        super().__init__(file_urls, kwargs)
        self.batch_size = DEFAULT_TF_BATCH_SIZE if batch_size is None else _positive("batch_size", batch_size)
        # -1 is tf.data.AUTOTUNE: make_tf_dataset(prefetch=tf.data.AUTOTUNE) ran on 0.12.1 (recorded)
        if prefetch is not None and (isinstance(prefetch, bool) or not hasattr(prefetch, "__index__")
                                     or int(prefetch.__index__()) < _AUTOTUNE):
            raise PetastormArgumentError(
                f"prefetch must be None or an integer >= 0, got {prefetch!r} (or tf.data.AUTOTUNE, -1)")
        self.prefetch = prefetch
        if shuffling_queue_capacity is not None and (
                isinstance(shuffling_queue_capacity, bool) or not hasattr(shuffling_queue_capacity, "__index__")
                or int(shuffling_queue_capacity.__index__()) < 0):
            raise PetastormArgumentError(
                f"shuffling_queue_capacity must be None or an integer >= 0, got {shuffling_queue_capacity!r}")
        self.shuffling_queue_capacity = shuffling_queue_capacity

    def __enter__(self) -> Any:
        import tensorflow as tf

        from petastorm.tf_utils import make_petastorm_dataset

        reader = self._open_reader()
        try:
            dataset = make_petastorm_dataset(reader).unbatch()
            if self.shuffling_queue_capacity:
                dataset = dataset.shuffle(int(self.shuffling_queue_capacity))
            dataset = dataset.batch(self.batch_size)
            prefetch = tf.data.AUTOTUNE if self.prefetch is None else int(self.prefetch)
            if prefetch:
                dataset = dataset.prefetch(prefetch)
        except BaseException:
            self._close_reader()
            raise
        return dataset
