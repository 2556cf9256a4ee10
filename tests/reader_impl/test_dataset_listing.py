"""Listing a local dataset directory without a ``stat`` per file (``dataset._walk_local``): the same files
as pyarrow's listing, hidden and metadata entries left out, empty files dropped by ``open_dataset``."""
import os

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from petastorm import make_batch_reader
from petastorm.errors import PetastormDatasetError
from petastorm.reader_impl import dataset


def _pyarrow_listing(root):
    """The listing as it was: pyarrow's recursive FileSelector, sizes read, same filters."""
    prefix = root.rstrip("/") + "/"
    out = []
    for info in pafs.LocalFileSystem().get_file_info(pafs.FileSelector(root, recursive=True)):
        if info.type != pafs.FileType.File:
            continue
        rel = info.path[len(prefix):]
        if rel[:1] in "._" or "/." in rel or "/_" in rel or rel.endswith(".crc"):
            continue
        out.append(info.path)
    return sorted(out)


def _table(i):
    return pa.table({"id": pa.array([i, i + 1], pa.int64())})


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "ds"
    for rel in ["part-0.parquet", "a=1/part-0.parquet", "a=1/b=x/part-1.parquet", "a=2/part-2.parquet",
                "no_suffix_file", ".hidden.parquet", "_SUCCESS", "a=1/_temporary/part-9.parquet",
                "a=2/.staging/part-8.parquet", "a=2/part-2.parquet.crc", "_common_metadata"]:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(_table(len(rel)), path)
    (root / "a=2" / "empty.parquet").write_bytes(b"")
    (root / "a=3").mkdir()  # an empty directory
    os.symlink(root / "a=1" / "part-0.parquet", root / "a=2" / "link.parquet")
    return str(root)


def test_the_walk_lists_what_pyarrow_lists(tree):
    assert dataset._walk_local(tree) == _pyarrow_listing(tree)
    assert dataset._walk_local(tree + "/") == _pyarrow_listing(tree)
    names = [p[len(tree) + 1:] for p in dataset._walk_local(tree)]
    assert "a=2/link.parquet" in names and "a=2/empty.parquet" in names and "no_suffix_file" in names
    assert not any(n.startswith(("_", ".")) or "/_" in n or "/." in n or n.endswith(".crc") for n in names)


def test_empty_files_are_left_out_of_the_dataset(tree):
    info = dataset.open_dataset("file://" + tree)
    rels = sorted({rg.relative_path for rg in info.row_groups})
    assert "a=2/empty.parquet" not in rels and "a=2/link.parquet" in rels
    assert len(rels) == 6
    with make_batch_reader("file://" + tree, shuffle_row_groups=False) as reader:
        assert sum(len(b.id) for b in reader) == 12


def test_a_directory_of_empty_files_only_is_an_error_naming_it(tmp_path):
    root = tmp_path / "empty_ds"
    root.mkdir()
    (root / "part-0.parquet").write_bytes(b"")
    with pytest.raises(PetastormDatasetError, match="no Parquet files found in .*empty_ds"):
        dataset.open_dataset("file://" + str(root))


def test_an_unreadable_directory_is_an_error_naming_it(tmp_path, monkeypatch):
    root = tmp_path / "locked"
    (root / "sub").mkdir(parents=True)
    pq.write_table(_table(0), root / "sub" / "part-0.parquet")
    real_scandir = os.scandir

    def scandir(path):  # as for a directory without read permission (the tests may run as root)
        if str(path).endswith("/sub"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(dataset.os, "scandir", scandir)
    with pytest.raises(PetastormDatasetError, match="cannot list the files of .*locked.*Permission denied"):
        dataset.open_dataset("file://" + str(root))


def test_a_petastorm_dataset_with_an_empty_stray_file_keeps_its_metadata_fast_path(tmp_path):
    from petastorm import make_reader, write_dataset
    from petastorm.codecs import NdarrayCodec
    from petastorm.unischema import Unischema, UnischemaField

    schema = Unischema("S", [UnischemaField("id", np.int64, (), None, False),
                             UnischemaField("m", np.float32, (2,), NdarrayCodec(), False)])
    url = "file://" + str(tmp_path / "ds")
    write_dataset(url, schema, ({"id": i, "m": np.zeros(2, np.float32)} for i in range(20)), num_files=2,
                  progress=False, workers_count=1)
    (tmp_path / "ds" / "stray.parquet").write_bytes(b"")
    info = dataset.open_dataset(url)
    assert all(rg.num_rows == dataset.UNKNOWN_ROWS for rg in info.row_groups)  # no footer was read
    with make_reader(url, shuffle_row_groups=False) as reader:
        assert sorted(int(r.id) for r in reader) == list(range(20))
