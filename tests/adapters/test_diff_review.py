"""Defects found by the review of the issue-11 changes (fe60c6d..HEAD), each as a strict xfail test.

Each test shows what a user would notice; it turns into a pass (and then strict-xfail fails) when the defect is
fixed, so the fix must also drop the marker.
"""
from __future__ import annotations

import gc
import os
import sys

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


# --- Ctrl-C inside a loader, then checkpoint (loader_base: "a pass left early (break, close, Ctrl-C) keeps its
# position: state_dict() describes it") ----------------------------------------------------------------------

_IDS = 1000


def _ids_dataset(root) -> str:
    pq.write_table(pa.table({"id": np.arange(_IDS)}), str(root / "ids.parquet"), row_group_size=100)
    return "file://" + str(root)


def _loader(url, kind):
    from petastorm.pytorch import BatchedDataLoader, DataLoader

    reader = make_batch_reader(url, num_epochs=1, reader_pool_type="dummy", seed=7, shuffle_row_groups=True)
    if kind == "BatchedDataLoader":
        return BatchedDataLoader(reader, batch_size=16, shuffling_queue_capacity=100, seed=3)
    return DataLoader(reader, batch_size=16, shuffling_queue_capacity=100)


def _ctrl_c_at(function: str, nth: int):
    """A trace function raising KeyboardInterrupt (this thread only) when ``function`` is called the ``nth``
    time: what a SIGINT arriving at that point of the loader does, made deterministic."""
    calls = [0]

    def tracer(frame, event, arg):
        if event == "call" and frame.f_code.co_name == function:
            calls[0] += 1
            if calls[0] == nth:
                raise KeyboardInterrupt
        return None
    return tracer


def _ctrl_c_then_resume(url, kind, function, nth):
    import pickle

    loader, seen = _loader(url, kind), []
    previous = sys.gettrace()
    sys.settrace(_ctrl_c_at(function, nth))
    try:
        with pytest.raises(KeyboardInterrupt):
            for batch in loader:
                seen += np.asarray(batch["id"]).tolist()
    finally:
        sys.settrace(previous)
    try:
        state = pickle.loads(pickle.dumps(loader.state_dict()))
    finally:
        loader.reader.stop()
        loader.reader.join()
    resumed = _loader(url, kind)
    resumed.load_state_dict(state)
    for batch in resumed:
        seen += np.asarray(batch["id"]).tolist()
    resumed.reader.stop()
    resumed.reader.join()
    return seen


@pytest.mark.xfail(strict=True, reason=(
    "BatchPipeline._next_chunk pops a chunk from `ready` (_take_chunk) and converts it (convert_chunk) before "
    "making it the current chunk: a KeyboardInterrupt in between drops the chunk from what state_dict() saves"))
def test_ctrl_c_while_a_batch_is_converted_then_checkpoint_loses_no_rows(tmp_path):
    seen = _ctrl_c_then_resume(_ids_dataset(tmp_path), "BatchedDataLoader", "convert_chunk", 2)
    assert sorted(seen) == list(range(_IDS))


@pytest.mark.xfail(strict=True, reason=(
    "BatchPipeline.convert_chunk catches BaseException around the single-batch conversion and records a "
    "KeyboardInterrupt as the pass's error: state_dict() then refuses ('the pass failed with KeyboardInterrupt()') "
    "although the loader says a pass left by Ctrl-C can be checkpointed"))
def test_ctrl_c_while_a_row_batch_is_collated_then_checkpoint_resumes_exactly(tmp_path):
    seen = _ctrl_c_then_resume(_ids_dataset(tmp_path), "DataLoader", "_one", 5)
    assert sorted(seen) == list(range(_IDS))


# --- mapped reads re-open the file by path, under the footer parsed from the file first opened ----------------


@pytest.mark.xfail(strict=True, reason=(
    "worker._read_row_group maps the file by path (mapped_row_group_file opens `path` again) with the footer of "
    "the ParquetFile opened earlier: a file replaced by rename (a new version written next to it) between two "
    "row groups is then read under the old footer - rows of the new version, or a 'corrupt file' error - where "
    "reads through the open file keep reading the file opened"))
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
