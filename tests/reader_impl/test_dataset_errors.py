"""A store the readers cannot open (reader_impl.dataset): a missing path, no Parquet files, a corrupt or
truncated footer; the error names the path or the file, whatever the pool."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from petastorm import make_batch_reader, make_reader
from petastorm.errors import PetastormDatasetError, PetastormError


def test_missing_path(tmp_path):
    with pytest.raises(PetastormError, match="does not exist"):
        make_reader("file://" + str(tmp_path / "nothing_here"))


def test_empty_directory(tmp_path):
    with pytest.raises(PetastormError, match="no Parquet files"):
        make_batch_reader("file://" + str(tmp_path))


def test_directory_without_parquet_files(tmp_path):
    (tmp_path / "_SUCCESS").write_text("")
    (tmp_path / ".hidden").write_text("x")
    with pytest.raises(PetastormError, match="no Parquet files"):
        make_batch_reader("file://" + str(tmp_path))


POOLS = ["dummy", "thread", "process"]


@pytest.mark.parametrize("pool", POOLS)
def test_corrupt_footer_is_named_when_the_reader_is_made(tmp_path, pool):
    """Footers are read in the calling process when the reader is made, whatever the pool: the error
    comes from make_batch_reader itself (no worker is involved; the worker path is tested by
    test_corrupt_data_page_is_named_by_the_worker_pool in test_worker_corrupt_pages.py)."""
    pq.write_table(pa.table({"x": list(range(10))}), str(tmp_path / "good.parquet"))
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 this is not parquet PAR1")
    with pytest.raises(PetastormDatasetError, match=r"bad\.parquet"):
        make_batch_reader("file://" + str(tmp_path), reader_pool_type=pool, workers_count=1)


@pytest.mark.parametrize("pool", POOLS)
def test_truncated_parquet_file_is_named(tmp_path, pool):
    path = str(tmp_path / "trunc.parquet")
    pq.write_table(pa.table({"x": list(range(1000))}), path)
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])
    with pytest.raises(PetastormDatasetError, match=r"trunc\.parquet"):
        make_batch_reader("file://" + str(tmp_path), reader_pool_type=pool, workers_count=1)
