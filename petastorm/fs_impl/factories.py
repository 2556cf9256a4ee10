"""Filesystem recipes: picklable callables that build a ``pyarrow.fs.FileSystem``, built lazily.

A :class:`FilesystemFactory` holds what is needed to create one URL's filesystem (its ``kind`` picks
the builder: local, pyarrow S3, s3fs, HDFS through libhdfs or a legacy connector, any fsspec protocol,
or a filesystem the user gave). It is created when a URL is resolved and called only when the
filesystem is needed, in the reader's process or in a worker process it was pickled to: an ``hdfs://``
URL resolves without a Hadoop installation. fsspec filesystems are wrapped in
``pyarrow.fs.PyFileSystem(FSSpecHandler(...))``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import urlparse

import pyarrow.fs as pafs

from petastorm.errors import (
    PetastormArgumentError,
    PetastormDriverMissingError,
    PetastormFilesystemError,
    PetastormFilesystemUnavailableError,
)
from petastorm.settings import other_program_variable

__all__ = ["FilesystemFactory", "ensure_pyarrow_filesystem", "fsspec_handler_fs", "fsspec_class"]

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

_HDFS_HELP = (
    "pyarrow reaches HDFS through libhdfs (JNI): install a Hadoop client and a JVM, then set JAVA_HOME, "
    "HADOOP_HOME (libhdfs.so is looked up in $HADOOP_HOME/lib/native, or set ARROW_LIBHDFS_DIR to its "
    "directory) and CLASSPATH=$(hadoop classpath --glob)"
)


@dataclass(frozen=True, eq=False)
class FilesystemFactory:
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


def _build_given(spec: FilesystemFactory) -> pafs.FileSystem:
    return spec.given


def _build_local(spec: FilesystemFactory) -> pafs.FileSystem:
    return pafs.LocalFileSystem()


def _build_s3(spec: FilesystemFactory) -> pafs.FileSystem:
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


def _build_s3fs(spec: FilesystemFactory) -> pafs.FileSystem:
    try:
        import s3fs
    except ImportError as e:
        raise PetastormDriverMissingError(
            f"storage_options {sorted(spec.options)} for {spec.url!r} need s3fs (they cannot be given to "
            f"pyarrow's S3FileSystem): pip install s3fs") from e
    return _wrap_fsspec(s3fs.S3FileSystem(**spec.options))

# why pyarrow could not load libhdfs/libjvm the first time in this process (it says only "Prior attempt ..." later)
_LIBHDFS_FAILURE: dict = {}


def _build_hdfs(spec: FilesystemFactory) -> pafs.FileSystem:
    options = spec.options
    try:
        return pafs.HadoopFileSystem(options["host"], options["port"], user=options.get("user"))
    except OSError as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "Prior attempt to load libhdfs failed" in first_line:
            # pyarrow tries to load libhdfs once per process; later calls hide why it failed: say it again
            first_line = _LIBHDFS_FAILURE.get("first", first_line)
        elif "Unable to load" in first_line:
            _LIBHDFS_FAILURE.setdefault("first", first_line)
        raise PetastormFilesystemUnavailableError(
            f"cannot open HDFS for {spec.url!r} (namenode {options['host']!r}, port {options['port']}): "
            f"{first_line}. {_HDFS_HELP}") from e


def _build_hdfs_connector(spec: FilesystemFactory) -> pafs.FileSystem:
    fs = spec.given.hdfs_connect_namenode(urlparse(spec.url), spec.options["driver"],
                                          user=spec.options.get("user"))
    return ensure_pyarrow_filesystem(fs, "connector.hdfs_connect_namenode(...)")


def _build_fsspec(spec: FilesystemFactory) -> pafs.FileSystem:
    cls = fsspec_class(spec.options["protocol"], spec.url)
    return _wrap_fsspec(cls(**spec.options["kwargs"]))


_BUILDERS: dict[str, Callable[[FilesystemFactory], pafs.FileSystem]] = {
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


def ensure_pyarrow_filesystem(filesystem: Any, argument: str) -> pafs.FileSystem:
    """A pyarrow FileSystem as given, an fsspec filesystem wrapped; anything else is refused."""
    if isinstance(filesystem, pafs.FileSystem):
        return filesystem
    import fsspec

    if isinstance(filesystem, fsspec.AbstractFileSystem):
        return _wrap_fsspec(filesystem)
    raise PetastormArgumentError(
        f"{argument} must be a pyarrow.fs.FileSystem or an fsspec.AbstractFileSystem, "
        f"got {type(filesystem).__module__}.{type(filesystem).__name__}")


def fsspec_handler_fs(filesystem: pafs.FileSystem) -> Any:
    """The fsspec filesystem inside a ``PyFileSystem(FSSpecHandler(...))``, else None."""
    if isinstance(filesystem, pafs.PyFileSystem):
        handler = filesystem.handler
        if isinstance(handler, pafs.FSSpecHandler):
            return handler.fs
    return None


def fsspec_class(protocol: str, url: str) -> type:
    """The fsspec filesystem class of a protocol; clear errors for unknown ones and missing drivers."""
    import fsspec

    name = _FSSPEC_ALIASES.get(protocol, protocol)
    try:
        return fsspec.get_filesystem_class(name)
    except ImportError as e:
        package = _DRIVER_PACKAGES.get(protocol) or _registry_package(name)
        raise PetastormDriverMissingError(
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
