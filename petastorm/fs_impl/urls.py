"""Dataset URLs: check and normalise them, and read the path and HDFS namenode a filesystem needs.

Pure string work on :func:`urllib.parse.urlparse` results: nothing is opened, no filesystem is built.
"""
from __future__ import annotations

import os
from typing import Any
from urllib.parse import ParseResult, urlparse

from petastorm.errors import PetastormArgumentError, PetastormFilesystemError

__all__ = [
    "LOCAL_SCHEMES",
    "S3_SCHEMES",
    "HDFS_SCHEMES",
    "normalize_dir_url",
    "get_dataset_path",
    "local_path",
    "local_directory",
    "hdfs_namenode",
]

LOCAL_SCHEMES = ("", "file")
S3_SCHEMES = ("s3", "s3a", "s3n")
HDFS_SCHEMES = ("hdfs",)

# Schemes whose first URL component (netloc) is a bucket/container and belongs in the path.
# For hdfs and file the netloc is a host and the path starts after it.
_HOST_NETLOC_SCHEMES = LOCAL_SCHEMES + HDFS_SCHEMES + ("viewfs",)


def normalize_dir_url(dataset_url: str) -> str:
    """Check that a dataset URL is a non-empty string and remove a trailing ``/``.

    Parameters
    ----------
    dataset_url : str or os.PathLike
        A URL (``s3://bucket/path/``) or a local path.

    Returns
    -------
    str
        The URL without a trailing slash (a bare root ``/`` is kept).

    Raises
    ------
    ValueError
        If ``dataset_url`` is not a string or is empty.
    """
    if isinstance(dataset_url, os.PathLike):
        dataset_url = os.fspath(dataset_url)
    if not isinstance(dataset_url, str):
        raise PetastormArgumentError(
            f"directory url must be a string: got {type(dataset_url).__name__} {dataset_url!r}")
    if not dataset_url:
        raise PetastormArgumentError("directory url must be a string: got an empty string")
    stripped = dataset_url.rstrip("/")
    if not stripped or stripped.endswith(":/") or stripped.endswith(":"):
        # '/', 'file:///' or 's3://': nothing left to strip safely
        return dataset_url
    return stripped


def get_dataset_path(parsed_url: ParseResult) -> str:
    """The path a filesystem of the URL's scheme expects, from a parsed URL.

    ``hdfs://nn:8020/a/b`` and ``file:///a/b`` give ``/a/b`` (the netloc is a host); object stores
    (``s3://bucket/a/b``, ``gs://bucket/a/b``, ...) give ``bucket/a/b``.

    Parameters
    ----------
    parsed_url : urllib.parse.ParseResult
        The result of ``urllib.parse.urlparse(url)``.

    Returns
    -------
    str
    """
    scheme = parsed_url.scheme.lower()
    if scheme in _HOST_NETLOC_SCHEMES:
        return parsed_url.path + _literal_tail(parsed_url)
    return parsed_url.netloc + parsed_url.path + _literal_tail(parsed_url)


def _literal_tail(parsed_url: ParseResult) -> str:
    """The ``?query#fragment`` that :func:`urllib.parse.urlparse` split off, given back: in a path of a file or an
    object key ``?`` and ``#`` are plain characters (``file:///data/run#2`` means the directory ``run#2``; cut
    there, it read ``/data/run``)."""
    tail = ""
    if parsed_url.query:
        tail += "?" + parsed_url.query
    if parsed_url.fragment:
        tail += "#" + parsed_url.fragment
    return tail


def local_path(dataset_url: str, parsed: ParseResult) -> str:
    """The local path of a plain path or a ``file://`` URL (plain paths are made absolute).

    Raises
    ------
    PetastormFilesystemError
        A ``file://`` URL with a host name (``file://data/x``: two slashes where three were meant).
    """
    if parsed.scheme.lower() == "file":
        if parsed.netloc not in ("", "localhost"):
            raise PetastormFilesystemError(
                f"{dataset_url!r}: a file:// URL takes an absolute path after three slashes "
                f"(file:///{parsed.netloc}{parsed.path}); '{parsed.netloc}' was read as a host name")
        return (parsed.path or "/") + _literal_tail(parsed)
    return os.path.abspath(dataset_url)


def local_directory(path: Any, argument: str) -> str:
    """``path`` (a local directory, or a ``file://`` URL of one) as a local path; other URLs are refused.

    Parameters
    ----------
    path : str or os.PathLike
    argument : str
        The argument's name, for the error message.

    Raises
    ------
    PetastormArgumentError
        ``path`` is an ``s3://``, ``hdfs://``... URL (the caller needs a directory on this machine; such a URL
        used to make a directory named ``s3:`` under the working directory).
    """
    path = os.fspath(path)
    if "://" in path:
        parsed = urlparse(path)
        if parsed.scheme.lower() != "file" or parsed.netloc not in ("", "localhost"):
            raise PetastormArgumentError(
                f"{argument} must be a local directory (the local disk cache keeps SQLite databases and files "
                f"on this machine), got the URL {path!r}")
        path = parsed.path
    return path


def hdfs_namenode(parsed: ParseResult, hadoop_configuration: Any) -> tuple[str, int]:
    """(host, port) of the namenode: from the URL, else fs.defaultFS of a given configuration, else
    'default' (libhdfs reads fs.defaultFS from the Hadoop configuration on the CLASSPATH).

    Port 0 lets libhdfs pick the default port or resolve an HA nameservice.
    """
    if parsed.hostname:
        return parsed.hostname, parsed.port or 0
    if hadoop_configuration is not None:
        try:
            default_fs = hadoop_configuration.get("fs.defaultFS")
        except Exception:  # a JVM Configuration or a dict; any failure means 'not configured'
            default_fs = None
        if default_fs:
            default = urlparse(str(default_fs))
            if default.scheme == "hdfs" and default.hostname:
                return default.hostname, default.port or 0
    return "default", 0
