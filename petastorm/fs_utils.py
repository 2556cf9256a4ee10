"""URL and filesystem resolution: a dataset URL (or a list of file URLs) -> a pyarrow filesystem and paths.

This is the first stage of the read pipeline. It turns what the user typed into a
:class:`pyarrow.fs.FileSystem` and the path(s) to give that filesystem. It does no I/O on the dataset
itself: a path that does not exist is reported by the dataset stage, not here.

Schemes
-------
- plain paths and ``file://``: :class:`pyarrow.fs.LocalFileSystem`;
- ``s3://``, ``s3a://``, ``s3n://``: :class:`pyarrow.fs.S3FileSystem` built from s3fs-style
  ``storage_options`` (``key``, ``secret``, ``token``, ``endpoint_url``, ``client_kwargs``, ``region``,
  ``anon``...); options only s3fs understands switch to s3fs wrapped in a ``PyFileSystem``;
- ``hdfs://``: :class:`pyarrow.fs.HadoopFileSystem` (libhdfs through JNI), created only when
  :meth:`FilesystemResolver.filesystem` is first called;
- ``gs://``, ``gcs://``, ``abfs://``, ``abfss://``, ``az://`` and every other protocol fsspec knows: the
  fsspec filesystem wrapped in ``pyarrow.fs.PyFileSystem(FSSpecHandler(...))``.

A ``filesystem=`` argument (pyarrow or fsspec) overrides all of this; the URL then only gives the path.

This module is the public entry (the original's names and path); the URL work, the S3 option
translation and the filesystem recipes live in :mod:`petastorm.fs_impl`.
"""
from __future__ import annotations

import os
import re
import warnings
from typing import Any, Callable, Optional, Union
from urllib.parse import ParseResult, urlparse

import pyarrow.fs as pafs

from petastorm.errors import PetastormArgumentError, PetastormFilesystemError
from petastorm.fs_impl.factories import (
    FilesystemFactory,
    ensure_pyarrow_filesystem,
    fsspec_class,
    fsspec_handler_fs,
)
from petastorm.fs_impl.s3_options import s3_options
from petastorm.fs_impl.urls import (
    HDFS_SCHEMES,
    LOCAL_SCHEMES,
    S3_SCHEMES,
    get_dataset_path,
    hdfs_namenode,
    local_path,
    normalize_dir_url,
)

__all__ = [
    "FilesystemResolver",
    "get_filesystem_and_path_or_paths",
    "normalize_dir_url",
    "get_dataset_path",
]

_HDFS_DRIVERS = ("libhdfs", "libhdfs3")


class FilesystemResolver:
    """Resolves a dataset URL to a pyarrow filesystem and the path to use with it.

    The filesystem is created on the first call to :meth:`filesystem` (so an ``hdfs://`` URL can be
    resolved without a Hadoop installation); :meth:`filesystem_factory` gives a picklable callable
    that creates an equivalent filesystem in another process.

    Parameters
    ----------
    dataset_url : str
        ``/local/path``, ``file:///local/path``, ``s3://bucket/path``, ``hdfs://namenode:port/path``,
        ``hdfs:///path``, ``gs://bucket/path``, ``abfs://container@account.dfs.core.windows.net/path``
        or any fsspec protocol.
    hadoop_configuration : object, optional
        Anything with ``.get('fs.defaultFS')`` (a Spark ``hadoopConfiguration()`` or a dict); used for
        ``hdfs:///path`` URLs without a namenode. Without it libhdfs uses its ``'default'`` namenode.
    connector : object, optional
        Legacy hook: an object with ``hdfs_connect_namenode(parsed_url, driver, user=None)`` that
        returns the filesystem for ``hdfs://`` URLs. By default pyarrow's HadoopFileSystem is used.
    hdfs_driver : {'libhdfs3', 'libhdfs'}
        Accepted for compatibility; pyarrow only ships the JNI driver (libhdfs), used for both.
    user : str, optional
        HDFS user name.
    storage_options : dict, optional
        Options of the remote filesystem, s3fs/gcsfs/adlfs style (for S3 see the module docstring).
    filesystem : pyarrow.fs.FileSystem or fsspec.AbstractFileSystem, optional
        Used as given (an fsspec one is wrapped); the URL then only gives the path.
    """

    def __init__(self, dataset_url: str, hadoop_configuration: Any = None, connector: Any = None,
                 hdfs_driver: str = "libhdfs3", user: Optional[str] = None,
                 storage_options: Optional[dict] = None, filesystem: Any = None) -> None:
        self._dataset_url = normalize_dir_url(dataset_url)
        self._parsed = urlparse(self._dataset_url)
        if hdfs_driver not in _HDFS_DRIVERS:
            raise PetastormArgumentError(
                f"hdfs_driver must be one of {list(_HDFS_DRIVERS)}, got {hdfs_driver!r}")
        if storage_options is not None and not isinstance(storage_options, dict):
            raise PetastormArgumentError(
                f"storage_options must be a dict, got {type(storage_options).__name__}")
        storage_options = dict(storage_options or {})
        scheme = self._parsed.scheme.lower()
        self._filesystem: Optional[pafs.FileSystem] = None

        if filesystem is not None:
            if storage_options:
                warnings.warn(f"storage_options {sorted(storage_options)} are ignored for "
                              f"{self._dataset_url!r} because a filesystem was given", UserWarning,
                              stacklevel=2)
            given = ensure_pyarrow_filesystem(filesystem, "filesystem")
            self._factory = FilesystemFactory("given", self._dataset_url, given=given)
            self._path = _path_for_given(given, self._dataset_url, self._parsed)
        elif scheme in LOCAL_SCHEMES:
            self._factory = FilesystemFactory("local", self._dataset_url)
            self._path = local_path(self._dataset_url, self._parsed)
        elif scheme in S3_SCHEMES:
            self._factory = self._s3_factory(storage_options)
            # 's3://bucket//ds' (a base URL ending in '/' joined with '/ds'): pyarrow raised ArrowInvalid 'Empty path
            # component', s3fs found nothing; POSIX paths read it as 'bucket/ds', and so do we
            self._path = re.sub("/{2,}", "/", get_dataset_path(self._parsed))
        elif scheme in HDFS_SCHEMES:
            self._factory = self._hdfs_factory(hadoop_configuration, connector, hdfs_driver, user)
            self._path = self._parsed.path or "/"
        else:
            cls = fsspec_class(scheme, self._dataset_url)
            kwargs = dict(cls._get_kwargs_from_urls(self._dataset_url))
            kwargs.update(storage_options)
            self._factory = FilesystemFactory("fsspec", self._dataset_url,
                                               options={"protocol": scheme, "kwargs": kwargs})
            self._path = cls._strip_protocol(self._dataset_url)

    # -- construction helpers --------------------------------------------------------------------

    def _s3_factory(self, storage_options: dict) -> FilesystemFactory:
        options = s3_options(storage_options)
        if options is None:
            return FilesystemFactory("s3fs", self._dataset_url, options=storage_options)
        options["_bucket"] = self._parsed.netloc
        return FilesystemFactory("s3", self._dataset_url, options=options)

    def _hdfs_factory(self, hadoop_configuration: Any, connector: Any, hdfs_driver: str,
                      user: Optional[str]) -> FilesystemFactory:
        if connector is not None and hasattr(connector, "hdfs_connect_namenode"):
            return FilesystemFactory("hdfs_connector", self._dataset_url,
                                      options={"driver": hdfs_driver, "user": user}, given=connector)
        host, port = hdfs_namenode(self._parsed, hadoop_configuration)
        return FilesystemFactory("hdfs", self._dataset_url,
                                  options={"host": host, "port": port, "user": user})

    # -- public API ------------------------------------------------------------------------------

    def parsed_dataset_url(self) -> ParseResult:
        """The dataset URL parsed by :func:`urllib.parse.urlparse` (after a trailing ``/`` is removed)."""
        return self._parsed

    def get_dataset_path(self) -> str:
        """The path to pass to :meth:`filesystem` (``bucket/key`` for object stores, ``/a/b`` otherwise)."""
        return self._path

    def filesystem(self) -> pafs.FileSystem:
        """The ``pyarrow.fs.FileSystem`` of the URL, created on the first call.

        Raises
        ------
        PetastormFilesystemError
            If the filesystem cannot be created (for HDFS: libhdfs or the JVM cannot be loaded, or the
            namenode cannot be reached); the message says what to install or configure.
        """
        if self._filesystem is None:
            self._filesystem = self._factory()
        return self._filesystem

    def filesystem_factory(self) -> Callable[[], pafs.FileSystem]:
        """A picklable zero-argument callable that creates this filesystem again (in a worker process)."""
        return self._factory

    def __repr__(self) -> str:
        return f"FilesystemResolver({self._dataset_url!r}, kind={self._factory.kind!r}, path={self._path!r})"


def _path_for_given(filesystem: pafs.FileSystem, url: str, parsed: ParseResult) -> str:
    """The path of ``url`` for a filesystem the user gave."""
    if not parsed.scheme:
        return os.path.abspath(url) if isinstance(filesystem, pafs.LocalFileSystem) else url
    inner = fsspec_handler_fs(filesystem)
    if inner is not None:
        return inner._strip_protocol(url)
    return get_dataset_path(parsed)


# --------------------------------------------------------------------------------------------------
# One URL or a list of URLs
# --------------------------------------------------------------------------------------------------

def _filesystem_key(parsed: ParseResult) -> tuple[str, str]:
    """What URLs of one list must share: the scheme and netloc; plain paths, ``file:///`` and
    ``file://localhost/`` are all the local filesystem."""
    scheme = parsed.scheme.lower()
    if scheme in LOCAL_SCHEMES and parsed.netloc in ("", "localhost"):
        return "file", ""
    return scheme, parsed.netloc


def get_filesystem_and_path_or_paths(
        url_or_urls: Union[str, list[str]], hdfs_driver: str = "libhdfs3",
        storage_options: Optional[dict] = None,
        filesystem: Any = None) -> tuple[pafs.FileSystem, Union[str, list[str]]]:
    """Resolve one URL, or a list of URLs on the same filesystem, to ``(filesystem, path or paths)``.

    Parameters
    ----------
    url_or_urls : str or list of str
        A dataset URL, or a list of file URLs (as ``make_batch_reader`` accepts). All URLs of a list
        must share the scheme and netloc (bucket, namenode).
    hdfs_driver, storage_options, filesystem
        As for :class:`FilesystemResolver`.

    Returns
    -------
    (pyarrow.fs.FileSystem, str or list of str)
        The filesystem, and the path (for a string) or the paths in input order (for a list).

    Raises
    ------
    PetastormFilesystemError
        URLs of a list that do not share scheme and netloc (the message names both), an unknown scheme,
        or a missing driver.
    PetastormArgumentError
        An empty list, or an element that is not a string.
    """
    if isinstance(url_or_urls, (list, tuple)):
        if not url_or_urls:
            raise PetastormArgumentError("dataset url list must be non-empty. url_or_urls: the list of dataset URLs is empty")
        urls = [normalize_dir_url(u) for u in url_or_urls]
        first = _filesystem_key(urlparse(urls[0]))
        for url in urls[1:]:
            if _filesystem_key(urlparse(url)) != first:
                raise PetastormFilesystemError(
                    f"The dataset url list must contain url with the same scheme and netloc. "
                    f"{urls[0]!r} and {url!r} differ")
        resolvers = [FilesystemResolver(url, hdfs_driver=hdfs_driver, storage_options=storage_options,
                                        filesystem=filesystem) for url in urls]
        fs = resolvers[0].filesystem()  # all URLs share it: scheme and netloc are equal
        paths = [r.get_dataset_path() for r in resolvers]
        if len(paths) == 1 and fs.get_file_info(paths[0]).type == pafs.FileType.Directory:
            return fs, paths[0]  # 0.12.1 (its pyarrow) read a list of one dataset directory as that directory
        return fs, paths
    resolver = FilesystemResolver(url_or_urls, hdfs_driver=hdfs_driver, storage_options=storage_options,
                                  filesystem=filesystem)
    return resolver.filesystem(), resolver.get_dataset_path()
