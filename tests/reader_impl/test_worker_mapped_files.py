"""Memory-mapped row-group reads (petastorm.reader_impl.worker, parquet_io.mapped_row_group_file) as the files
change or break under them: found by the review of the issue-11 changes. A failed mapped read leaves no map or
descriptor open once the reader is stopped, and a file replaced under its path during a pass is read as it was
opened (the worker maps the descriptor it opened with the footer, not the path)."""
from __future__ import annotations

import gc
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from petastorm import make_batch_reader
from petastorm.errors import PetastormDatasetError


def _open_fds(path: str) -> list:
    """File descriptors of this process open on ``path`` (Linux /proc)."""
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == path:
                out.append(fd)
        except OSError:
            pass
    return out


def _mapped(path: str) -> int:
    """Memory maps of ``path`` in this process."""
    with open("/proc/self/maps") as f:
        return sum(1 for line in f if line.rstrip().endswith(path))


def _corrupt_large_row_group(root) -> str:
    """One Parquet file whose only row group (~2.4 MB, read through a memory map) has a damaged page header."""
    rng = np.random.default_rng(0)
    blobs = [bytes(rng.integers(0, 255, 2000, dtype=np.uint8)) for _ in range(1200)]
    path = str(root / "part0.parquet")
    pq.write_table(pa.table({"id": np.arange(1200), "blob": blobs}), path, row_group_size=1200)
    chunk = pq.ParquetFile(path).metadata.row_group(0).column(1)
    with open(path, "r+b") as f:
        f.seek(chunk.data_page_offset)
        f.write(b"\xff" * 64)
    return path


def test_failed_mapped_read_leaves_no_file_open_after_stop(tmp_path):
    path = _corrupt_large_row_group(tmp_path)
    reader = make_batch_reader("file://" + str(tmp_path), num_epochs=1, workers_count=1)
    with pytest.raises(PetastormDatasetError, match="part0.parquet") as failure:
        for _ in reader:
            pass
    reader.stop()
    reader.join()
    gc.collect()
    assert failure.value is not None  # the error is still held, as a loader holds the error of its failed pass
    assert _open_fds(path) == [] and _mapped(path) == 0


# --- Ctrl-C inside a loader, then checkpoint (loader_base: "a pass left early (break, close, Ctrl-C) keeps its
# position: state_dict() describes it") ----------------------------------------------------------------------



def test_a_file_replaced_by_rename_during_a_pass_is_read_as_opened(tmp_path):
    rows = 600_000  # two row groups of 2.4 MB (float64, uncompressed): read from a memory map

    def write(path, offset):
        pq.write_table(pa.table({"x": np.arange(rows, dtype=np.float64) + offset}), str(path),
                       row_group_size=rows // 2, compression="none")

    write(tmp_path / "a.parquet", 0)
    reader = make_batch_reader("file://" + str(tmp_path), num_epochs=1, shuffle_row_groups=False,
                               reader_pool_type="dummy")
    try:
        batches = iter(reader)
        first = next(batches).x
        write(tmp_path / "a.tmp", 1_000_000)
        os.replace(tmp_path / "a.tmp", tmp_path / "a.parquet")
        second = next(batches).x
    finally:
        reader.stop()
        reader.join()
    np.testing.assert_array_equal(np.concatenate([first, second]), np.arange(rows, dtype=np.float64))
