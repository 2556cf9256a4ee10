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
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Union
from urllib.parse import ParseResult, urlparse

import pyarrow.fs as pafs

from petastorm.errors import PetastormArgumentError, PetastormFilesystemError
from petastorm.settings import other_program_variable

__all__ = [
    "FilesystemResolver",
    "get_filesystem_and_path_or_paths",
    "normalize_dir_url",
    "get_dataset_path",
]

_LOCAL_SCHEMES = ("", "file")
_S3_SCHEMES = ("s3", "s3a", "s3n")
_HDFS_SCHEMES = ("hdfs",)
_HDFS_DRIVERS = ("libhdfs", "libhdfs3")

# Schemes whose first URL component (netloc) is a bucket/container and belongs in the path.
# For hdfs and file the netloc is a host and the path starts after it.
_HOST_NETLOC_SCHEMES = _LOCAL_SCHEMES + _HDFS_SCHEMES + ("viewfs",)

# fsspec registry names for schemes that fsspec (without the driver installed) does not list.
_FSSPEC_ALIASES = {"abfss": "abfs"}

# pip package that provides the fsspec driver of a protocol, for error messages.
_DRIVER_PACKAGES = {
    "gs": "gcsfs",
    "gcs": "gcsfs",
    "abfs": "adlfs",
    "abfss": "adlfs",
    "az": "adlfs",
    "adl": "adlfs",
    "s3": "s3fs",
    "s3a": "s3fs",
    "s3n": "s3fs",
    "oci": "ocifs",
    "http": "aiohttp",
    "https": "aiohttp",
}

# s3fs-style storage_options that map one-to-one onto pyarrow.fs.S3FileSystem arguments.
_S3FS_TO_PYARROW = {
    "key": "access_key",
    "secret": "secret_key",
    "token": "session_token",
    "anon": "anonymous",
    "region": "region",
    "region_name": "region",
}
# pyarrow.fs.S3FileSystem arguments, also accepted as they are.
_PYARROW_S3_ARGS = frozenset({
    "access_key", "secret_key", "session_token", "anonymous", "region", "request_timeout",
    "connect_timeout", "scheme", "endpoint_override", "background_writes", "default_metadata",
    "role_arn", "session_name", "external_id", "load_frequency", "proxy_options", "allow_delayed_open",
    "allow_bucket_creation", "allow_bucket_deletion", "check_directory_existence_before_creation",
    "retry_strategy", "force_virtual_addressing", "tls_ca_file_path",
})
_S3_CLIENT_KWARGS_MAPPED = frozenset({"endpoint_url", "region_name"})

_HDFS_HELP = (
    "pyarrow reaches HDFS through libhdfs (JNI): install a Hadoop client and a JVM, then set JAVA_HOME, "
    "HADOOP_HOME (libhdfs.so is looked up in $HADOOP_HOME/lib/native, or set ARROW_LIBHDFS_DIR to its "
    "directory) and CLASSPATH=$(hadoop classpath --glob)"
)


# --------------------------------------------------------------------------------------------------
# URL helpers (public, names kept from the original)
# --------------------------------------------------------------------------------------------------

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
        return parsed_url.path
    return parsed_url.netloc + parsed_url.path


# --------------------------------------------------------------------------------------------------
# Filesystem recipes: picklable, built lazily
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class _FilesystemFactory:
    """A picklable zero-argument callable that creates the filesystem of one URL.

    ``kind`` picks the builder; ``options`` are its keyword arguments; ``given`` holds a filesystem the
    user passed in (returned as it is).
    """

    kind: str
    url: str
    options: dict = field(default_factory=dict)
    given: Any = None

    def __call__(self) -> pafs.FileSystem:
        return _BUILDERS[self.kind](self)


def _build_given(spec: _FilesystemFactory) -> pafs.FileSystem:
    return spec.given


def _build_local(spec: _FilesystemFactory) -> pafs.FileSystem:
    return pafs.LocalFileSystem()


def _build_s3(spec: _FilesystemFactory) -> pafs.FileSystem:
    options = dict(spec.options)
    bucket = options.pop("_bucket", None)
    if (bucket and "region" not in options and "endpoint_override" not in options
            and not other_program_variable("AWS_REGION") and not other_program_variable("AWS_DEFAULT_REGION")):
        # pyarrow does not follow AWS's redirect to a bucket's region: find it the way from_uri does.
        try:
            options["region"] = pafs.resolve_s3_region(bucket)
        except OSError:
            pass
    try:
        return pafs.S3FileSystem(**options)
    except (TypeError, ValueError, OSError) as e:
        raise PetastormFilesystemError(
            f"could not create a pyarrow S3FileSystem for {spec.url!r} from storage_options "
            f"{_redacted(options)}: {e}") from e


def _build_s3fs(spec: _FilesystemFactory) -> pafs.FileSystem:
    try:
        import s3fs
    except ImportError as e:
        raise PetastormFilesystemError(
            f"storage_options {sorted(spec.options)} for {spec.url!r} need s3fs (they cannot be given to "
            f"pyarrow's S3FileSystem): pip install s3fs") from e
    return _wrap_fsspec(s3fs.S3FileSystem(**spec.options))


def _build_hdfs(spec: _FilesystemFactory) -> pafs.FileSystem:
    options = spec.options
    try:
        return pafs.HadoopFileSystem(options["host"], options["port"], user=options.get("user"))
    except OSError as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise PetastormFilesystemError(
            f"cannot open HDFS for {spec.url!r} (namenode {options['host']!r}, port {options['port']}): "
            f"{first_line}. {_HDFS_HELP}") from e


def _build_hdfs_connector(spec: _FilesystemFactory) -> pafs.FileSystem:
    fs = spec.given.hdfs_connect_namenode(urlparse(spec.url), spec.options["driver"],
                                          user=spec.options.get("user"))
    return _ensure_pyarrow_filesystem(fs, "connector.hdfs_connect_namenode(...)")


def _build_fsspec(spec: _FilesystemFactory) -> pafs.FileSystem:
    cls = _fsspec_class(spec.options["protocol"], spec.url)
    return _wrap_fsspec(cls(**spec.options["kwargs"]))


_BUILDERS: dict[str, Callable[[_FilesystemFactory], pafs.FileSystem]] = {
    "given": _build_given,
    "local": _build_local,
    "s3": _build_s3,
    "s3fs": _build_s3fs,
    "hdfs": _build_hdfs,
    "hdfs_connector": _build_hdfs_connector,
    "fsspec": _build_fsspec,
}


def _wrap_fsspec(fs: Any) -> pafs.FileSystem:
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs))


def _redacted(options: dict) -> dict:
    secret = ("secret", "secret_key", "token", "session_token", "key", "access_key", "password")
    return {k: ("***" if k in secret and v else v) for k, v in options.items()}


def _ensure_pyarrow_filesystem(filesystem: Any, argument: str) -> pafs.FileSystem:
    """A pyarrow FileSystem as given, an fsspec filesystem wrapped; anything else is refused."""
    if isinstance(filesystem, pafs.FileSystem):
        return filesystem
    try:
        import fsspec
    except ImportError:  # pragma: no cover - fsspec is a dependency
        fsspec = None
    if fsspec is not None and isinstance(filesystem, fsspec.AbstractFileSystem):
        return _wrap_fsspec(filesystem)
    raise PetastormArgumentError(
        f"{argument} must be a pyarrow.fs.FileSystem or an fsspec.AbstractFileSystem, "
        f"got {type(filesystem).__module__}.{type(filesystem).__name__}")


def _fsspec_handler_fs(filesystem: pafs.FileSystem) -> Any:
    """The fsspec filesystem inside a ``PyFileSystem(FSSpecHandler(...))``, else None."""
    if isinstance(filesystem, pafs.PyFileSystem):
        handler = filesystem.handler
        if isinstance(handler, pafs.FSSpecHandler):
            return handler.fs
    return None


def _fsspec_class(protocol: str, url: str) -> type:
    """The fsspec filesystem class of a protocol; clear errors for unknown ones and missing drivers."""
    import fsspec

    name = _FSSPEC_ALIASES.get(protocol, protocol)
    try:
        return fsspec.get_filesystem_class(name)
    except ImportError as e:
        package = _DRIVER_PACKAGES.get(protocol) or _registry_package(name)
        raise PetastormFilesystemError(
            f"cannot open {url!r}: the fsspec driver for '{protocol}://' is not installed "
            f"({e}). Install it with: pip install {package}") from e
    except ValueError as e:
        raise PetastormFilesystemError(
            f"cannot open {url!r}: Protocol not known: {protocol}. Supported: plain paths, file://, "
            f"s3:// (s3a, s3n), hdfs://, gs://, gcs://, abfs://, abfss://, az:// and any protocol "
            f"registered with fsspec") from e


def _registry_package(protocol: str) -> str:
    from fsspec.registry import known_implementations

    entry = known_implementations.get(protocol, {})
    return entry.get("class", protocol).split(".")[0] or protocol


def _s3_options(storage_options: dict) -> Optional[dict]:
    """Translate s3fs-style options to ``pyarrow.fs.S3FileSystem`` arguments.

    Returns None when an option has no pyarrow equivalent (then s3fs must be used).
    """
    out: dict = {}
    endpoint_url = None
    use_ssl = None
    for key, value in storage_options.items():
        if key in _S3FS_TO_PYARROW:
            if value is not None:
                out[_S3FS_TO_PYARROW[key]] = value
        elif key in _PYARROW_S3_ARGS:
            if value is not None:
                out[key] = value
        elif key == "endpoint_url":
            endpoint_url = value
        elif key == "use_ssl":
            use_ssl = value
        elif key == "client_kwargs":
            client_kwargs = dict(value or {})
            if set(client_kwargs) - _S3_CLIENT_KWARGS_MAPPED:
                return None
            endpoint_url = client_kwargs.get("endpoint_url", endpoint_url)
            if client_kwargs.get("region_name") is not None:
                out.setdefault("region", client_kwargs["region_name"])
        else:
            return None
    if use_ssl is not None and "scheme" not in out:
        out["scheme"] = "https" if use_ssl else "http"
    if endpoint_url:
        if "://" in endpoint_url:
            parsed = urlparse(endpoint_url)
            out["scheme"] = parsed.scheme
            out["endpoint_override"] = parsed.netloc + parsed.path.rstrip("/")
        else:
            out["endpoint_override"] = endpoint_url
    if out.get("anonymous") is not None:
        out["anonymous"] = bool(out["anonymous"])
    return out


def _hdfs_namenode(parsed: ParseResult, hadoop_configuration: Any) -> tuple[str, int]:
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


# --------------------------------------------------------------------------------------------------
# Public resolver
# --------------------------------------------------------------------------------------------------

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
            given = _ensure_pyarrow_filesystem(filesystem, "filesystem")
            self._factory = _FilesystemFactory("given", self._dataset_url, given=given)
            self._path = _path_for_given(given, self._dataset_url, self._parsed)
        elif scheme in _LOCAL_SCHEMES:
            self._factory = _FilesystemFactory("local", self._dataset_url)
            self._path = self._local_path()
        elif scheme in _S3_SCHEMES:
            self._factory = self._s3_factory(storage_options)
            self._path = get_dataset_path(self._parsed)
        elif scheme in _HDFS_SCHEMES:
            self._factory = self._hdfs_factory(hadoop_configuration, connector, hdfs_driver, user)
            self._path = self._parsed.path or "/"
        else:
            cls = _fsspec_class(scheme, self._dataset_url)
            kwargs = dict(cls._get_kwargs_from_urls(self._dataset_url))
            kwargs.update(storage_options)
            self._factory = _FilesystemFactory("fsspec", self._dataset_url,
                                               options={"protocol": scheme, "kwargs": kwargs})
            self._path = cls._strip_protocol(self._dataset_url)

    # -- construction helpers --------------------------------------------------------------------

    def _local_path(self) -> str:
        parsed = self._parsed
        if parsed.scheme.lower() == "file":
            if parsed.netloc not in ("", "localhost"):
                raise PetastormFilesystemError(
                    f"{self._dataset_url!r}: a file:// URL takes an absolute path after three slashes "
                    f"(file:///{parsed.netloc}{parsed.path}); '{parsed.netloc}' was read as a host name")
            return parsed.path or "/"
        return os.path.abspath(self._dataset_url)

    def _s3_factory(self, storage_options: dict) -> _FilesystemFactory:
        options = _s3_options(storage_options)
        if options is None:
            return _FilesystemFactory("s3fs", self._dataset_url, options=storage_options)
        options["_bucket"] = self._parsed.netloc
        return _FilesystemFactory("s3", self._dataset_url, options=options)

    def _hdfs_factory(self, hadoop_configuration: Any, connector: Any, hdfs_driver: str,
                      user: Optional[str]) -> _FilesystemFactory:
        if connector is not None and hasattr(connector, "hdfs_connect_namenode"):
            return _FilesystemFactory("hdfs_connector", self._dataset_url,
                                      options={"driver": hdfs_driver, "user": user}, given=connector)
        host, port = _hdfs_namenode(self._parsed, hadoop_configuration)
        return _FilesystemFactory("hdfs", self._dataset_url,
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
    inner = _fsspec_handler_fs(filesystem)
    if inner is not None:
        return inner._strip_protocol(url)
    return get_dataset_path(parsed)


# --------------------------------------------------------------------------------------------------
# One URL or a list of URLs
# --------------------------------------------------------------------------------------------------

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
        first = urlparse(urls[0])
        for url in urls[1:]:
            parsed = urlparse(url)
            if (parsed.scheme.lower(), parsed.netloc) != (first.scheme.lower(), first.netloc):
                raise PetastormFilesystemError(
                    f"The dataset url list must contain url with the same scheme and netloc. "
                    f"{urls[0]!r} and {url!r} differ")
        resolvers = [FilesystemResolver(url, hdfs_driver=hdfs_driver, storage_options=storage_options,
                                        filesystem=filesystem) for url in urls]
        fs = resolvers[0].filesystem()  # all URLs share it: scheme and netloc are equal
        return fs, [r.get_dataset_path() for r in resolvers]
    resolver = FilesystemResolver(url_or_urls, hdfs_driver=hdfs_driver, storage_options=storage_options,
                                  filesystem=filesystem)
    return resolver.filesystem(), resolver.get_dataset_path()
