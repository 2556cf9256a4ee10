"""The converter's cache: each DataFrame (by its analysed plan) and settings materialised once as Parquet.

A cache entry is found again when the settings are equal and the DataFrames have the same semantics
(``DataFrame.semanticHash()`` then ``DataFrame.sameSemantics()``: public APIs that Spark Connect serves);
a changed DataFrame (another filter, other columns) is written again. Entries live for the process; their
directories are removed by ``converter.delete()`` or at interpreter exit (:mod:`.cache_dir`).
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any, List, Optional, Tuple

from petastorm.spark.cache_dir import delete_dir, new_cache_dir_url, remember_for_exit
from petastorm.spark.session import application_id, session_of

__all__ = ["CacheEntry", "CacheSettings", "delete_cache", "describe_files", "forget", "get_or_materialize",
           "warn_if_small"]

logger = logging.getLogger("petastorm.spark.spark_dataset_converter")

_SMALL_MEDIAN_BYTES = 50 * 1024 * 1024


@dataclass(frozen=True)
class CacheSettings:
    """What, besides the DataFrame's plan, decides the cached files."""

    parent_cache_dir_url: str
    row_group_size_bytes: int
    compression_codec: str
    dtype: Optional[str]


@dataclass
class CacheEntry:
    """One materialised DataFrame."""

    df: Any
    plan_hash: int
    settings: CacheSettings
    cache_dir_url: str
    file_urls: List[str]
    dataset_size: int
    file_sizes: List[int] = field(default_factory=list)


_lock = threading.RLock()
_entries: List[CacheEntry] = []


def _normalize_file_url(url: str) -> str:
    """A URL of ``inputFiles()`` as the readers open it.

    ``file:/x`` (Hadoop's form) -> ``file:///x``; the path is percent-decoded (Hadoop encodes it: a cache dir
    ``/my cache`` came back as ``my%20cache``, a path the readers then looked for literally) unless the decoded
    path would hold ``?`` or ``#``, which a URL parser would cut off.
    """
    from urllib.parse import unquote

    decoded = unquote(url)
    if decoded != url and "?" not in decoded and "#" not in decoded:
        url = decoded
    if url.startswith("file:/") and not url.startswith("file://"):
        return "file://" + url[len("file:"):]
    if url.startswith("file://localhost/"):
        return "file://" + url[len("file://localhost"):]
    return url


def describe_files(spark: Any, url: str) -> Tuple[List[str], int, List[int]]:
    """The Parquet files of a store, its row count and the file sizes (bytes).

    Files and rows come from Spark (``spark.read.parquet(url).inputFiles()`` and ``count()``: public
    calls, served by Spark Connect), the sizes from the store's pyarrow filesystem.

    Returns
    -------
    (list of str, int, list of int)
        File URLs (sorted), rows, sizes in the order of the URLs.
    """
    stored = spark.read.parquet(url)
    file_urls = sorted(_normalize_file_url(u) for u in stored.inputFiles())
    dataset_size = int(stored.count())
    return file_urls, dataset_size, _file_sizes(file_urls)


def _file_sizes(file_urls: List[str]) -> List[int]:
    if not file_urls:
        return []
    from petastorm.fs_utils import get_filesystem_and_path_or_paths

    try:
        fs, paths = get_filesystem_and_path_or_paths(list(file_urls))
        return [int(info.size or 0) for info in fs.get_file_info(paths)]
    except Exception as e:  # noqa: BLE001 - sizes only feed a performance hint
        logger.debug("could not read the sizes of the cached files: %r", e)
        return []


def warn_if_small(file_urls: List[str], file_sizes: List[int]) -> None:
    """The original's warning when the median file is under 50 MB (many small files read slowly)."""
    if not file_sizes:
        return
    median = sorted(file_sizes)[len(file_sizes) // 2]
    if median < _SMALL_MEDIAN_BYTES:
        logger.warning(
            "The median size %d B (< 50 MB) of the parquet files is too small. Total size: %d B. Increase the "
            "median file size by calling df.repartition(n) or df.coalesce(n), which might help improve the "
            "performance. Parquet files: %s, ...", median, sum(file_sizes), file_urls[0])


def _still_there(entry: CacheEntry) -> bool:
    """The entry's files were not removed behind the cache's back (by hand, or by the exit clean-up)."""
    if not entry.file_urls:
        return True
    from petastorm.fs_utils import get_filesystem_and_path_or_paths

    try:
        import pyarrow.fs as pafs

        fs, path = get_filesystem_and_path_or_paths(entry.file_urls[0])
        return fs.get_file_info(path).type == pafs.FileType.File
    except Exception:  # noqa: BLE001 - cannot tell: trust the entry
        return True


def _find(df: Any, plan_hash: int, settings: CacheSettings) -> Optional[CacheEntry]:
    for entry in list(_entries):
        if entry.settings == settings and entry.plan_hash == plan_hash and entry.df.sameSemantics(df):
            if _still_there(entry):
                return entry
            _entries.remove(entry)
    return None


def _materialize(df: Any, plan_hash: int, settings: CacheSettings) -> CacheEntry:
    spark = session_of(df)
    url = new_cache_dir_url(settings.parent_cache_dir_url, application_id(spark))
    remember_for_exit(url)  # a write that fails half way is removed at exit too
    (df.write
       .option("compression", settings.compression_codec)
       .option("parquet.block.size", str(settings.row_group_size_bytes))
       .parquet(url))
    logger.info("Materialize dataframe to url %s successfully.", url)
    file_urls, dataset_size, sizes = describe_files(spark, url)
    return CacheEntry(df=df, plan_hash=plan_hash, settings=settings, cache_dir_url=url, file_urls=file_urls,
                      dataset_size=dataset_size, file_sizes=sizes)


def get_or_materialize(df: Any, settings: CacheSettings) -> CacheEntry:
    """The cache entry of ``df`` (already converted) under ``settings``: found, or written now."""
    plan_hash = df.semanticHash()
    with _lock:
        entry = _find(df, plan_hash, settings)
        if entry is None:
            entry = _materialize(df, plan_hash, settings)
            _entries.append(entry)
        return entry


def forget(cache_dir_url: str) -> None:
    """Drop the entries of a directory (after ``delete()``): the next converter of that DataFrame writes
    it again."""
    with _lock:
        _entries[:] = [e for e in _entries if e.cache_dir_url != cache_dir_url]


def delete_cache(cache_dir_url: str) -> None:
    """Forget, then remove, a cache directory."""
    forget(cache_dir_url)
    delete_dir(cache_dir_url)
