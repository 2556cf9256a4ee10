"""A Ctrl-C (KeyboardInterrupt) inside a loader's next() while a batch is being converted or collated: the
batch is not served and is not the pass's error, so a state taken then resumes exactly (found by the review of
the issue-11 changes: the chunk's rows were lost, or state_dict() refused)."""
from __future__ import annotations

import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from petastorm import make_batch_reader

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


def test_ctrl_c_while_a_batch_is_converted_then_checkpoint_loses_no_rows(tmp_path):
    seen = _ctrl_c_then_resume(_ids_dataset(tmp_path), "BatchedDataLoader", "convert_chunk", 2)
    assert sorted(seen) == list(range(_IDS))


def test_ctrl_c_while_a_row_batch_is_collated_then_checkpoint_resumes_exactly(tmp_path):
    seen = _ctrl_c_then_resume(_ids_dataset(tmp_path), "DataLoader", "_one", 5)
    assert sorted(seen) == list(range(_IDS))


# --- mapped reads re-open the file by path, under the footer parsed from the file first opened ----------------


def test_closing_a_pipeline_whose_prefetch_thread_never_started_raises_nothing():
    # a Ctrl-C inside Thread.start(): close() in the loader's cleanup joined the unstarted thread and replaced the
    # KeyboardInterrupt with "RuntimeError: cannot join thread before it is started"
    import threading

    from petastorm.adapters import BatchPipeline
    from tests.adapters._list_reader import ListReader, make_chunks

    pipeline = BatchPipeline(ListReader(make_chunks([10])), 4, prefetch=2)
    pipeline._thread = threading.Thread(target=lambda: None)  # private: the state right after a failed start()
    pipeline.close()
    assert pipeline._thread.ident is None
