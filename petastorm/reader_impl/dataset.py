"""Dataset stage: discover the Parquet files, their row groups and partitions, and the schema.

url(s) -> fs -> **dataset** -> plan. :func:`open_dataset` returns a :class:`DatasetInfo`: the filesystem,
every row group in a stable dataset order (sorted relative paths, then row-group index) with its row count
and Hive partition values, the Arrow schema, the Petastorm metadata and the Unischema (stored, or inferred
from the Arrow schema). Footers are read in parallel threads (I/O bound, pyarrow releases the GIL).
"""
from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Union

import numpy as np

from petastorm.errors import (
    DatasetNotFoundError,
    PetastormDatasetError,
    PetastormError,
    PetastormFilesystemUnavailableError,
    PetastormMetadataError,
)
from petastorm.reader_impl.work_item import RowGroupInfo  # noqa: F401 - defined there, light for workers
from petastorm.unischema import Unischema

__all__ = ["RowGroupInfo", "DatasetInfo", "open_dataset", "describe_url", "read_footer"]

_FOOTER_THREADS = 8
UNKNOWN_ROWS = -1
#: Row count the planner sees for a row group whose count is not read yet: large enough that the
#: item's row slice ``[0, PLAN_ALL_ROWS)`` covers the whole row group (the worker clips it).
PLAN_ALL_ROWS = 1 << 40


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
        """Row count of each row group, in dataset order: shape ``(len(row_groups),)``, int64
        (``UNKNOWN_ROWS`` where the footer was not read)."""
        return np.fromiter((rg.num_rows for rg in self.row_groups), dtype=np.int64, count=len(self.row_groups))

    def ensure_row_counts(self) -> None:
        """Read the footers of files whose row counts are unknown (in parallel threads)."""
        missing = sorted({rg.path for rg in self.row_groups if rg.num_rows == UNKNOWN_ROWS})
        if not missing:
            return
        footers = dict(zip(missing, _read_footers(self.filesystem, missing)))
        updated = []
        for rg in self.row_groups:
            if rg.num_rows == UNKNOWN_ROWS:
                md = footers[rg.path]
                if rg.row_group >= md.num_row_groups:
                    raise PetastormDatasetError(
                        f"the Petastorm metadata of the dataset lists {rg.row_group + 1}+ row groups for "
                        f"{rg.path!r}, which has {md.num_row_groups}: regenerate it with "
                        f"petastorm-generate-metadata")
                rg = RowGroupInfo(rg.path, rg.relative_path, rg.row_group, md.row_group(rg.row_group).num_rows,
                                  rg.partition, rg.file_size)
            updated.append(rg)
        self.row_groups = updated

    def fingerprint(self) -> str:
        """A short stable hash of the files (relative paths) and their row groups."""
        cached = self.__dict__.get("_fingerprint")
        if cached is not None and cached[0] == len(self.row_groups):
            return cached[1]
        h = hashlib.sha256()
        # same text as json.dumps([[rg.relative_path, rg.row_group], ...]); no circularity check: ~25% faster
        h.update(json.dumps([[rg[1], rg[2]] for rg in self.row_groups], check_circular=False).encode())
        self.__dict__["_fingerprint"] = (len(self.row_groups), h.hexdigest()[:24])
        return self.__dict__["_fingerprint"][1]

    def cache_namespace(self) -> str:
        """Prefix of the local disk cache's keys: :meth:`fingerprint` plus a hash of where the files are (the
        filesystem's type and the files' full paths), so that two datasets laid out alike (``train/`` and ``val/``
        with the same file names and row groups) never share entries of one ``cache_location`` (0.12.1 put the
        dataset's URL in its keys)."""
        where = sorted({rg.path for rg in self.row_groups})
        digest = hashlib.sha256(f"{type(self.filesystem).__name__}\n{where}".encode()).hexdigest()[:16]
        return f"{self.fingerprint()}-{digest}"

    @property
    def has_petastorm_metadata(self) -> bool:
        """True when the dataset carries a stored Unischema."""
        return self.stored_schema is not None


def describe_url(url: Any) -> str:
    """A dataset URL, or a short description of a list of file URLs, for messages."""
    return url if isinstance(url, str) else f"{len(url)} file URLs ({url[0]!r}...)"


def _list_files(fs: Any, root: str, url: Any) -> list:
    """Sorted paths of the non-empty Parquet files under ``root``: entries with a hidden or metadata
    component (``.`` or ``_`` prefix, as Spark and pyarrow skip them) and ``.crc`` files left out.

    One recursive ``get_file_info`` call (as fast as ``pyarrow.dataset`` discovery, and without importing
    ``pyarrow.dataset``, which pulls in pandas: +0.3 s and +60 MB in every process).
    """
    import pyarrow as pa
    import pyarrow.fs as pafs

    if _lists_without_sizes(fs):
        try:
            return _walk_local(root)
        except OSError as e:
            raise PetastormDatasetError(f"cannot list the files of {describe_url(url)!r}: {e}") from e
    try:
        infos = fs.get_file_info(pafs.FileSelector(root, recursive=True))
    except (OSError, pa.ArrowException) as e:
        raise PetastormDatasetError(f"cannot list the files of {describe_url(url)!r}: {e}") from e
    prefix = root.rstrip("/") + "/"
    plen = len(prefix)
    # On a local filesystem directories have no size, so ``size`` alone tells non-empty files (FileInfo.is_file
    # builds a FileType enum per entry, which adds up over thousands of files).
    local = isinstance(fs, pafs.LocalFileSystem)
    files = []
    for info in infos:
        if not info.size or not (local or info.is_file):
            continue
        path = info.path
        rel = path[plen:] if path.startswith(prefix) else posixpath.relpath(path, root)
        if rel[:1] in "._" or "/." in rel or "/_" in rel or rel.endswith(".crc"):
            continue
        files.append(path)
    files.sort()
    return files


def _walk_local(root: str) -> list:
    """:func:`_list_files` on a local disk, with ``os.scandir``: the entries' types come with the directory
    listing, so no file is ``stat``-ed (pyarrow's listing stats each one: several times slower on thousands
    of files; figures in ``benchmarks/README.md``). Empty files are not told apart here: :func:`open_dataset`
    drops them (:func:`_empty_files`)."""
    files = []
    stack = [root.rstrip("/") or "/"]
    while stack:
        directory = stack.pop()
        with os.scandir(directory) as entries:
            for entry in entries:
                name = entry.name
                if name[:1] in "._" or name.endswith(".crc"):
                    continue
                if entry.is_dir():
                    stack.append(entry.path)
                elif entry.is_file():
                    files.append(entry.path)
    files.sort()
    return files


def _lists_without_sizes(fs: Any) -> bool:
    """Whether :func:`_list_files` lists ``fs`` with :func:`_walk_local` (local, POSIX paths)."""
    import pyarrow.fs as pafs

    return isinstance(fs, pafs.LocalFileSystem) and os.sep == "/"


def _empty_files(paths: list) -> set:
    """Those of ``paths`` that are empty files (one ``stat`` each)."""
    empty = set()
    for p in paths:
        try:
            if not os.stat(p).st_size:
                empty.add(p)
        except OSError:
            pass  # gone meanwhile: reading it names it
    return empty


def _ensure_listed_files_exist(counts: dict, rels: list, root: str) -> None:
    """Raise if a file that the Petastorm metadata lists (``dataset-toolkit.num_row_groups_per_file.v1``)
    is not among the dataset's files: reading on would silently lose its rows."""
    present = set(rels)
    missing = sorted(rel for rel, n in counts.items() if rel not in present and n)
    if missing:
        shown = ", ".join(repr(posixpath.join(root, rel)) for rel in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise PetastormDatasetError(
            f"{len(missing)} file(s) listed in the Petastorm metadata of {root!r} are missing: {shown}{more}. "
            f"Reading on would silently skip their rows: restore the files, or regenerate the metadata with "
            f"petastorm-generate-metadata if they were removed on purpose")


def _parse_partition(relative_path: str) -> tuple:
    if "=" not in relative_path:
        return ()
    keys = []
    for part in relative_path.split("/")[:-1]:
        if "=" in part:
            key, _, value = part.partition("=")
            keys.append((key, None if value == HIVE_NULL else _unescape(value)))
    return tuple(keys)


def _unescape(value: str) -> str:
    from urllib.parse import unquote

    return unquote(value)


def _read_footers(fs: Any, paths: list) -> list:
    """Parquet footers (``FileMetaData``) of ``paths``, read in parallel threads."""
    if len(paths) == 1:
        return [read_footer(fs, paths[0])]
    with ThreadPoolExecutor(max_workers=min(_FOOTER_THREADS, len(paths))) as ex:
        return list(ex.map(lambda p: read_footer(fs, p), paths))


def read_footer(fs: Any, path: str) -> Any:
    """The Parquet footer (``pyarrow.parquet.FileMetaData``) of ``path``; a file that is not Parquet is a
    :class:`~petastorm.errors.PetastormDatasetError` naming it."""
    import pyarrow.parquet as pq

    try:
        with fs.open_input_file(path) as f:
            return pq.ParquetFile(f).metadata
    except Exception as e:  # a corrupt or truncated file: name it
        raise PetastormDatasetError(f"cannot read the Parquet footer of {path!r}: {e}") from e


def open_dataset(url_or_urls: Union[str, Sequence[str]], filesystem: Any = None, storage_options: Optional[dict] = None,
                 hdfs_driver: str = "libhdfs3") -> DatasetInfo:
    """Discover a dataset.

    Parameters
    ----------
    url_or_urls : str or list of str
        A dataset directory URL, a single file URL, or a list of Parquet file URLs.
    filesystem : pyarrow.fs.FileSystem or fsspec filesystem, optional
    storage_options : dict, optional
        fsspec-style options (for example S3 credentials and ``endpoint_url``).
    hdfs_driver : str

    Raises
    ------
    PetastormDatasetError
        The path does not exist, holds no Parquet files, or a file is not valid Parquet (names the file).
    """
    import pyarrow.fs as pafs

    from petastorm.fs_utils import get_filesystem_and_path_or_paths

    fs, path_or_paths = get_filesystem_and_path_or_paths(
        list(url_or_urls) if isinstance(url_or_urls, (list, tuple)) else url_or_urls,
        hdfs_driver=hdfs_driver, storage_options=storage_options, filesystem=filesystem)
    meta = _MetadataLoader(fs, None, start=False)  # no metadata file for a list of file URLs or one file
    if isinstance(path_or_paths, str):
        try:
            info = fs.get_file_info(path_or_paths)
        except PetastormError:
            raise
        except Exception as e:  # noqa: BLE001 - e.g. botocore's NoCredentialsError, which is no OSError
            raise PetastormFilesystemUnavailableError(
                f"cannot reach {describe_url(url_or_urls)!r}: {type(e).__name__}: {e}") from e
        if info.type == pafs.FileType.NotFound:
            raise DatasetNotFoundError(f"Passed non-file path: {path_or_paths}: dataset path "
                                       f"{describe_url(url_or_urls)!r} does not exist")
        if info.type == pafs.FileType.Directory:
            root: Optional[str] = path_or_paths.rstrip("/") or "/"
            # The metadata file is read and parsed in a thread while the (GIL-free) listing runs.
            meta = _MetadataLoader(fs, root)
            try:
                listed = [(p, -1) for p in _list_files(fs, root, url_or_urls)]
            except BaseException:
                meta.join()
                raise
            if not listed:
                meta.join()
                raise PetastormDatasetError(
                    f"no Parquet files found in {describe_url(url_or_urls)!r} (the directory is empty or holds "
                    f"only metadata/hidden files)")
        else:
            root, listed = None, [(path_or_paths, info.size)]
    else:
        root = None
        listed = []
        for p in path_or_paths:
            info = fs.get_file_info(p)
            if info.type != pafs.FileType.File:
                raise DatasetNotFoundError(f"Passed non-file path: {p}: Parquet file {p!r} of the URL list does "
                                           f"not exist")
            listed.append((p, info.size))
    files = [p for p, _ in listed]
    sizes = dict(listed)
    metadata = meta.get("metadata")

    if root:
        prefix = root.rstrip("/") + "/"
        plen = len(prefix)
        rels = [p[plen:] if p.startswith(prefix) else posixpath.relpath(p, root) for p in files]
    else:
        rels = [posixpath.basename(p) for p in files]
    partitioned = any("=" in rel for rel in rels)
    make = tuple.__new__  # RowGroupInfo(...) runs NamedTuple's Python-level __new__ per row group

    # Row groups per file: from the Petastorm metadata when it covers every file (no footer read: fast
    # start on thousands of files; row counts stay unknown until a plan needs them), else from footers.
    counts = meta.get("counts")
    if root and _lists_without_sizes(fs):  # drop empty files, as pyarrow's listing did: stat the files the
        # metadata does not vouch for (all of them without it: their footers are read anyway)
        empty = _empty_files(files if counts is None else [p for p, rel in zip(files, rels) if rel not in counts])
        if empty:
            files, rels = [p for p in files if p not in empty], [r for p, r in zip(files, rels) if p not in empty]
            if not files:
                raise PetastormDatasetError(
                    f"no Parquet files found in {describe_url(url_or_urls)!r} (the directory is empty or holds "
                    f"only metadata/hidden files)")
    if counts is not None and root:
        _ensure_listed_files_exist(counts, rels, root)
    if counts is not None and all(rel in counts for rel in rels):
        row_groups = []
        for p, rel in zip(files, rels):
            partition = _parse_partition(rel) if partitioned else ()
            size = sizes[p]
            n = counts[rel]
            if n == 1:
                row_groups.append(make(RowGroupInfo, (p, rel, 0, UNKNOWN_ROWS, partition, size)))
            else:
                row_groups.extend(make(RowGroupInfo, (p, rel, i, UNKNOWN_ROWS, partition, size)) for i in range(n))
        arrow_schema = read_footer(fs, files[0]).schema.to_arrow_schema()
    else:
        footers = _read_footers(fs, files)
        row_groups = []
        for path, rel, md in zip(files, rels, footers):
            partition = _parse_partition(rel) if partitioned else ()
            for i in range(md.num_row_groups):
                row_groups.append(RowGroupInfo(path, rel, i, md.row_group(i).num_rows, partition, sizes[path]))
        arrow_schema = footers[0].schema.to_arrow_schema()
    # Files with no row group (an empty dataset written on purpose) are a valid, empty dataset.

    partition_names = list(dict.fromkeys(k for rg in row_groups for k, _ in rg.partition)) if partitioned else []
    stored_schema = meta.get("schema")
    file_columns = set(arrow_schema.names)
    arrow_schema = _with_partitions(arrow_schema, partition_names, row_groups, stored_schema)
    if stored_schema is not None:
        schema = stored_schema
    else:  # inferred from the Arrow schema
        # Hive partition keys first, then the files' columns: 0.12.1's field order for a store without a
        # stored schema (recorded: the rows, batches and reader.schema of a store partitioned on 'grp' start
        # with 'grp'; user code unpacks rows by position)
        first = [n for n in partition_names if n not in file_columns]
        import pyarrow as pa

        ordered = arrow_schema if not first else pa.schema(
            [arrow_schema.field(n) for n in first] + [f for f in arrow_schema if f.name not in first])
        schema = Unischema.from_arrow_schema(ordered, omit_unsupported_fields=True)
    return DatasetInfo(fs, root, url_or_urls, files, row_groups, arrow_schema, partition_names, metadata,
                       stored_schema, schema)


def _with_partitions(arrow_schema: Any, partition_names: list, row_groups: list,
                     stored_schema: Optional[Unischema] = None) -> Any:
    """The files' Arrow schema plus the Hive partition columns: typed by the stored Unischema when it
    has the field (a string partition stays a string, '007' included), else as pyarrow's Hive discovery
    types them (int64 when every value is an integer, else string)."""
    import pyarrow as pa

    from petastorm.arrow_types import arrow_type_for_field

    for name in partition_names:
        if name in arrow_schema.names:
            continue
        if stored_schema is not None and name in stored_schema.fields:
            typ = arrow_type_for_field(stored_schema.fields[name])
            arrow_schema = arrow_schema.append(pa.field(name, typ, nullable=True))
            continue
        values = {dict(rg.partition).get(name) for rg in row_groups}
        typ = pa.int64() if all(_is_int(v) for v in values if v is not None) else pa.string()
        # nullable only where a directory holds the null partition value: 0.12.1's inferred field is not
        # nullable (recorded), and a partition key without nulls never reads as None
        arrow_schema = arrow_schema.append(pa.field(name, typ, nullable=None in values))
    return arrow_schema


_INT_RE = re.compile(r"-?[0-9]+")
#: Directory value Hive, Spark and pyarrow write for a null partition value.
HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"


def _is_int(value: Optional[str]) -> bool:
    """Whether a partition value reads as an integer the way pyarrow's Hive discovery types it."""
    return value is not None and _INT_RE.fullmatch(value) is not None


class _MetadataLoader:
    """The dataset's Petastorm metadata (key-value dict, row groups per file, stored Unischema), loaded in a
    thread (``start=True``) or on the caller's thread; :meth:`get` raises an error where the sequential code
    would have raised it (later steps are not attempted after a failed one)."""

    def __init__(self, fs: Any, root: Optional[str], start: bool = True) -> None:
        self._fs, self._root = fs, root
        self._results: dict = {}
        self._thread: Optional[threading.Thread] = None
        if start:
            self._thread = threading.Thread(target=self._load, name="petastorm-metadata", daemon=True)
            self._thread.start()

    def _load(self) -> None:
        results = self._results
        try:
            results["metadata"] = metadata = _read_metadata(self._fs, self._root)
            results["counts"] = _load_row_group_counts(metadata, self._root)
            results["schema"] = _load_stored_schema(metadata, self._root)
        except BaseException as e:  # re-raised by get() on the caller's thread
            results["error"] = e

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        elif not self._results:
            self._load()

    def get(self, step: str) -> Any:
        self.join()
        if step in self._results:
            return self._results[step]
        raise self._results["error"]


def _read_metadata(fs: Any, root: Optional[str]) -> dict:
    if root is None:
        return {}
    from petastorm.etl.dataset_metadata import read_dataset_metadata

    return read_dataset_metadata(fs, root)


def _load_row_group_counts(metadata: dict, source: str) -> Optional[dict]:
    if not metadata:
        return None
    from petastorm.etl.dataset_metadata import load_num_row_groups_per_file

    return load_num_row_groups_per_file(metadata, source)


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
