"""Publishing a written dataset: check the target, then move the finished temporary directory into place.

On filesystems that rename directories (local disk, HDFS) publishing is one rename: a reader sees the old
dataset or the new one, never a half-written one (with ``overwrite``, the target is missing for the instant
between moving the old dataset aside and renaming the new one in). Writers racing to one target take each
step another writer made fail again, from a fresh look at the target (see :func:`_publish_by_rename`). On object stores the files are moved in, data files
first and ``_common_metadata`` last, so no valid-looking dataset exists before the end.
"""
from __future__ import annotations

import os
import posixpath
import shutil
import uuid
from typing import Any, Optional

import pyarrow.fs as pafs

from petastorm.errors import PetastormArgumentError, PetastormWriteError

__all__ = ["resolve_target", "check_target", "publish", "delete_quietly", "COMMON_METADATA"]

COMMON_METADATA = "_common_metadata"
_COMMON_METADATA = COMMON_METADATA
_OLD_MARK = ".__petastorm_old_"


def _resolve(dataset_url: str, storage_options: Optional[dict], filesystem: Any) -> tuple[pafs.FileSystem, str]:
    if not isinstance(dataset_url, str) or not dataset_url:
        raise PetastormArgumentError(f"dataset_url must be a non-empty string, got {dataset_url!r}")
    from petastorm.fs_utils import get_filesystem_and_path_or_paths

    return get_filesystem_and_path_or_paths(dataset_url, storage_options=storage_options, filesystem=filesystem)


def _renames_directories(fs: pafs.FileSystem) -> bool:
    """Whether a directory rename is one atomic operation on this filesystem."""
    return isinstance(fs, (pafs.LocalFileSystem, pafs.HadoopFileSystem))


def _is_nonempty_dir(fs: pafs.FileSystem, path: str, dataset_url: str) -> bool:
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.File:
        raise PetastormWriteError(f"cannot write a dataset to {dataset_url!r}: it is a file")
    if info.type != pafs.FileType.Directory:
        return False
    return bool(fs.get_file_info(pafs.FileSelector(path, recursive=False)))


def _check_target(fs: pafs.FileSystem, path: str, dataset_url: str, overwrite: bool) -> None:
    if not overwrite and _is_nonempty_dir(fs, path, dataset_url):
        raise PetastormWriteError(f"cannot write a dataset to {dataset_url!r}: the directory exists and is not "
                                  f"empty; pass overwrite=True to replace it (the old data is replaced only once "
                                  f"the new dataset is complete)")
    if overwrite and _is_nonempty_dir(fs, path, dataset_url):
        _check_replaceable(fs, path, dataset_url)
    if not _renames_directories(fs) and "/" not in path.strip("/"):
        raise PetastormArgumentError(f"dataset_url {dataset_url!r}: write the dataset to a directory inside the "
                                     f"bucket, not to the bucket itself")


_DATASET_MARKERS = (_COMMON_METADATA, "_metadata", "_SUCCESS")


def _check_replaceable(fs: pafs.FileSystem, path: str, dataset_url: str) -> None:
    """Refuse ``overwrite=True`` on a directory that does not look like a dataset (a mistyped path such as a
    home or project directory would otherwise be deleted): it must hold ``_common_metadata``, ``_metadata``,
    ``_SUCCESS``, a ``*.parquet`` file or a Hive ``<field>=<value>`` directory at its top level."""
    entries = fs.get_file_info(pafs.FileSelector(path, recursive=False))
    for entry in entries:
        name = entry.base_name
        if entry.type == pafs.FileType.File and (name in _DATASET_MARKERS or name.endswith((".parquet", ".parq"))):
            return
        if entry.type == pafs.FileType.Directory and "=" in name.strip("="):
            return
    shown = sorted(e.base_name + ("/" if e.type == pafs.FileType.Directory else "") for e in entries)
    more = f" and {len(shown) - 5} more" if len(shown) > 5 else ""
    raise PetastormWriteError(f"cannot overwrite {dataset_url!r}: it does not look like a dataset (no "
                              f"_common_metadata, _metadata, *.parquet file or <field>=<value> directory; it holds "
                              f"{', '.join(shown[:5])}{more}); overwrite=True would delete it all. Delete it "
                              f"yourself or write to another path")


def _publish(fs: pafs.FileSystem, tmp_path: str, path: str, dataset_url: str, overwrite: bool,
             data_files: list[str]) -> None:
    if _renames_directories(fs):
        _publish_by_rename(fs, tmp_path, path, dataset_url, overwrite)
    else:
        _publish_by_moving_files(fs, tmp_path, path, dataset_url, overwrite, data_files)


_PUBLISH_TRIES = 20


def _target_state(fs: pafs.FileSystem, path: str, dataset_url: str) -> str:
    """``'missing'``, ``'empty'`` or ``'full'`` (a directory with entries); a file is an error."""
    try:
        return "full" if _is_nonempty_dir(fs, path, dataset_url) else (
            "empty" if fs.get_file_info(path).type == pafs.FileType.Directory else "missing")
    except FileNotFoundError:  # removed by another writer while listed
        return "missing"


def _publish_by_rename(fs: pafs.FileSystem, tmp_path: str, path: str, dataset_url: str, overwrite: bool) -> None:
    """Rename ``tmp_path`` onto ``path``, moving a dataset there aside first (``overwrite``).

    Writers publishing to one path at the same instant: each step that another writer's move or rename made
    fail (the target gone, or filled again) is taken again from a fresh look at the target, a bounded number
    of times. With ``overwrite`` they publish one after the other (the last one's dataset stays); without it
    the later ones get "filled by someone else". Every dataset this writer moved aside is deleted once it is
    superseded, or put back when this writer fails, so no ``<path>.__petastorm_old_*`` stays behind.
    """
    local = isinstance(fs, pafs.LocalFileSystem)
    rename = os.rename if local else fs.move
    aside: list[str] = []  # the datasets this writer moved away from the target, in order
    published = False
    error: Optional[OSError] = None
    try:
        for _ in range(_PUBLISH_TRIES):
            state = _target_state(fs, path, dataset_url)
            if state == "full" and not overwrite:
                raise PetastormWriteError(f"cannot publish the dataset to {dataset_url!r}: the directory was "
                                          f"filled by someone else while writing; nothing was published")
            try:
                if state == "full":
                    old_path = f"{path}{_OLD_MARK}{uuid.uuid4().hex}"
                    rename(path, old_path)
                    aside.append(old_path)
                elif state == "empty":
                    # not a recursive delete: another writer may have published there since the look
                    if local:
                        os.rmdir(path)
                    else:
                        fs.delete_dir(path)
                rename(tmp_path, path)
                published = True
                break
            except PetastormWriteError:
                raise
            except OSError as e:  # another writer moved the target away or published there: look again
                error = e
    finally:
        _settle_aside(fs, rename, path, aside, published, local)
    if not published:
        raise PetastormWriteError(f"cannot publish the dataset to {dataset_url!r}: {error}; nothing was "
                                  f"published") from error


def _settle_aside(fs: pafs.FileSystem, rename: Any, path: str, aside: list[str], published: bool,
                  local: bool) -> None:
    """Delete the datasets moved aside; when nothing was published, first put the last one back (the one the
    target held last) if the target is still free. Never raises ``OSError``."""
    if not published and aside:
        try:
            rename(aside[-1], path)
            aside = aside[:-1]
        except OSError:
            pass  # another writer published there since: the old datasets are superseded
    for old_path in aside:
        if local:
            shutil.rmtree(old_path, ignore_errors=True)
        else:
            _delete_quietly(fs, old_path)


def _publish_by_moving_files(fs: pafs.FileSystem, tmp_path: str, path: str, dataset_url: str, overwrite: bool,
                             data_files: list[str]) -> None:
    if _is_nonempty_dir(fs, path, dataset_url):
        if not overwrite:
            raise PetastormWriteError(f"cannot publish the dataset to {dataset_url!r}: the directory was filled "
                                      f"by someone else while writing; nothing was published")
        if fs.get_file_info(f"{path}/{_COMMON_METADATA}").type == pafs.FileType.File:
            fs.delete_file(f"{path}/{_COMMON_METADATA}")  # the old dataset stops looking valid first
        fs.delete_dir_contents(path, missing_dir_ok=True)
    moved: list[str] = []
    try:
        for name in data_files + [_COMMON_METADATA]:
            parent = posixpath.dirname(f"{path}/{name}")
            fs.create_dir(parent, recursive=True)
            fs.move(f"{tmp_path}/{name}", f"{path}/{name}")
            moved.append(name)
    except BaseException:
        for name in moved:
            try:
                fs.delete_file(f"{path}/{name}")
            except OSError:
                pass
        raise
    _delete_quietly(fs, tmp_path)


def _delete_quietly(fs: pafs.FileSystem, path: str) -> None:
    try:
        if fs.get_file_info(path).type == pafs.FileType.Directory:
            fs.delete_dir(path)
    except OSError:
        pass



resolve_target = _resolve
check_target = _check_target
publish = _publish
delete_quietly = _delete_quietly
