"""Petastorm dataset metadata: the keys in ``_common_metadata``, reading them safely, writing them.

A Petastorm dataset is a Parquet store whose ``_common_metadata`` file carries, in its key-value
metadata:

- :data:`UNISCHEMA_JSON_KEY` - the Unischema as JSON (petastorm's own key; read first, runs no code);
- :data:`UNISCHEMA_KEY` - the Unischema pickled as the original library writes and reads it (read
  through :func:`petastorm.etl.safe_unpickle.safe_loads`, an exact allow-list);
- :data:`ROW_GROUPS_PER_FILE_KEY` - JSON, path relative to the dataset -> number of row groups;
- :data:`ROWGROUPS_INDEX_KEY` - optional pickled row-group indexes (:mod:`petastorm.etl.rowgroup_indexing`).

Both writers (:func:`materialize_dataset` around a Spark write, and ``petastorm.write_dataset``) end by
calling :func:`write_petastorm_metadata`.

Row groups of a dataset are numbered in one order everywhere (:func:`load_row_groups`): files sorted by
their relative path as a plain string (``'p=1.5/x' < 'p=1/x'``, as the original orders them), then by
row-group index. Row-group indexes and selectors refer to positions in that order.
"""
from __future__ import annotations

import json
import posixpath
import re
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Callable, Iterator, NamedTuple, Optional, Union

from petastorm.errors import PetastormArgumentError, PetastormMetadataError, PetastormMetadataGenerationError
from petastorm.etl.safe_unpickle import dumps_unischema, safe_loads
from petastorm.etl.schema_json import unischema_from_json, unischema_to_json

__all__ = [
    "UNISCHEMA_KEY",
    "UNISCHEMA_JSON_KEY",
    "ROW_GROUPS_PER_FILE_KEY",
    "ROWGROUPS_INDEX_KEY",
    "COMMON_METADATA_FILE",
    "PetastormMetadataError",
    "PetastormMetadataGenerationError",
    "RowGroupPiece",
    "build_petastorm_metadata",
    "write_petastorm_metadata",
    "write_summary_metadata",
    "read_dataset_metadata",
    "load_unischema",
    "load_num_row_groups_per_file",
    "list_data_files",
    "count_row_groups_per_file",
    "dataset_row_groups",
    "get_schema",
    "get_schema_from_dataset_url",
    "infer_or_load_unischema",
    "load_row_groups",
    "materialize_dataset",
]

UNISCHEMA_KEY = b"dataset-toolkit.unischema.v1"
ROW_GROUPS_PER_FILE_KEY = b"dataset-toolkit.num_row_groups_per_file.v1"
ROWGROUPS_INDEX_KEY = b"dataset-toolkit.rowgroups_index.v1"
UNISCHEMA_JSON_KEY = b"petastorm.unischema.json.v1"
COMMON_METADATA_FILE = "_common_metadata"
SUMMARY_METADATA_FILE = "_metadata"

_NO_COMMON_METADATA = (
    "Could not find _common_metadata file. Use materialize_dataset(..) in petastorm.etl.dataset_metadata.py to "
    "generate this file in your ETL code. You can generate it on an existing dataset using "
    "petastorm-generate-metadata.py")
_NO_UNISCHEMA = (
    "Could not find the unischema in the dataset common metadata file. Please provide or generate dataset with "
    "the unischema attached. Common Metadata file might not be generated properly. Make sure to use "
    "materialize_dataset(..) in petastorm.etl.dataset_metadata to properly generate this file in your ETL code. "
    "You can generate it on an existing dataset using petastorm-generate-metadata.py")


class RowGroupPiece(NamedTuple):
    """One row group of a dataset, as :func:`load_row_groups` lists them.

    ``path`` is the file's path on the dataset's filesystem, ``row_group`` the index of the row group in
    the file, ``partition_keys`` the Hive partition ``(name, value)`` pairs of the file's directories.
    """

    path: str
    row_group: int
    partition_keys: tuple


# --- building and writing ----------------------------------------------------------------------------------

def build_petastorm_metadata(schema: Any, num_row_groups_per_file: dict[str, int]) -> dict[bytes, bytes]:
    """The key-value metadata of a Petastorm dataset.

    Parameters
    ----------
    schema : Unischema
    num_row_groups_per_file : dict of str to int
        Path of each data file relative to the dataset directory ('/'-separated) -> its row-group count.

    Returns
    -------
    dict of bytes to bytes with :data:`UNISCHEMA_KEY`, :data:`UNISCHEMA_JSON_KEY` and
    :data:`ROW_GROUPS_PER_FILE_KEY`.
    """
    counts = {str(k): int(v) for k, v in num_row_groups_per_file.items()}
    return {
        UNISCHEMA_KEY: dumps_unischema(schema),
        UNISCHEMA_JSON_KEY: unischema_to_json(schema).encode("utf-8"),
        ROW_GROUPS_PER_FILE_KEY: json.dumps(counts).encode("utf-8"),
    }


def write_petastorm_metadata(filesystem: Any, dataset_path: str, schema: Any,
                             num_row_groups_per_file: dict[str, int], arrow_schema: Any = None,
                             extra: Optional[dict[bytes, bytes]] = None) -> None:
    """Write (or update) ``<dataset_path>/_common_metadata`` with the Petastorm keys.

    Parameters
    ----------
    filesystem : pyarrow.fs.FileSystem
    dataset_path : str
        Dataset directory on ``filesystem``.
    schema : Unischema
    num_row_groups_per_file : dict of str to int
        Relative file path -> row-group count (see :func:`build_petastorm_metadata`).
    arrow_schema : pyarrow.Schema, optional
        Arrow schema stored in the file. By default: the schema of an existing ``_common_metadata``, else
        of the first data file, else the one the Unischema implies.
    extra : dict of bytes to bytes, optional
        More keys to store (for example :data:`ROWGROUPS_INDEX_KEY`).

    Keys already in an existing ``_common_metadata`` (Spark's, an index) are kept unless replaced.
    """
    import pyarrow.parquet as pq

    metadata_path = posixpath.join(dataset_path, COMMON_METADATA_FILE)
    existing_schema = _read_footer_schema(filesystem, metadata_path) if _exists(filesystem, metadata_path) else None
    if arrow_schema is None:
        arrow_schema = existing_schema
    if arrow_schema is None:
        for rel in sorted(num_row_groups_per_file, key=_path_sort_key):
            candidate = posixpath.join(dataset_path, rel)
            if _exists(filesystem, candidate):
                arrow_schema = _read_footer_schema(filesystem, candidate)
                break
    if arrow_schema is None:
        arrow_schema = _arrow_schema_of(schema)
    merged: dict[bytes, bytes] = {}
    for source in (existing_schema, arrow_schema):
        if source is not None and source.metadata:
            merged.update(source.metadata)
    merged.update(build_petastorm_metadata(schema, num_row_groups_per_file))
    merged.update(extra or {})
    try:
        with filesystem.open_output_stream(metadata_path) as stream:
            pq.write_metadata(arrow_schema.with_metadata(merged), stream)
    except OSError as e:
        raise PetastormMetadataGenerationError(f"{metadata_path}: cannot write the dataset metadata: {e}") from e


def _arrow_schema_of(schema: Any) -> Any:
    import pyarrow as pa

    from petastorm.arrow_types import arrow_type_for_field

    return pa.schema([pa.field(f.name, arrow_type_for_field(f), nullable=bool(f.nullable))
                      for f in schema.fields.values()])


def write_summary_metadata(filesystem: Any, path: str, rels: list[str]) -> None:
    """Write the Parquet ``_metadata`` summary file: the row groups of the files ``rels`` (relative
    paths, in this order) with their paths, as Parquet summary files hold them."""
    import pyarrow.parquet as pq

    summary = None
    for rel in rels:
        with filesystem.open_input_file(posixpath.join(path, rel)) as f:
            file_metadata = pq.ParquetFile(f).metadata
        file_metadata.set_file_path(rel)
        if summary is None:
            summary = file_metadata
        else:
            summary.append_row_groups(file_metadata)
    if summary is not None:
        with filesystem.open_output_stream(posixpath.join(path, SUMMARY_METADATA_FILE)) as out:
            summary.write_metadata_file(out)


# --- reading -----------------------------------------------------------------------------------------------

def _exists(filesystem: Any, path: str) -> bool:
    import pyarrow.fs as pafs

    return filesystem.get_file_info(path).type == pafs.FileType.File


def _read_footer_schema(filesystem: Any, path: str) -> Any:
    import pyarrow.parquet as pq

    try:
        with filesystem.open_input_file(path) as f:
            return pq.read_schema(f)
    except (OSError, ValueError) as e:  # ArrowInvalid is a ValueError
        raise PetastormMetadataError(f"{path}: cannot read the Parquet metadata file: {e}") from None


def _metadata_file(filesystem: Any, dataset_path: str) -> Optional[str]:
    for name in (COMMON_METADATA_FILE, SUMMARY_METADATA_FILE):
        path = posixpath.join(dataset_path, name)
        if _exists(filesystem, path):
            return path
    return None


def read_dataset_metadata(filesystem: Any, dataset_path: str) -> dict[bytes, bytes]:
    """Key-value metadata of ``<dataset_path>/_common_metadata``, else of ``_metadata``, else ``{}``.

    Raises
    ------
    PetastormMetadataError
        Naming the file, when it exists but is not a readable Parquet metadata file.
    """
    path = _metadata_file(filesystem, dataset_path)
    if path is None:
        return {}
    return dict(_read_footer_schema(filesystem, path).metadata or {})


def load_unischema(metadata: dict, source: str) -> Any:
    """The Unischema stored in ``metadata``: the JSON key first, then the pickle (allow-list); ``None``
    when neither key is there. ``source`` (the metadata file) names the dataset in errors."""
    if UNISCHEMA_JSON_KEY in metadata:
        return unischema_from_json(metadata[UNISCHEMA_JSON_KEY], source)
    if UNISCHEMA_KEY in metadata:
        from petastorm.unischema import Unischema

        schema = safe_loads(metadata[UNISCHEMA_KEY], source)
        if not isinstance(schema, Unischema):
            raise PetastormMetadataError(
                f"{source}: {UNISCHEMA_KEY.decode()} holds a {type(schema).__name__}, not a Unischema")
        _check_fields(schema, source)
        return schema
    return None


def _check_fields(schema: Any, source: str) -> None:
    """Every field of an unpickled schema has a str name, a tuple shape and a petastorm codec (or none)."""
    from petastorm.codecs import DataframeColumnCodec

    for name, field in schema.fields.items():
        if not isinstance(name, str) or field.name != name or not isinstance(field.shape, tuple) \
                or not all(d is None or isinstance(d, int) for d in field.shape) \
                or not (field.codec is None or isinstance(field.codec, DataframeColumnCodec)) \
                or not isinstance(field.nullable, (bool, int, type(None))):
            raise PetastormMetadataError(f"{source}: the stored schema has a malformed field {field!r:.200}")


def load_num_row_groups_per_file(metadata: dict, source: str) -> Optional[dict[str, int]]:
    """Relative file path -> row-group count from :data:`ROW_GROUPS_PER_FILE_KEY`; ``None`` when absent.

    Raises
    ------
    PetastormMetadataError
        Naming ``source``, when the value is not UTF-8 JSON of an object of non-negative ints.
    """
    raw = metadata.get(ROW_GROUPS_PER_FILE_KEY)
    if raw is None:
        return None
    try:
        counts = json.loads(bytes(raw).decode("utf-8"))
    except UnicodeDecodeError as e:
        raise PetastormMetadataError(f"{source}: {ROW_GROUPS_PER_FILE_KEY.decode()} is not UTF-8 ({e})") from None
    except json.JSONDecodeError as e:
        raise PetastormMetadataError(
            f"{source}: {ROW_GROUPS_PER_FILE_KEY.decode()} is truncated or not valid JSON ({e})") from None
    if not isinstance(counts, dict) or not all(type(k) is str for k in counts) or not all(
            type(v) is int and v >= 0 for v in counts.values()):
        raise PetastormMetadataError(
            f"{source}: {ROW_GROUPS_PER_FILE_KEY.decode()} must map relative paths to row-group counts")
    return counts


# --- data files and row groups ---------------------------------------------------------------------------

def _path_sort_key(relative_path: str) -> str:
    """Dataset order of files: the plain string order of relative paths (the original's order, which
    row-group indexes stored by it refer to)."""
    return relative_path


def _hidden(relative_path: str) -> bool:
    return any(part.startswith(("_", ".")) for part in relative_path.split("/"))


def list_data_files(filesystem: Any, dataset_path: str) -> list[str]:
    """Relative paths of the data files under ``dataset_path``, in dataset order (names starting with
    ``_`` or ``.`` anywhere in the path are skipped, as Spark and pyarrow do)."""
    import pyarrow.fs as pafs

    infos = filesystem.get_file_info(pafs.FileSelector(dataset_path, recursive=True))
    base = dataset_path.rstrip("/") + "/"
    rels = []
    for info in infos:
        if info.type != pafs.FileType.File:
            continue
        rel = info.path[len(base):] if info.path.startswith(base) else posixpath.relpath(info.path, dataset_path)
        if not _hidden(rel) and not rel.endswith(".crc"):
            rels.append(rel)
    return sorted(rels, key=_path_sort_key)


def count_row_groups_per_file(filesystem: Any, dataset_path: str,
                              relative_paths: Optional[list[str]] = None) -> dict[str, int]:
    """Row-group count of each data file, read from the Parquet footers (in a few threads).

    Raises
    ------
    PetastormMetadataGenerationError
        Naming the file whose footer cannot be read.
    """
    import pyarrow.parquet as pq

    rels = list_data_files(filesystem, dataset_path) if relative_paths is None else list(relative_paths)

    def count(rel: str) -> int:
        path = posixpath.join(dataset_path, rel)
        try:
            with filesystem.open_input_file(path) as f:
                return pq.ParquetFile(f).metadata.num_row_groups
        except (OSError, ValueError) as e:
            raise PetastormMetadataGenerationError(f"{path}: cannot read the Parquet footer: {e}") from None

    with ThreadPoolExecutor(max_workers=min(8, max(1, len(rels)))) as pool:
        return dict(zip(rels, pool.map(count, rels)))


_HIVE_DIR = re.compile(r"^([^=/]+)=([^/]*)$")


def _partition_keys(relative_path: str) -> tuple:
    return tuple(m.groups() for m in (_HIVE_DIR.match(p) for p in relative_path.split("/")[:-1]) if m)


def dataset_row_groups(filesystem: Any, dataset_path: str, metadata: Optional[dict] = None,
                       source: Optional[str] = None) -> list[RowGroupPiece]:
    """Every row group of the dataset in dataset order (see the module docstring).

    Counts come from :data:`ROW_GROUPS_PER_FILE_KEY` when ``metadata`` has it; files that it does not list
    have their footer read.
    """
    if metadata is None:
        metadata = read_dataset_metadata(filesystem, dataset_path)
    source = source or posixpath.join(dataset_path, COMMON_METADATA_FILE)
    stored = load_num_row_groups_per_file(metadata, source) or {}
    files = list_data_files(filesystem, dataset_path)
    missing = [rel for rel in files if rel not in stored]
    counts = dict(stored)
    if missing:
        counts.update(count_row_groups_per_file(filesystem, dataset_path, missing))
    pieces = []
    for rel in files:
        for row_group in range(counts[rel]):
            pieces.append(RowGroupPiece(posixpath.join(dataset_path, rel), row_group, _partition_keys(rel)))
    return pieces


# --- the original's public functions -------------------------------------------------------------------------

def _dataset_location(dataset: Any) -> tuple[Any, str]:
    """``(filesystem, base path)`` of a dataset object.

    Accepted: a ``pyarrow.parquet.ParquetDataset`` (its ``filesystem`` and base directory), petastorm's
    ``reader_impl.dataset.DatasetInfo`` (``filesystem`` and ``root``), or any object with a ``filesystem``
    attribute (a ``pyarrow.fs.FileSystem``) and one of the attributes ``base_path``, ``dataset_path``,
    ``root``, ``path`` or ``_base_dir`` giving the dataset directory on it.
    """
    filesystem = getattr(dataset, "filesystem", None)
    if filesystem is None:
        raise PetastormMetadataError(
            f"expected a pyarrow ParquetDataset or an object with .filesystem and .base_path, got "
            f"{type(dataset).__name__}")
    for attr in ("base_path", "dataset_path", "root", "path", "_base_dir"):
        path = getattr(dataset, attr, None)
        if isinstance(path, str):
            return filesystem, path
    files = getattr(dataset, "files", None)
    if files:
        return filesystem, posixpath.dirname(files[0])
    raise PetastormMetadataError(f"cannot tell the base directory of the dataset object {type(dataset).__name__}")


def _stored_unischema(filesystem: Any, dataset_path: str) -> tuple[Any, Optional[str]]:
    """(Unischema or None, metadata file or None)."""
    path = _metadata_file(filesystem, dataset_path)
    if path is None:
        return None, None
    metadata = dict(_read_footer_schema(filesystem, path).metadata or {})
    return load_unischema(metadata, path), path


def _get_schema_at(filesystem: Any, dataset_path: str) -> Any:
    schema, path = _stored_unischema(filesystem, dataset_path)
    if path is None:
        raise PetastormMetadataError(f"{_NO_COMMON_METADATA} (dataset: {dataset_path})")
    if schema is None:
        raise PetastormMetadataError(f"{_NO_UNISCHEMA} (file: {path})")
    return schema


def get_schema(dataset: Any) -> Any:
    """The Unischema stored in a dataset's ``_common_metadata``.

    Parameters
    ----------
    dataset : pyarrow.parquet.ParquetDataset, petastorm's ``DatasetInfo`` (``open_dataset(url)``), or an
        object with ``filesystem`` and ``base_path`` attributes.

    Raises
    ------
    PetastormMetadataError
        No ``_common_metadata``, no schema in it, or a stored schema that is refused as unsafe.
    """
    return _get_schema_at(*_dataset_location(dataset))


def _dataset_dir_of(filesystem: Any, paths: Union[str, list]) -> str:
    if isinstance(paths, str):
        return paths.rstrip("/") or "/"
    parents = [posixpath.dirname(p) for p in paths]
    try:
        base = posixpath.commonpath(parents)
    except ValueError:  # a mix of absolute and relative paths
        base = parents[0]
    probe = base
    while probe and _HIVE_DIR.match(posixpath.basename(probe)) and _metadata_file(filesystem, probe) is None:
        probe = posixpath.dirname(probe)
    return probe if probe and _metadata_file(filesystem, probe) is not None else base


def get_schema_from_dataset_url(dataset_url_or_urls: Union[str, list[str]], hdfs_driver: str = "libhdfs3",
                                storage_options: Optional[dict] = None, filesystem: Any = None) -> Any:
    """The Unischema stored with the dataset at a URL (or a list of file URLs of one dataset).

    Raises
    ------
    PetastormMetadataError
        As :func:`get_schema`.
    """
    fs, paths = _resolve(dataset_url_or_urls, hdfs_driver, storage_options, filesystem)
    return _get_schema_at(fs, _dataset_dir_of(fs, paths))


def _resolve(url_or_urls: Any, hdfs_driver: str = "libhdfs3", storage_options: Optional[dict] = None,
             filesystem: Any = None) -> tuple[Any, Any]:
    from petastorm.fs_utils import get_filesystem_and_path_or_paths

    return get_filesystem_and_path_or_paths(url_or_urls, hdfs_driver=hdfs_driver,
                                            storage_options=storage_options, filesystem=filesystem)


def infer_or_load_unischema(dataset: Any) -> Any:
    """The stored Unischema when the dataset has one, else one inferred from the Arrow schema.

    A stored schema that is refused (unsafe or corrupt) raises; it is never silently replaced.
    """
    filesystem, path = _dataset_location(dataset)
    schema, _ = _stored_unischema(filesystem, path)
    if schema is not None:
        return schema
    from petastorm.unischema import Unischema

    if hasattr(dataset, "schema") and hasattr(dataset, "files"):
        return Unischema.from_arrow_schema(dataset)
    import pyarrow.dataset as pads

    return Unischema.from_arrow_schema(pads.dataset(path, filesystem=filesystem, format="parquet",
                                                    partitioning="hive"))


def load_row_groups(dataset: Any) -> list[RowGroupPiece]:
    """Every row group of ``dataset`` in dataset order, as :class:`RowGroupPiece` tuples.

    The original returned pyarrow's ``ParquetDatasetPiece`` objects, which pyarrow no longer has; the
    fields ``path``, ``row_group`` and ``partition_keys`` keep their names.
    """
    filesystem, path = _dataset_location(dataset)
    return dataset_row_groups(filesystem, path)


# --- materialize_dataset -------------------------------------------------------------------------------------

_BLOCK_SIZE = "parquet.block.size"
_SUMMARY_LEVEL = "parquet.summary.metadata.level"
_SUMMARY_LEGACY = "parquet.enable.summary-metadata"


def _set_hadoop_conf(hadoop_conf: Any, changes: dict[str, Optional[str]]) -> dict[str, Optional[str]]:
    previous = {key: hadoop_conf.get(key) for key in changes}
    for key, value in changes.items():
        if value is None:
            hadoop_conf.unset(key)
        else:
            hadoop_conf.set(key, value)
    return previous


def _filesystem_from_factory(filesystem_factory: Callable) -> Any:
    import pyarrow.fs as pafs

    fs = filesystem_factory()
    if isinstance(fs, pafs.FileSystem):
        return fs
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs))


@contextmanager
def materialize_dataset(spark: Any, dataset_url: str, schema: Any, row_group_size_mb: Optional[int] = None,
                        use_summary_metadata: bool = False,
                        filesystem_factory: Optional[Callable] = None) -> Iterator[None]:
    """Wrap a Spark write of a Petastorm dataset; on exit, write the Petastorm metadata.

    Inside the block the Hadoop configuration of ``spark`` has ``parquet.block.size`` set to
    ``row_group_size_mb`` MiB (when given) and Parquet summary files switched on or off per
    ``use_summary_metadata``; the previous values are restored on exit. After a block that did not raise,
    ``<dataset_url>/_common_metadata`` gets the schema and the row-group count of each written file
    (read from the files' footers).

    Parameters
    ----------
    spark : pyspark.sql.SparkSession
    dataset_url : str
        Where the block writes the dataset (``file://``, ``hdfs://``, ``s3://``...).
    schema : Unischema
    row_group_size_mb : int, optional
        Target row-group size in MiB.
    use_summary_metadata : bool
        Let Parquet write the ``_metadata`` summary file too.
    filesystem_factory : callable, optional
        Returns the filesystem (pyarrow or fsspec) to write the metadata with; by default it is resolved
        from ``dataset_url``.

    Example
    -------
    >>> with materialize_dataset(spark, url, MySchema, 64):
    ...     spark.createDataFrame(rows, MySchema.as_spark_schema()).write.parquet(url)
    """
    hadoop_conf = spark.sparkContext._jsc.hadoopConfiguration()
    changes: dict[str, Optional[str]] = {
        _SUMMARY_LEVEL: "ALL" if use_summary_metadata else "NONE",
        _SUMMARY_LEGACY: "true" if use_summary_metadata else "false",
    }
    if row_group_size_mb is not None:
        if not isinstance(row_group_size_mb, (int, float)) or row_group_size_mb <= 0:
            raise PetastormArgumentError(f"row_group_size_mb must be a positive number, got {row_group_size_mb!r}")
        changes[_BLOCK_SIZE] = str(int(row_group_size_mb * 1024 * 1024))
    previous = _set_hadoop_conf(hadoop_conf, changes)
    try:
        yield
    finally:
        _set_hadoop_conf(hadoop_conf, previous)
    if filesystem_factory is not None:
        fs, path = _resolve(dataset_url, filesystem=_filesystem_from_factory(filesystem_factory))
    else:
        fs, path = _resolve(dataset_url)
    counts = count_row_groups_per_file(fs, path)
    if not counts:
        raise PetastormMetadataGenerationError(f"{dataset_url}: the block wrote no Parquet files")
    if use_summary_metadata and not _exists(fs, posixpath.join(path, SUMMARY_METADATA_FILE)):
        write_summary_metadata(fs, path, list(counts))
    write_petastorm_metadata(fs, path, schema, counts)
