"""Where the converter's cache lives, and how a cache directory is removed.

- :func:`parent_cache_dir_url`: the ``petastorm.spark.converter.parentCacheDirUrl`` Spark conf, checked
  (set, with a scheme, an absolute path) and normalised (``dbfs:/x`` -> ``file:///dbfs/x``, ``file:/x`` ->
  ``file:///x``, no trailing ``/``), with the original's messages;
- :func:`new_cache_dir_url`: ``<parent>/<YYYYmmddHHMMSS>-appid-<application id>-<uuid4>`` (the original's
  naming);
- :func:`delete_dir` through the handler set by :func:`register_delete_dir_handler` (the default removes
  the directory through its pyarrow filesystem); every directory made in this process is removed at
  interpreter exit (``atexit``), as in the original. A directory gone already, or removed by something else
  at the same time (another process cleaning the same temporary tree), is no error and is not reported at
  exit; any other failure at exit is logged as a warning naming the directory. A child made by ``os.fork()``
  leaves the parent's directories at its exit.
"""
from __future__ import annotations

import atexit
import datetime
import logging
import os
import threading
import time
import uuid
from typing import Any, Callable, List, Optional
from urllib.parse import urlparse

from petastorm.errors import PetastormArgumentError, PetastormTypeError

__all__ = [
    "PARENT_CACHE_DIR_URL_CONF",
    "delete_dir",
    "new_cache_dir_url",
    "normalize_cache_dir_url",
    "parent_cache_dir_url",
    "register_delete_dir_handler",
    "remember_for_exit",
]

logger = logging.getLogger("petastorm.spark.spark_dataset_converter")

PARENT_CACHE_DIR_URL_CONF = "petastorm.spark.converter.parentCacheDirUrl"

_lock = threading.Lock()
_delete_handler: Optional[Callable[[str], Any]] = None
_made_here: List[str] = []


def normalize_cache_dir_url(url: str) -> str:
    """A cache-dir URL checked and in its canonical form.

    Raises
    ------
    PetastormArgumentError
        (A ``ValueError``.) No scheme (the original's message), or a ``file:`` URL with a relative path.
    """
    if not isinstance(url, str) or not url.strip():
        raise PetastormArgumentError(f"Please set the spark config {PARENT_CACHE_DIR_URL_CONF}.")
    url = url.strip()
    parsed = urlparse(url)
    if not parsed.scheme:
        raise PetastormArgumentError(
            f'ERROR! A scheme-less directory url ({url}) is no longer supported. '
            f'Please prepend "file://" for local filesystem.')
    scheme = parsed.scheme.lower()
    if scheme == "dbfs":  # the Databricks FUSE mount: the loaders read it as local files
        if parsed.netloc:
            raise PetastormArgumentError(
                f"{PARENT_CACHE_DIR_URL_CONF}: {url} names a host ({parsed.netloc}); use dbfs:/path "
                f"(read as file:///dbfs/path)")
        url, scheme, parsed = "file:///dbfs/" + parsed.path.lstrip("/"), "file", urlparse(
            "file:///dbfs/" + parsed.path.lstrip("/"))
    if scheme == "file":
        if parsed.netloc not in ("", "localhost") or not parsed.path.startswith("/"):
            raise PetastormArgumentError(
                f"{PARENT_CACHE_DIR_URL_CONF}: {url} is not an absolute local path: use file:///absolute/path")
        path = parsed.path.rstrip("/") or "/"
        return "file://" + path
    return url.rstrip("/") if not url.endswith(":/") and not url.endswith("://") else url


def parent_cache_dir_url(spark: Any) -> str:
    """The checked parent cache-dir URL from the session's conf (``spark.conf.get``, served by Connect).

    Raises
    ------
    PetastormArgumentError
        ``Please set the spark config petastorm.spark.converter.parentCacheDirUrl.`` when it is not set
        (the original's message), or as :func:`normalize_cache_dir_url`.
    """
    url = spark.conf.get(PARENT_CACHE_DIR_URL_CONF, None)
    logger.info("Read %s %s", PARENT_CACHE_DIR_URL_CONF, url)
    if url is None or not str(url).strip():
        raise PetastormArgumentError(f"Please set the spark config {PARENT_CACHE_DIR_URL_CONF}.")
    return normalize_cache_dir_url(url)


def new_cache_dir_url(parent_url: str, app_id: str) -> str:
    """``<parent>/<YYYYmmddHHMMSS>-appid-<app_id>-<uuid4>`` (the original's cache-dir naming)."""
    stamp = datetime.datetime.now().strftime("%Y%m%d%H%M%S")
    separator = "" if parent_url.endswith("/") else "/"  # a root parent: file:///, s3://bucket/
    return f"{parent_url}{separator}{stamp}-appid-{app_id}-{uuid.uuid4()}"


def register_delete_dir_handler(handler: Optional[Callable[[str], Any]]) -> None:
    """Set the function that removes a cache directory, given its URL (None: the default, which removes
    it through its pyarrow filesystem). Used by ``converter.delete()`` and at interpreter exit.

    Raises
    ------
    PetastormTypeError
        When ``handler`` is neither callable nor None (the original accepted anything and failed later).
    """
    global _delete_handler
    if handler is not None and not callable(handler):
        raise PetastormTypeError(f"register_delete_dir_handler: handler must be callable or None, got {handler!r}")
    _delete_handler = handler


_DELETE_PATIENCE_S = 10.0


def _default_delete(url: str) -> None:
    import pyarrow.fs as pafs

    from petastorm.fs_utils import get_filesystem_and_path_or_paths

    fs, path = get_filesystem_and_path_or_paths(url)
    deadline = time.monotonic() + _DELETE_PATIENCE_S
    while time.monotonic() < deadline:
        if fs.get_file_info(path).type == pafs.FileType.NotFound:
            return
        try:
            fs.delete_dir(path)
            return
        except FileNotFoundError:
            # an entry vanished under the walk: something else removes the directory too; let it go on, look again
            time.sleep(0.01)
    if fs.get_file_info(path).type != pafs.FileType.NotFound:
        fs.delete_dir(path)


def _is_gone(url: str) -> bool:
    """Whether the directory ``url`` surely does not exist (False when that cannot be told)."""
    try:
        import pyarrow.fs as pafs

        from petastorm.fs_utils import get_filesystem_and_path_or_paths

        fs, path = get_filesystem_and_path_or_paths(url)
        return fs.get_file_info(path).type == pafs.FileType.NotFound
    except Exception:  # noqa: BLE001 - unknown: the caller reports its own error
        return False


def delete_dir(url: str) -> None:
    """Remove a cache directory with the registered handler (the default when none); a missing directory
    is not an error."""
    handler = _delete_handler or _default_delete
    handler(url)
    with _lock:
        if url in _made_here:
            _made_here.remove(url)


def remember_for_exit(url: str) -> None:
    """Remove ``url`` at interpreter exit (unless deleted before)."""
    with _lock:
        _made_here.append(url)


def _delete_all_at_exit() -> None:
    with _lock:
        urls = list(reversed(_made_here))
    for url in urls:
        try:
            delete_dir(url)
        except Exception as e:  # noqa: BLE001 - exit goes on; say what was left behind
            if isinstance(e, FileNotFoundError) and _is_gone(url):
                # removed already (a test's tmp_path, a manual clean-up): nothing was left behind
                logger.debug("Cache data %s was removed already", url)
                continue
            logger.warning("Delete cache data %s failed due to %r", url, e)


def _forget_in_child() -> None:
    """In a child made by ``os.fork()``: the parent made these directories and still reads them, so the child's
    exit leaves them (and a lock a parent thread held at the fork is not inherited held)."""
    global _lock
    _lock = threading.Lock()
    _made_here.clear()


atexit.register(_delete_all_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)
