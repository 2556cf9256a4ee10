"""Petastorm dataset metadata: the keys in ``_common_metadata``, reading them safely, writing them.

A Petastorm dataset is a Parquet store whose ``_common_metadata`` file carries, in its key-value
metadata:

- :data:`UNISCHEMA_JSON_KEY` - the Unischema as JSON (petastorm's own key; read first, runs no code);
- :data:`UNISCHEMA_KEY` - the Unischema pickled as the original library writes and reads it (read
  through :func:`petastorm.etl.safe_unpickle.safe_loads`, an exact allow-list, then rebuilt from its
  plain JSON description: the schema returned holds nothing the pickle made);
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
from typing import Any, Optional, Union

from petastorm.errors import (
    DatasetNotFoundError,
    PetastormArgumentError,
    PetastormMetadataError,
    PetastormMetadataGenerationError,
)
from petastorm.etl.dataset_files import (
    HIVE_DIR,
    RowGroupPiece,
    count_row_groups_per_file,
    hive_partition_keys,
    list_data_files,
    path_sort_key,
)
from petastorm.etl.materialize import materialize_dataset
from petastorm.etl.safe_unpickle import dumps_unischema, safe_loads
from petastorm.etl.schema_json import rebuild_unischema, unischema_from_json, unischema_to_json

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
# Not in __all__: file_exists, find_metadata_file, dataset_location, ensure_paths_exist and
# resolve_dataset_url are internal helpers shared inside petastorm (rowgroup_indexing, materialize,
# reader_impl.explain), public only so that no module takes another module's private names (issue 13).

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
    existing_schema = _read_footer_schema(filesystem, metadata_path) if file_exists(filesystem, metadata_path) else None
    if arrow_schema is None:
        arrow_schema = existing_schema
    if arrow_schema is None:
        for rel in sorted(num_row_groups_per_file, key=path_sort_key):
            candidate = posixpath.join(dataset_path, rel)
            if file_exists(filesystem, candidate):
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

def file_exists(filesystem: Any, path: str) -> bool:
    """Whether ``path`` is a regular file on ``filesystem`` (a ``pyarrow.fs.FileSystem``)."""
    import pyarrow.fs as pafs

    return filesystem.get_file_info(path).type == pafs.FileType.File


def _read_footer_schema(filesystem: Any, path: str) -> Any:
    import pyarrow.parquet as pq

    try:
        with filesystem.open_input_file(path) as f:
            return pq.read_schema(f)
    except (OSError, ValueError) as e:  # ArrowInvalid is a ValueError
        raise PetastormMetadataError(f"{path}: cannot read the Parquet metadata file: {e}") from None


def find_metadata_file(filesystem: Any, dataset_path: str) -> Optional[str]:
    """Path of ``<dataset_path>/_common_metadata``, else of ``_metadata``, when it exists; else ``None``."""
    for name in (COMMON_METADATA_FILE, SUMMARY_METADATA_FILE):
        path = posixpath.join(dataset_path, name)
        if file_exists(filesystem, path):
            return path
    return None


def read_dataset_metadata(filesystem: Any, dataset_path: str) -> dict[bytes, bytes]:
    """Key-value metadata of ``<dataset_path>/_common_metadata``, else of ``_metadata``, else ``{}``.

    Raises
    ------
    PetastormMetadataError
        Naming the file, when it exists but is not a readable Parquet metadata file.
    """
    path = find_metadata_file(filesystem, dataset_path)
    if path is None:
        return {}
    return dict(_read_footer_schema(filesystem, path).metadata or {})


def load_unischema(metadata: dict, source: str) -> Any:
    """The Unischema stored in ``metadata``: the JSON key first, then the pickle (allow-list, then rebuilt
    from its plain JSON description); ``None`` when neither key is there. ``source`` (the metadata file)
    names the dataset in errors.

    Raises
    ------
    PetastormMetadataError
        Naming ``source``, for a refused, corrupt or malformed schema, whatever is wrong in it.
    """
    if UNISCHEMA_JSON_KEY in metadata:
        return unischema_from_json(metadata[UNISCHEMA_JSON_KEY], source)
    if UNISCHEMA_KEY in metadata:
        from petastorm.unischema import Unischema

        schema = safe_loads(metadata[UNISCHEMA_KEY], source)
        if not isinstance(schema, Unischema):
            raise PetastormMetadataError(
                f"{source}: {UNISCHEMA_KEY.decode()} holds a {type(schema).__name__}, not a Unischema")
        _check_field_keys(schema, source)
        return rebuild_unischema(schema, source)
    return None


def _check_field_keys(schema: Any, source: str) -> None:
    """Every field of an unpickled schema is stored under its own name (the rebuild checks the rest)."""
    fields = vars(schema).get("_fields")  # a Unischema unpickled without a state has none
    if not isinstance(fields, dict) or not all(type(name) is str and getattr(field, "name", None) == name
                                               for name, field in fields.items()):
        raise PetastormMetadataError(f"{source}: the stored schema has a field stored under another name")


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
            pieces.append(RowGroupPiece(posixpath.join(dataset_path, rel), row_group, hive_partition_keys(rel)))
    return pieces


# --- the original's public functions -------------------------------------------------------------------------

def dataset_location(dataset: Any) -> tuple[Any, str]:
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
    path = find_metadata_file(filesystem, dataset_path)
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
    return _get_schema_at(*dataset_location(dataset))


def _dataset_dir_of(filesystem: Any, paths: Union[str, list]) -> str:
    if isinstance(paths, str):
        return paths.rstrip("/") or "/"
    parents = [posixpath.dirname(p) for p in paths]
    try:
        base = posixpath.commonpath(parents)
    except ValueError:  # a mix of absolute and relative paths
        base = parents[0]
    probe = base
    while probe and HIVE_DIR.match(posixpath.basename(probe)) and find_metadata_file(filesystem, probe) is None:
        probe = posixpath.dirname(probe)
    return probe if probe and find_metadata_file(filesystem, probe) is not None else base


_SCHEMELESS_URL = ('ERROR! A scheme-less dataset url ({}) is no longer supported. Please prepend "file://" for '
                   'local filesystem.')


def _ensure_schemes(url_or_urls: Any) -> None:
    """Refuse a URL without a scheme, as the original does (unless a ``filesystem`` is given)."""
    from urllib.parse import urlparse

    urls = url_or_urls if isinstance(url_or_urls, (list, tuple)) else [url_or_urls]
    for url in urls:
        if isinstance(url, str) and not urlparse(url).scheme:
            raise PetastormArgumentError(_SCHEMELESS_URL.format(url))


def ensure_paths_exist(filesystem: Any, paths: Union[str, list]) -> None:
    """A missing dataset directory or listed file: the original's ``OSError`` ('Passed non-file path')."""
    import pyarrow.fs as pafs

    listed = [paths] if isinstance(paths, str) else list(paths)
    for info in filesystem.get_file_info(listed):
        if info.type == pafs.FileType.NotFound:
            raise DatasetNotFoundError(f"Passed non-file path: {info.path} (no such file or directory)")


def get_schema_from_dataset_url(dataset_url_or_urls: Union[str, list[str]], hdfs_driver: str = "libhdfs3",
                                storage_options: Optional[dict] = None, filesystem: Any = None) -> Any:
    """The Unischema stored with the dataset at a URL (or a list of file URLs of one dataset).

    Parameters
    ----------
    dataset_url_or_urls : str or list of str
        A dataset URL with a scheme (``file:///data/ds``, ``s3://bucket/ds``), or a list of file URLs of
        one dataset. A path without a scheme is accepted only with ``filesystem``.
    hdfs_driver, storage_options, filesystem
        As for ``make_reader``.

    Raises
    ------
    ValueError
        (:class:`~petastorm.errors.PetastormArgumentError`) A URL without a scheme, as the original.
    OSError
        (:class:`~petastorm.errors.DatasetNotFoundError`) The dataset directory or a listed file does
        not exist (the original's 'Passed non-file path').
    PetastormMetadataError
        As :func:`get_schema`: no metadata, no schema in it, or a schema refused as unsafe or malformed.
    """
    if filesystem is None:
        _ensure_schemes(dataset_url_or_urls)
    fs, paths = resolve_dataset_url(dataset_url_or_urls, hdfs_driver, storage_options, filesystem)
    paths = _single_directory_of(fs, paths)
    ensure_paths_exist(fs, paths)
    return _get_schema_at(fs, _dataset_dir_of(fs, paths))


def _single_directory_of(filesystem: Any, paths: Union[str, list]) -> Union[str, list]:
    """A list of one directory is that directory, as in 0.12.1 (its pyarrow unwrapped a list of one path):
    ``get_schema_from_dataset_url(['file:///data/ds'])`` reads the dataset's schema."""
    import pyarrow.fs as pafs

    if isinstance(paths, (list, tuple)) and len(paths) == 1 and isinstance(paths[0], str):
        if filesystem.get_file_info(paths[0]).type == pafs.FileType.Directory:
            return paths[0]
    return paths


def resolve_dataset_url(url_or_urls: Any, hdfs_driver: str = "libhdfs3", storage_options: Optional[dict] = None,
                        filesystem: Any = None) -> tuple[Any, Any]:
    """``(filesystem, path or list of paths)`` for a dataset URL or a list of file URLs, as ``make_reader``
    resolves them (:func:`petastorm.fs_utils.get_filesystem_and_path_or_paths`)."""
    from petastorm.fs_utils import get_filesystem_and_path_or_paths

    return get_filesystem_and_path_or_paths(url_or_urls, hdfs_driver=hdfs_driver,
                                            storage_options=storage_options, filesystem=filesystem)


def infer_or_load_unischema(dataset: Any) -> Any:
    """The stored Unischema when the dataset has one, else one inferred from the Arrow schema.

    A stored schema that is refused (unsafe or corrupt) raises; it is never silently replaced.
    """
    filesystem, path = dataset_location(dataset)
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
    filesystem, path = dataset_location(dataset)
    return dataset_row_groups(filesystem, path)
