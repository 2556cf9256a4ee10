"""Defects found by the review of the issue-11 changes (fe60c6d..HEAD), each as a strict xfail test.

Each test shows what a user would notice; it turns into a pass (and then strict-xfail fails) when the defect is
fixed, so the fix must also drop the marker.
"""
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


@pytest.mark.xfail(strict=True, reason=(
    "worker._read_row_group raises inside `with mapped_row_group_file(...)`: the traceback's frames hold the "
    "ParquetFile over the map, so mapping.close() hits BufferError and the map and its dup'ed fd stay open as "
    "long as the error lives (a DataLoader keeps it for its lifetime), after stop(); join()"))
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
