"""Row-group reads allocate from the reader's own Arrow memory pool, never changing pyarrow's default."""
import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from petastorm.errors import PetastormArgumentError
from petastorm.reader_impl.parquet_io import (
    open_input_file,
    open_parquet_file,
    open_row_group_file,
    read_memory_pool,
)
from petastorm.settings import Settings

ARROW_POOL_ENV = "PETASTORM_ARROW_POOL"


@pytest.fixture()
def parquet_path(tmp_path):
    path = str(tmp_path / "t.parquet")
    table = pa.table({"id": np.arange(5000, dtype=np.int64),
                      "blob": [bytes([i % 251]) * 700 for i in range(5000)]})
    pq.write_table(table, path, row_group_size=2000)
    return path, table


def _available(name):
    try:
        getattr(pa, f"{name}_memory_pool")()
        return True
    except (NotImplementedError, AttributeError):
        return False


@pytest.mark.parametrize("choice", ["jemalloc", "mimalloc", "system", "default", ""])
def test_reads_are_identical_whatever_the_pool_and_use_the_chosen_one(parquet_path, monkeypatch, choice):
    path, table = parquet_path
    monkeypatch.setenv(ARROW_POOL_ENV, choice)
    default_before = pa.default_memory_pool().backend_name
    pool = read_memory_pool(decode_bound=True)
    if choice == "default" or (choice and not _available(choice)):
        assert pool is None  # asked for, or a pyarrow built without that pool: the default, never an error
    elif choice:
        assert pool.backend_name == choice
    elif _available("jemalloc"):
        assert pool.backend_name == "jemalloc" and read_memory_pool(decode_bound=False) is None
    else:
        assert pool is None
    pf = open_parquet_file(open_input_file(pafs.LocalFileSystem(), path, pool), pre_buffer=False,
                           buffer_size=1 << 20, pool=pool)
    before = pool.bytes_allocated() if pool is not None else 0
    got = pf.read_row_group(1, columns=["id", "blob"], use_threads=False)
    assert got.equals(table.slice(2000, 2000))
    if pool is not None:
        assert pool.bytes_allocated() - before >= 2000 * 700, "the row group's buffers come from our pool"
    assert pa.default_memory_pool().backend_name == default_before, "the process-wide default is untouched"
    del got


def test_an_unknown_pool_name_is_an_error_naming_the_variable_and_the_value(parquet_path, monkeypatch):
    # was: silently pyarrow's default pool; now refused like every bad setting (petastorm.settings)
    monkeypatch.setenv(ARROW_POOL_ENV, "no-such-pool")
    with pytest.raises(PetastormArgumentError, match="PETASTORM_ARROW_POOL='no-such-pool'.*jemalloc"):
        read_memory_pool(decode_bound=True)
    path, table = parquet_path
    with pytest.raises(PetastormArgumentError, match="PETASTORM_ARROW_POOL"):
        open_row_group_file(pafs.LocalFileSystem(), path, pre_buffer=False, buffer_size=0, decode_bound=True)
    pf = open_parquet_file(path, pre_buffer=True, buffer_size=0)  # no choice of pool here: unaffected
    assert pf.read().equals(table)


def test_a_given_settings_object_decides_instead_of_the_environment(parquet_path, monkeypatch):
    path, table = parquet_path
    monkeypatch.setenv(ARROW_POOL_ENV, "no-such-pool")  # not read: the caller's settings decide
    assert read_memory_pool(decode_bound=True, config=Settings(arrow_pool="default")) is None
    system = read_memory_pool(decode_bound=False, config=Settings(arrow_pool="system"))
    assert system is not None and system.backend_name == "system"
    pf = open_row_group_file(pafs.LocalFileSystem(), path, pre_buffer=False, buffer_size=1 << 20,
                             decode_bound=False, config=Settings(arrow_pool="system"))
    before = system.bytes_allocated()
    got = pf.read_row_group(0, use_threads=False)
    assert got.equals(table.slice(0, 2000))
    assert system.bytes_allocated() - before >= 2000 * 700, "the chosen pool serves the read"
    del got
    pf.close(force=True)


@pytest.mark.parametrize("compression", ["none", "snappy"])
def test_decode_bound_readers_use_jemalloc_only_for_uncompressed_files(tmp_path, monkeypatch, compression):
    # jemalloc refaults the pages of the decompression buffers (2.3x the read CPU on Snappy chunks)
    monkeypatch.delenv(ARROW_POOL_ENV, raising=False)
    path = str(tmp_path / "t.parquet")
    table = pa.table({"blob": [bytes([i % 251]) * 700 for i in range(4000)]})
    pq.write_table(table, path, compression=compression)
    pf = open_row_group_file(pafs.LocalFileSystem(), path, pre_buffer=False, buffer_size=1 << 20, decode_bound=True)
    jemalloc = read_memory_pool(decode_bound=True)
    before = jemalloc.bytes_allocated() if jemalloc is not None else 0
    got = pf.read_row_group(0, use_threads=False)
    assert got.equals(table)
    if jemalloc is not None:
        grew = jemalloc.bytes_allocated() - before
        assert (grew >= 4000 * 700) == (compression == "none")
    assert read_memory_pool(decode_bound=True, compressed=True) is None
    del got
    pf.close(force=True)


def test_the_workers_open_files_with_the_readers_settings(synthetic_dataset, monkeypatch):
    # the reader takes its settings when it starts and hands them to its workers in the ReadSpec (a process
    # worker's own environment is the fork server's, possibly older)
    import petastorm.reader_impl.parquet_io as parquet_io
    from petastorm import make_reader

    seen = []
    original = parquet_io.open_row_group_file

    def recording(*args, **kwargs):
        seen.append(kwargs.get("config"))
        return original(*args, **kwargs)

    monkeypatch.setattr(parquet_io, "open_row_group_file", recording)
    monkeypatch.setenv(ARROW_POOL_ENV, "system")
    with make_reader(synthetic_dataset, reader_pool_type="dummy", schema_fields=["id"]) as reader:
        monkeypatch.setenv(ARROW_POOL_ENV, "default")  # changed after the reader started: not this reader's
        assert sorted(row.id for row in reader) == list(range(100))
    assert seen and all(isinstance(c, Settings) and c.arrow_pool == "system" for c in seen)
