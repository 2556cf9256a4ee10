"""What is left behind when a training loop leaves a make_jax_iterator early: a ``break`` out of an endless reader,
an iterator and reader dropped mid-epoch without ``close()``, the reader stopped under the loop."""
import gc
import threading
import time
import weakref

import numpy as np
import pytest

from petastorm import make_batch_reader, make_reader
from petastorm.errors import PetastormReaderError
from petastorm.jax import make_jax_iterator


def _threads_beyond(baseline, wait_s=20.0):
    """The threads alive that were not in ``baseline``, once they had ``wait_s`` seconds to end."""
    deadline = time.monotonic() + wait_s
    while True:
        extra = [t.name for t in threading.enumerate() if t not in baseline and t.is_alive()]
        if not extra or time.monotonic() > deadline:
            return extra
        gc.collect()
        time.sleep(0.05)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("make", [make_reader, make_batch_reader])
@pytest.mark.parametrize("kwargs", [{}, {"prefetch": 0}, {"shuffling_queue_capacity": 30, "seed": 0}])
def test_an_iterator_and_reader_dropped_mid_epoch_leave_no_thread_and_the_reader_is_freed(
        synthetic_dataset, make, kwargs):
    baseline = set(threading.enumerate())
    reader = make(synthetic_dataset, schema_fields=["id"], num_epochs=None, workers_count=2)
    freed = weakref.ref(reader)
    batches = make_jax_iterator(reader, batch_size=8, **kwargs)
    assert np.asarray(next(batches)["id"]).shape == (8,)
    del batches, reader
    gc.collect()
    assert _threads_beyond(baseline) == []
    assert freed() is None


@pytest.mark.timeout(120)
@pytest.mark.parametrize("prefetch", [0, 2])
def test_a_break_out_of_an_endless_reader_leaves_no_thread_once_the_with_block_ends(synthetic_dataset, prefetch):
    baseline = set(threading.enumerate())
    ids = []
    with make_batch_reader(synthetic_dataset, schema_fields=["id"], num_epochs=None, shuffle_row_groups=False,
                           workers_count=2) as reader, \
            make_jax_iterator(reader, batch_size=30, prefetch=prefetch) as batches:
        for batch in batches:
            ids += np.asarray(batch["id"]).tolist()
            if len(ids) >= 250:
                break
    assert ids == (list(range(100)) * 3)[:270]  # epochs run on, batches straddle them
    assert _threads_beyond(baseline) == []


@pytest.mark.timeout(120)
@pytest.mark.parametrize("prefetch", [0, 2])
def test_a_reader_stopped_under_the_loop_ends_it_with_an_error_not_a_hang(synthetic_dataset, prefetch):
    baseline = set(threading.enumerate())
    reader = make_batch_reader(synthetic_dataset, schema_fields=["id"], num_epochs=None, workers_count=2)
    batches = make_jax_iterator(reader, batch_size=8, prefetch=prefetch)
    next(batches)
    reader.stop()
    with pytest.raises(PetastormReaderError, match="stopped"):
        for _ in range(1000):  # an endless reader: only the stop ends the loop
            next(batches)
    batches.close()
    assert _threads_beyond(baseline) == []


def _fails_from_row_20(batch):  # a TransformSpec function of make_batch_reader (a pandas DataFrame)
    if batch["id"].iloc[0] >= 20:
        raise ValueError("bad rows from 20")
    return batch


def _fails_on_row_20(row):  # the same for make_reader (one row as a dict)
    if row["id"] >= 20:
        raise ValueError("bad rows from 20")
    return row


@pytest.mark.timeout(120)
@pytest.mark.parametrize("make, func", [(make_batch_reader, _fails_from_row_20), (make_reader, _fails_on_row_20)])
@pytest.mark.parametrize("prefetch", [0, 2])
def test_an_error_in_the_readers_transform_spec_reaches_the_loop_and_stops_everything(synthetic_dataset, make, func,
                                                                                       prefetch):
    from petastorm import TransformSpec
    from petastorm.errors import PetastormStateError

    baseline = set(threading.enumerate())
    reader = make(synthetic_dataset, schema_fields=["id"], transform_spec=TransformSpec(func), num_epochs=None,
                  shuffle_row_groups=False, workers_count=1)  # one worker: the row groups come in order
    batches = make_jax_iterator(reader, batch_size=4, prefetch=prefetch)
    ids = []
    with pytest.raises(ValueError, match="bad rows from 20"):
        for batch in batches:
            ids += np.asarray(batch["id"]).tolist()
    assert ids == list(range(20))  # every row before the failing row group, then the error: not an endless loop
    with pytest.raises(PetastormStateError, match="bad rows from 20"):
        batches.state_dict()  # no state of a failed pass (docs/jax.md: resume from one saved before the error)
    batches.close()
    assert _threads_beyond(baseline) == []
