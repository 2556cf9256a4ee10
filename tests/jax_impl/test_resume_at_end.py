"""A JAX iterator resumed from a state saved at the very end of its pass must do what the torch loaders do there
(BatchedDataLoader, recorded side by side below), not yield nothing silently:

- a state saved after the loop over the iterator ended (``StopIteration`` seen) continues with the next pass:
  the reader is reset and its next epoch is served in full, in the order BatchedDataLoader's next pass gives;
- a state saved after the last batch but before ``StopIteration`` resumes that pass, which has nothing left:
  an empty pass, as BatchedDataLoader's resumed pass (documented in ``JaxIterator.load_state_dict``)."""
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from petastorm import make_batch_reader
from petastorm.errors import PetastormStateError
from petastorm.jax import make_jax_iterator
from petastorm.pytorch import BatchedDataLoader

ROWS = 400
BATCH = 64


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume_at_end")
    pq.write_table(pa.table({"id": np.arange(ROWS, dtype=np.int32)}), str(root / "part-0.parquet"),
                   row_group_size=50)
    return "file://" + str(root)


def _reader(url, **kw):
    return make_batch_reader(url, num_epochs=1, workers_count=1, seed=7, **kw)


def _ids(batches):
    return [int(i) for b in batches for i in np.asarray(b["id"])]


def _state_at_end(url, make, after_loop):
    with _reader(url) as reader:
        loader = make(reader)
        if after_loop:
            first = _ids(loader)
        else:  # every batch taken, StopIteration not seen yet
            it = iter(loader)
            first = _ids(next(it) for _ in range(-(-ROWS // BATCH)))
        state = loader.state_dict()
        if hasattr(loader, "close"):
            loader.close()
    return first, state


def _resumed(url, make, state):
    with _reader(url) as reader:
        loader = make(reader)
        loader.load_state_dict(state)
        got = _ids(loader)
        if hasattr(loader, "close"):
            loader.close()
    return got


def _jax(reader):
    return make_jax_iterator(reader, batch_size=BATCH)


def _torch(reader):
    return BatchedDataLoader(reader, batch_size=BATCH)


def test_a_state_saved_after_the_loop_ended_resumes_with_the_next_pass_as_torch_does(dataset):
    first, state = _state_at_end(dataset, _jax, after_loop=True)
    assert sorted(first) == list(range(ROWS))
    got = _resumed(dataset, _jax, state)
    assert sorted(got) == list(range(ROWS)), f"{len(got)} rows after the resume, not a full pass"
    torch_first, torch_state = _state_at_end(dataset, _torch, after_loop=True)
    assert torch_first == first
    assert got == _resumed(dataset, _torch, torch_state)  # the reader's next epoch, in the same order


def test_a_state_saved_after_the_last_batch_but_before_the_end_resumes_an_empty_pass_as_torch_does(dataset):
    _, state = _state_at_end(dataset, _jax, after_loop=False)
    assert _resumed(dataset, _jax, state) == []
    _, torch_state = _state_at_end(dataset, _torch, after_loop=False)
    assert _resumed(dataset, _torch, torch_state) == []


def test_the_next_pass_after_a_resume_is_refused_when_the_restored_reader_still_has_rows(dataset):
    _, state = _state_at_end(dataset, _jax, after_loop=True)
    with make_batch_reader(dataset, num_epochs=2, workers_count=1, seed=7) as reader:
        it = make_jax_iterator(reader, batch_size=BATCH)
        try:
            with pytest.raises(PetastormStateError, match="num_epochs|reader|settings|options"):
                it.load_state_dict(state)
                list(it)
        finally:
            it.close()
