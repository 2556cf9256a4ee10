"""``make_spark_converter``: a Spark DataFrame -> cached Parquet files -> torch / tf loaders.

The original's module path (user code imports ``petastorm.spark.spark_dataset_converter``). The work is
split over small modules: :mod:`.conversions` (column checks and casts), :mod:`.cache` (the plan-keyed
cache), :mod:`.cache_dir` (the cache-dir conf, deletion, clean-up at exit), :mod:`.loaders` (the context
managers) and :mod:`.session` (the one classic-only fallback). Only public DataFrame APIs that Spark Connect
also serves are used (``semanticHash``/``sameSemantics``, ``inputFiles``, writer options, ``spark.conf``).

Example
-------
>>> spark.conf.set(SparkDatasetConverter.PARENT_CACHE_DIR_URL_CONF, 'file:///tmp/petastorm_cache')
>>> converter = make_spark_converter(df)
>>> with converter.make_torch_dataloader(batch_size=64, num_epochs=1) as loader:
...     for batch in loader:   # a dict of tensors, one per column
...         ...
>>> converter.delete()
"""
from __future__ import annotations

import logging
import os
from typing import Any, Callable, List, Optional

from petastorm.errors import PetastormTypeError
from petastorm.spark.cache import (
    CacheSettings,
    delete_cache,
    describe_files,
    get_or_materialize,
    warn_if_small,
)
from petastorm.spark.cache_dir import (
    PARENT_CACHE_DIR_URL_CONF,
    parent_cache_dir_url,
    register_delete_dir_handler,
)
from petastorm.spark.conversions import (
    check_compression_codec,
    check_dtype,
    check_row_group_size,
    columns_to_convert,
    convert_columns,
)
from petastorm.spark.loaders import TFDatasetContextManager, TorchDatasetContextManager, reader_kwargs
from petastorm.spark.session import active_session, session_of

__all__ = ["SparkDatasetConverter", "make_spark_converter", "register_delete_dir_handler",
           "DEFAULT_ROW_GROUP_SIZE_BYTES", "TFDatasetContextManager", "TorchDatasetContextManager"]

logger = logging.getLogger(__name__)

DEFAULT_ROW_GROUP_SIZE_BYTES = 32 * 1024 * 1024


class SparkDatasetConverter:
    """A DataFrame cached as Parquet files, and the loaders that read them.

    Made by :func:`make_spark_converter`; plain data (``cache_dir_url``, ``file_urls``, ``dataset_size``),
    so it pickles and can be sent to Spark workers or training processes.

    Attributes
    ----------
    cache_dir_url : str
        The directory of the cached files (``<parent>/<YYYYmmddHHMMSS>-appid-<app id>-<uuid>``), or the saved
        store's URL for a converter made from a path that needed no conversion.
    file_urls : list of str
        The Parquet files.
    dataset_size : int
        Rows (also ``len(converter)``).
    """

    PARENT_CACHE_DIR_URL_CONF = PARENT_CACHE_DIR_URL_CONF
    #: False for a converter reading a user's saved store in place: ``delete()`` keeps those files
    _owns_files = True

    def __init__(self, cache_dir_url: str, file_urls: List[str], dataset_size: int) -> None:
        self.cache_dir_url = cache_dir_url
        self.file_urls = file_urls
        self.dataset_size = dataset_size

    def __len__(self) -> int:
        return self.dataset_size

    def __repr__(self) -> str:
        return (f"SparkDatasetConverter(cache_dir_url={self.cache_dir_url!r}, files={len(self.file_urls)}, "
                f"dataset_size={self.dataset_size})")

    def make_tf_dataset(self, batch_size: Optional[int] = None, prefetch: Optional[int] = None,
                        num_epochs: Optional[int] = None, workers_count: Optional[int] = None,
                        shuffling_queue_capacity: Optional[int] = None,
                        **petastorm_reader_kwargs: Any) -> TFDatasetContextManager:
        """A context manager giving a ``tf.data.Dataset`` of the cached data; leaving it stops the reader.

        Parameters
        ----------
        batch_size : int, optional
            Rows per element (32 when None, as the original); the last element of the data may be shorter.
        prefetch : int, optional
            Elements prepared ahead (``tf.data.AUTOTUNE`` when None or -1, none when 0).
        num_epochs : int, optional
            Passes over the data; None: repeat forever.
        workers_count : int, optional
            Reader threads (4 when None).
        shuffling_queue_capacity : int, optional
            Rows in the shuffle buffer (no row shuffling when None or 0; row groups are shuffled by the
            reader unless ``shuffle_row_groups=False``).
        **petastorm_reader_kwargs
            Passed to :func:`petastorm.make_batch_reader` (``cur_shard``, ``shard_count``, ``seed``...).

        Returns
        -------
        TFDatasetContextManager
            ``with converter.make_tf_dataset(...) as dataset``: elements are namedtuples of tensors of shape
            ``(rows,)`` for scalar columns and ``(rows, length)`` for array columns.
        """
        kwargs = reader_kwargs(num_epochs, workers_count, petastorm_reader_kwargs)
        return TFDatasetContextManager(self.file_urls, batch_size, prefetch, kwargs, shuffling_queue_capacity)

    def make_torch_dataloader(self, batch_size: int = 32, num_epochs: Optional[int] = None,
                              workers_count: Optional[int] = None, shuffling_queue_capacity: int = 0,
                              data_loader_fn: Optional[Callable] = None,
                              **petastorm_reader_kwargs: Any) -> TorchDatasetContextManager:
        """A context manager giving a torch loader of the cached data; leaving it stops the reader.

        Parameters
        ----------
        batch_size : int
            Rows per batch; the last batch of a pass may be shorter.
        num_epochs : int, optional
            Passes over the data; None: repeat forever.
        workers_count : int, optional
            Reader threads (4 when None).
        shuffling_queue_capacity : int
            Rows in the shuffle buffer (0: reader order).
        data_loader_fn : callable, optional
            ``data_loader_fn(reader, batch_size=..., shuffling_queue_capacity=...)`` makes the loader;
            :class:`petastorm.pytorch.DataLoader` when None (batches cut from whole columns). E.g.
            :class:`petastorm.pytorch.BatchedDataLoader`.
        **petastorm_reader_kwargs
            Passed to :func:`petastorm.make_batch_reader`.

        Returns
        -------
        TorchDatasetContextManager
            ``with converter.make_torch_dataloader(...) as loader``: each batch is a dict of tensors,
            ``(batch_size,)`` for scalar columns, ``(batch_size, length)`` for array columns.
        """
        kwargs = reader_kwargs(num_epochs, workers_count, petastorm_reader_kwargs)
        return TorchDatasetContextManager(self.file_urls, batch_size, kwargs, shuffling_queue_capacity,
                                          data_loader_fn)

    def delete(self) -> None:
        """Remove the cached files (through the handler of :func:`register_delete_dir_handler`).

        The next converter of the same DataFrame writes it again. A converter made from a saved path that
        needed no conversion reads the store in place: its files belong to the user and are kept.
        """
        if self._owns_files:
            delete_cache(self.cache_dir_url)
        else:
            logger.warning("delete(): %s is the saved store this converter reads in place; its files are kept",
                           self.cache_dir_url)


def _converter_from_path(url: str, settings: CacheSettings) -> Optional[SparkDatasetConverter]:
    """A converter reading a saved store in place, when its columns need no conversion; else None."""
    spark = active_session()
    if columns_to_convert(spark.read.parquet(url).schema, settings.dtype):
        return None
    file_urls, dataset_size, sizes = describe_files(spark, url)
    warn_if_small(file_urls, sizes)
    converter = SparkDatasetConverter(url.rstrip("/"), file_urls, dataset_size)
    converter._owns_files = False
    return converter


def make_spark_converter(df: Any, parquet_row_group_size_bytes: int = DEFAULT_ROW_GROUP_SIZE_BYTES,
                         compression_codec: Optional[str] = None,
                         dtype: Optional[str] = "float32") -> SparkDatasetConverter:
    """Cache a DataFrame as Parquet (once per DataFrame and settings) and return its converter.

    Parameters
    ----------
    df : pyspark.sql.DataFrame or str
        The data, or the URL of a saved Parquet store (read with the active session; used in place when no
        column needs converting, else converted into the cache).
    parquet_row_group_size_bytes : int
        Target row-group size of the cached files, bytes (default 32 MiB).
    compression_codec : str, optional
        Parquet codec of the cached files (``'snappy'``, ``'gzip'``, ``'zstd'``...); None: uncompressed.
    dtype : 'float32', 'float64' or None
        Float and double columns (also inside arrays) and ML ``Vector`` columns (as arrays) are cast to it;
        None keeps floats as they are (vectors become float64 arrays).

    Returns
    -------
    SparkDatasetConverter

    Raises
    ------
    PetastormArgumentError
        (A ``ValueError``.) The cache-dir conf ``petastorm.spark.converter.parentCacheDirUrl`` is not set
        (``Please set the spark config ...``), has no scheme, or ``dtype`` / the row-group size is invalid.
    CompressionCodecError
        (A ``RuntimeError``, as in the original.) An unknown codec.
    PetastormTypeError
        (A ``TypeError``.) ``df`` is neither a DataFrame nor a string, or a column has a type the loaders
        cannot read (map, struct): the message names the column and its type.
    """
    dtype = check_dtype(dtype)
    row_group_size = check_row_group_size(parquet_row_group_size_bytes)
    codec = check_compression_codec(compression_codec)
    path: Optional[str] = None
    if isinstance(df, (str, os.PathLike)):
        path, spark = os.fspath(df), active_session()
    elif hasattr(df, "sparkSession") and hasattr(df, "semanticHash"):
        spark = session_of(df)
    else:
        raise PetastormTypeError(f"make_spark_converter: df must be a pyspark DataFrame or the URL of a saved "
                                 f"Parquet store, got {type(df).__name__}")
    settings = CacheSettings(parent_cache_dir_url(spark), row_group_size, codec, dtype)
    if path is not None:
        converter = _converter_from_path(path, settings)
        if converter is not None:
            return converter
        df = spark.read.parquet(path)
    converted, _ = convert_columns(df, dtype)
    entry = get_or_materialize(converted, settings)
    warn_if_small(entry.file_urls, entry.file_sizes)
    return SparkDatasetConverter(entry.cache_dir_url, list(entry.file_urls), entry.dataset_size)
