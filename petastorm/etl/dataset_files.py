"""The data files of a dataset directory, in the order every petastorm module numbers them.

Files are sorted by their relative path as a plain string (``'p=1.5/x' < 'p=1/x'``, as the original
orders them); names starting with ``_`` or ``.`` anywhere in the path and ``.crc`` files are not data.
Re-exported by :mod:`petastorm.etl.dataset_metadata`, where the original had these names.
"""
from __future__ import annotations

import posixpath
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple, Optional

from petastorm.errors import PetastormMetadataGenerationError

__all__ = ["RowGroupPiece", "list_data_files", "count_row_groups_per_file", "path_sort_key", "HIVE_DIR",
           "hive_partition_keys"]


class RowGroupPiece(NamedTuple):
    """One row group of a dataset, as :func:`load_row_groups` lists them.

    ``path`` is the file's path on the dataset's filesystem, ``row_group`` the index of the row group in
    the file, ``partition_keys`` the Hive partition ``(name, value)`` pairs of the file's directories.
    """

    path: str
    row_group: int
    partition_keys: tuple


def path_sort_key(relative_path: str) -> str:
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
    return sorted(rels, key=path_sort_key)


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


#: A Hive partition directory name, ``name=value`` (groups: name, value).
HIVE_DIR = re.compile(r"^([^=/]+)=([^/]*)$")


def hive_partition_keys(relative_path: str) -> tuple:
    """The Hive partition ``(name, value)`` pairs (str, str) of the directories of a relative file path,
    outermost first (``'a=1/b=x/f.parquet'`` -> ``(('a', '1'), ('b', 'x'))``)."""
    return tuple(m.groups() for m in (HIVE_DIR.match(p) for p in relative_path.split("/")[:-1]) if m)
