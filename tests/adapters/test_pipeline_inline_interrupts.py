"""A Ctrl-C inside ``next()`` of a loader that cuts its batches in the consumer's thread (no prefetch thread:
``BatchedDataLoader`` on the CPU over a batch reader with a thread pool): while the reader is asked, it is the
caller's interruption (a state taken then resumes exactly, and the pass goes on); inside the batching, the pass's
error (``state_dict()`` refuses: never a silent loss)."""
from __future__ import annotations

import pickle
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from petastorm import make_batch_reader
from petastorm.errors import PetastormStateError
from petastorm.pytorch import BatchedDataLoader

_IDS = 1000


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    root = tmp_path_factory.mktemp("inline_ki")
    pq.write_table(pa.table({"id": np.arange(_IDS)}), str(root / "ids.parquet"), row_group_size=100)
    return "file://" + str(root)


def _loader(url):
    reader = make_batch_reader(url, num_epochs=1, reader_pool_type="thread", workers_count=2, seed=7,
                               shuffle_row_groups=True)
    loader = BatchedDataLoader(reader, batch_size=16)
    return loader


def _interrupted_pass(loader, function, nth):
    """Iterate ``loader`` with a KeyboardInterrupt raised in the ``nth`` call of ``function`` (a deterministic
    SIGINT there); the rows served before it."""
    calls, seen = [0], []

    def tracer(frame, event, arg):
        if event == "call" and frame.f_code.co_name == function:
            calls[0] += 1
            if calls[0] == nth:
                raise KeyboardInterrupt
        return tracer if event == "call" else None

    sys.settrace(tracer)
    try:
        with pytest.raises(KeyboardInterrupt):
            for batch in loader:
                seen += batch["id"].tolist()
    finally:
        sys.settrace(None)
    return seen


def test_ctrl_c_while_the_reader_is_asked_then_checkpoint_resumes_exactly(url):
    loader = _loader(url)
    try:
        seen = _interrupted_pass(loader, "outputs", 3)  # inside the reader's next(), a few row groups in
        assert loader._current._thread is None and 0 < len(seen) < _IDS
        state = pickle.loads(pickle.dumps(loader.state_dict()))
    finally:
        loader.reader.stop()
        loader.reader.join()
    resumed = _loader(url)
    resumed.load_state_dict(state)
    with resumed:
        seen += [i for b in resumed for i in b["id"].tolist()]
    assert sorted(seen) == list(range(_IDS))


def test_ctrl_c_inside_the_batching_is_the_passs_error(url):
    loader = _loader(url)
    try:
        _interrupted_pass(loader, "_take_pending", 3)
        with pytest.raises(PetastormStateError, match="KeyboardInterrupt"):
            loader.state_dict()
    finally:
        loader.reader.stop()
        loader.reader.join()
