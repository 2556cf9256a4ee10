"""Dataset stage: discover the Parquet files, their row groups and partitions, and the schema.

url(s) -> fs -> **dataset** -> plan. :func:`open_dataset` returns a :class:`DatasetInfo`: the filesystem,
every row group in a stable dataset order (sorted relative paths, then row-group index) with its row count
and Hive partition values, the Arrow schema, the Petastorm metadata and the Unischema (stored, or inferred
from the Arrow schema). Footers are read in parallel threads (I/O bound, pyarrow releases the GIL).
"""
from __future__ import annotations

import hashlib
import json
import posixpath
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Union

import numpy as np

from petastorm.errors import DatasetNotFoundError, PetastormDatasetError, PetastormMetadataError
from petastorm.unischema import Unischema, UnischemaField

__all__ = ["RowGroupInfo", "DatasetInfo", "open_dataset"]

_FOOTER_THREADS = 8


@dataclass(frozen=True)
class RowGroupInfo:
    """One row group of one file.

    Attributes
    ----------
    path : str
        Path of the file on the dataset's filesystem.
    relative_path : str
        Path relative to the dataset root ('/'-separated); the file name for a list of files.
    row_group : int
        Index of the row group in its file.
    num_rows : int
    partition : tuple of (str, str)
        Hive partition keys and values of the file, in directory order.
    """

    path: str
    relative_path: str
    row_group: int
    num_rows: int
    partition: tuple = ()


@dataclass
class DatasetInfo:
    """Everything the planner and the workers need to know about a dataset (no open file handles)."""

    filesystem: Any
    root: Optional[str]
    url: Union[str, list]
    files: list
    row_groups: list
    arrow_schema: Any
    partition_names: list
    metadata: dict
    stored_schema: Optional[Unischema]
    schema: Unischema

    @property
    def rows_per_group(self) -> np.ndarray:
        """Row count of each row group, in dataset order: shape ``(len(row_groups),)``, int64."""
        return np.fromiter((rg.num_rows for rg in self.row_groups), dtype=np.int64, count=len(self.row_groups))

    def fingerprint(self) -> str:
        """A short stable hash of the files, row groups and row counts."""
        h = hashlib.sha256()
        h.update(json.dumps([[rg.relative_path, rg.row_group, rg.num_rows] for rg in self.row_groups]).encode())
        return h.hexdigest()[:24]

    @property
    def has_petastorm_metadata(self) -> bool:
        """True when the dataset carries a stored Unischema."""
        return self.stored_schema is not None


def _describe(url: Any) -> str:
    return url if isinstance(url, str) else f"{len(url)} file URLs ({url[0]!r}...)"


def _is_data_file(name: str) -> bool:
    base = posixpath.basename(name)
    return not (base.startswith("_") or base.startswith(".")) and not base.endswith(".crc")


def _list_files(fs: Any, root: str, url: Any) -> list:
    import pyarrow.fs as pafs

    selector = pafs.FileSelector(root, recursive=True)
    infos = fs.get_file_info(selector)
    files = []
    for info in infos:
        if info.type != pafs.FileType.File:
            continue
        rel = posixpath.relpath(info.path, root) if root else info.path
        parts = rel.split("/")
        if any(p.startswith("_") or p.startswith(".") for p in parts[:-1] if "=" not in p):
            continue
        if _is_data_file(rel) and info.size:
            files.append(info.path)
    return sorted(files)


def _parse_partition(relative_path: str) -> tuple:
    keys = []
    for part in relative_path.split("/")[:-1]:
        if "=" in part:
            key, _, value = part.partition("=")
            keys.append((key, _unescape(value)))
    return tuple(keys)


def _unescape(value: str) -> str:
    from urllib.parse import unquote

    return unquote(value)


def _read_footer(fs: Any, path: str) -> Any:
    import pyarrow.parquet as pq

    try:
        with fs.open_input_file(path) as f:
            return pq.ParquetFile(f).metadata
    except Exception as e:  # a corrupt or truncated file: name it
        raise PetastormDatasetError(f"cannot read the Parquet footer of {path!r}: {e}") from e


def open_dataset(url_or_urls: Union[str, Sequence[str]], filesystem: Any = None, storage_options: Optional[dict] = None,
                 hdfs_driver: str = "libhdfs3", infer_schema: bool = True) -> DatasetInfo:
    """Discover a dataset.

    Parameters
    ----------
    url_or_urls : str or list of str
        A dataset directory URL, a single file URL, or a list of Parquet file URLs.
    filesystem : pyarrow.fs.FileSystem or fsspec filesystem, optional
    storage_options : dict, optional
        fsspec-style options (for example S3 credentials and ``endpoint_url``).
    hdfs_driver : str
    infer_schema : bool
        Infer a Unischema from the Arrow schema when the dataset has no stored one.

    Raises
    ------
    PetastormDatasetError
        The path does not exist, holds no Parquet files, or a file is not valid Parquet (names the file).
    """
    import pyarrow.fs as pafs

    from petastorm.fs_utils import get_filesystem_and_path_or_paths

    fs, path_or_paths = get_filesystem_and_path_or_paths(
        list(url_or_urls) if not isinstance(url_or_urls, str) else url_or_urls,
        hdfs_driver=hdfs_driver, storage_options=storage_options, filesystem=filesystem)
    if isinstance(path_or_paths, str):
        info = fs.get_file_info(path_or_paths)
        if info.type == pafs.FileType.NotFound:
            raise DatasetNotFoundError(f"Passed non-file path: {path_or_paths}: dataset path "
                                       f"{_describe(url_or_urls)!r} does not exist")
        if info.type == pafs.FileType.Directory:
            root: Optional[str] = path_or_paths.rstrip("/") or "/"
            files = _list_files(fs, root, url_or_urls)
            if not files:
                raise PetastormDatasetError(
                    f"no Parquet files found in {_describe(url_or_urls)!r} (the directory is empty or holds "
                    f"only metadata/hidden files)")
        else:
            root, files = None, [path_or_paths]
    else:
        root = None
        files = list(path_or_paths)
        for p in files:
            if fs.get_file_info(p).type != pafs.FileType.File:
                raise DatasetNotFoundError(f"Passed non-file path: {p}: Parquet file {p!r} of the URL list does "
                                           f"not exist")

    with ThreadPoolExecutor(max_workers=min(_FOOTER_THREADS, len(files))) as ex:
        footers = list(ex.map(lambda p: _read_footer(fs, p), files))

    row_groups = []
    arrow_schema = None
    for path, md in zip(files, footers):
        rel = posixpath.relpath(path, root) if root else posixpath.basename(path)
        partition = _parse_partition(rel)
        file_schema = md.schema.to_arrow_schema()
        if arrow_schema is None:
            arrow_schema = file_schema
        for i in range(md.num_row_groups):
            row_groups.append(RowGroupInfo(path, rel, i, md.row_group(i).num_rows, partition))
    if not row_groups:
        raise PetastormDatasetError(f"the Parquet files of {_describe(url_or_urls)!r} hold no row groups")

    partition_names = list(dict.fromkeys(k for rg in row_groups for k, _ in rg.partition))
    metadata = _read_metadata(fs, root)
    stored_schema = _load_stored_schema(metadata, root or _describe(url_or_urls))
    arrow_schema = _with_partitions(arrow_schema, partition_names, row_groups)
    if stored_schema is not None:
        schema = stored_schema
    elif infer_schema:
        schema = Unischema.from_arrow_schema(arrow_schema, omit_unsupported_fields=True)
    else:
        schema = Unischema("inferred_schema", [])
    return DatasetInfo(fs, root, url_or_urls, files, row_groups, arrow_schema, partition_names, metadata,
                       stored_schema, schema)


def _with_partitions(arrow_schema: Any, partition_names: list, row_groups: list) -> Any:
    import pyarrow as pa

    for name in partition_names:
        if name in arrow_schema.names:
            continue
        values = {dict(rg.partition).get(name) for rg in row_groups}
        typ = pa.int64() if all(_is_int(v) for v in values if v is not None) else pa.string()
        arrow_schema = arrow_schema.append(pa.field(name, typ, nullable=True))
    return arrow_schema


def _is_int(value: str) -> bool:
    try:
        int(value)
    except (TypeError, ValueError):
        return False
    return True


def _read_metadata(fs: Any, root: Optional[str]) -> dict:
    if root is None:
        return {}
    from petastorm.etl.dataset_metadata import read_dataset_metadata

    return read_dataset_metadata(fs, root)


def _load_stored_schema(metadata: dict, source: str) -> Optional[Unischema]:
    if not metadata:
        return None
    from petastorm.etl.dataset_metadata import load_unischema

    try:
        return load_unischema(metadata, source)
    except PetastormMetadataError:
        raise
    except Exception as e:
        raise PetastormMetadataError(f"cannot load the Petastorm schema of {source!r}: {e}") from e


def partition_value(field: Optional[UnischemaField], arrow_type: Any, value: str) -> Any:
    """Typed value of a Hive partition key for a field of the schema (or an Arrow type)."""
    if field is not None and field.codec is not None:
        try:
            return field.codec.decode(field, value)
        except Exception:
            return value
    import pyarrow as pa

    if arrow_type is not None and pa.types.is_integer(arrow_type) and _is_int(value):
        return int(value)
    return value
