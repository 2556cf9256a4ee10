"""Whole batches cut a block at a time (``Batcher.next_block``) and handed over in chunks (``BatchPipeline``
with ``convert_block``): the same batches, the same exact resume and the same errors as batch by batch."""
from __future__ import annotations

import gc
import threading
import time

import numpy as np
import pytest

from petastorm.adapters import Batcher, BatchPipeline, ReaderSource
from petastorm.adapters.column_buffer import slice_columns
from petastorm.adapters.pipeline import CHUNK_BATCHES
from tests.adapters._list_reader import ListReader, block_to_list, copy_batch, make_chunks

SIZES = [300, 7, 150, 1, 400]


def _ids(batches):
    return [b["id"].tolist() for b in batches]


def test_next_block_cuts_whole_batches_of_one_reader_batch_and_the_rest_one_by_one():
    batcher = Batcher(ReaderSource(ListReader(make_chunks(SIZES))), 32)
    blocks = []
    while True:
        got = batcher.next_block(4)
        if got is None:
            break
        blocks.append((len(got[0]["id"]), got[1]))
    # 300 rows: 4 + 4 whole batches (256 rows), then 44 rows left: one straddling batch (44 + 7 + ...), ...
    assert blocks[:2] == [(128, 4), (128, 4)]
    assert all(k == 1 or rows == 32 * k for rows, k in blocks)
    assert sum(rows for rows, _ in blocks) == sum(SIZES)
    assert max(k for _, k in blocks) == 4


@pytest.mark.parametrize("prefetch", [0, 2])
def test_chunked_batches_equal_the_batch_by_batch_ones(prefetch):
    calls = []
    reference = list(BatchPipeline(ListReader(make_chunks(SIZES)), 16, convert=copy_batch, prefetch=prefetch))
    chunked = list(BatchPipeline(ListReader(make_chunks(SIZES)), 16, convert=copy_batch, prefetch=prefetch,
                                 convert_block=block_to_list(calls)))
    assert _ids(chunked) == _ids(reference)
    assert [b["vec"].tolist() for b in chunked] == [b["vec"].tolist() for b in reference]
    assert calls and max(calls) >= 2  # the block path was taken


def test_a_chunk_holds_at_most_chunk_batches():
    calls = []
    rows = 3 * CHUNK_BATCHES * 4 + 3
    out = list(BatchPipeline(ListReader(make_chunks([rows])), 4, convert=copy_batch, prefetch=0,
                             convert_block=block_to_list(calls)))
    assert max(calls) == CHUNK_BATCHES
    assert sum(len(b["id"]) for b in out) == rows


@pytest.mark.parametrize("prefetch", [0, 1, 2])
@pytest.mark.parametrize("cut", [1, 5, 9, 17, 18, 40])
def test_a_state_taken_inside_a_chunk_resumes_exactly(prefetch, cut):
    batch_size = 16
    full = _ids(BatchPipeline(ListReader(make_chunks(SIZES)), batch_size, convert=copy_batch, prefetch=0))
    pipe = BatchPipeline(ListReader(make_chunks(SIZES)), batch_size, convert=copy_batch, prefetch=prefetch,
                         convert_block=block_to_list([]))
    head = [next(pipe)["id"].tolist() for _ in range(cut)]
    state = pipe.state_dict()
    pipe.close()
    resumed = BatchPipeline(ListReader(make_chunks(SIZES)), batch_size, convert=copy_batch, prefetch=prefetch,
                            convert_block=block_to_list([]))
    resumed.load_state_dict(state)
    assert head + _ids(resumed) == full


@pytest.mark.parametrize("prefetch", [0, 2])
def test_a_state_inside_a_block_rereads_the_reader_batch_instead_of_copying_the_batches(prefetch):
    pipe = BatchPipeline(ListReader(make_chunks([256, 256])), 16, convert=copy_batch, prefetch=prefetch,
                         convert_block=block_to_list([]))
    next(pipe)
    next(pipe)
    assert pipe.rows_held >= 256 - 32
    state = pipe.state_dict()
    pipe.close()
    assert state["ready"] == [] and not state["batcher"]["pending"]
    replay = state["batcher"]["replay"]
    assert replay["rows"] == 256 and replay["skip"] in (32, 256)  # the first reader batch, or the second one
    resumed = BatchPipeline(ListReader(make_chunks([256, 256])), 16, convert=copy_batch, prefetch=prefetch,
                            convert_block=block_to_list([]))
    resumed.load_state_dict(state)
    assert [b["id"][0] for b in resumed] == list(range(32, 512, 16))


def test_a_batch_across_two_reader_batches_not_yet_yielded_is_carried_as_acopy_batch():
    # rows 0-39 and 40-103: two batches cut as a block, the batch 32-47 across both reader batches, a block of
    # 48-95 from the second one, then 96-103
    pipe = BatchPipeline(ListReader(make_chunks([40, 64])), 16, convert=copy_batch, prefetch=2,
                         convert_block=block_to_list([]))
    assert [next(pipe)["id"][0] for _ in range(2)] == [0, 16]
    deadline = time.time() + 10
    while pipe.rows_held < 104 - 32 and time.time() < deadline:  # the producer has read every row
        time.sleep(0.01)
    state = pipe.state_dict()
    pipe.close()
    assert [b["id"].tolist() for b in state["ready"]] == [list(range(32, 48))]
    assert state["batcher"]["replay"]["rows"] == 64 and state["batcher"]["replay"]["skip"] == 8
    resumed = BatchPipeline(ListReader(make_chunks([40, 64])), 16, convert=copy_batch, prefetch=2,
                            convert_block=block_to_list([]))
    resumed.load_state_dict(state)
    assert [b["id"][0] for b in resumed] == [32, 48, 64, 80, 96]


def test_a_state_taken_right_after_a_resume_rereads_too():
    def make():
        return BatchPipeline(ListReader(make_chunks([256, 256])), 16, convert=copy_batch, prefetch=0,
                             convert_block=block_to_list([]))

    first = make()
    next(first)
    state = first.state_dict()
    second = make()
    second.load_state_dict(state)
    next(second)
    state2 = second.state_dict()
    assert state2["ready"] == [] and state2["batcher"]["replay"]["skip"] == 32
    third = make()
    third.load_state_dict(state2)
    assert [b["id"][0] for b in third] == list(range(32, 512, 16))


@pytest.mark.parametrize("prefetch", [0, 2])
def test_an_error_of_one_batch_of_a_block_comes_after_the_batches_before_it(prefetch):
    def convert(batch):
        if 70 in batch["id"]:
            raise ValueError("field 'id': row 70 cannot be converted")
        return copy_batch(batch)

    def convert_block(block, k):
        return [convert(slice_columns(block, i * 16, (i + 1) * 16)) for i in range(k)]

    reader = ListReader(make_chunks([300]))
    pipe = BatchPipeline(reader, 16, convert=convert, prefetch=prefetch, convert_block=convert_block)
    got = []
    with pytest.raises(ValueError, match="field 'id'"):
        for batch in pipe:
            got.append(batch["id"][0])
    assert got == [0, 16, 32, 48]  # the batch of row 70 is the fifth
    assert reader.stopped
    assert not [t for t in threading.enumerate() if t.name == "petastorm-batch-prefetch"]


def test_a_transform_fn_turns_the_block_path_off():
    calls = []
    out = list(BatchPipeline(ListReader(make_chunks([128])), 16, transform_fn=lambda b: b, convert=copy_batch,
                             prefetch=0, convert_block=block_to_list(calls)))
    assert not calls and len(out) == 8


def test_iteration_after_close_inside_a_chunk_raises():
    pipe = BatchPipeline(ListReader(make_chunks([256])), 16, convert=copy_batch, prefetch=2,
                         convert_block=block_to_list([]))
    next(pipe)
    pipe.close()
    with pytest.raises(Exception, match="closed"):
        next(pipe)


def test_convert_block_must_be_callable():
    with pytest.raises(ValueError, match="convert_block"):
        BatchPipeline(ListReader(make_chunks([10])), 4, convert_block=3)


class _WideReader(ListReader):
    """One reader batch of 30 columns."""

    def __init__(self, rows):
        super().__init__([])
        self._items = [{f"c{i}": np.arange(rows) for i in range(30)}]


def test_a_chunk_holds_at_most_half_the_collectors_first_threshold_of_objects():
    calls = []
    list(BatchPipeline(_WideReader(4 * 200), 4, convert=copy_batch, prefetch=0, convert_block=block_to_list(calls)))
    threshold = gc.get_threshold()[0]
    assert max(calls) == min(CHUNK_BATCHES, threshold // 2 // 31)  # a batch: 30 columns and its dict


def test_without_the_collector_chunks_are_bounded_by_chunk_batches_only():
    calls = []
    gc.disable()
    try:
        pipe = BatchPipeline(_WideReader(4 * 200), 4, convert=copy_batch, prefetch=0, convert_block=block_to_list(calls))
    finally:
        gc.enable()
    list(pipe)
    assert max(calls) == CHUNK_BATCHES


def test_a_served_batch_is_not_kept_alive_by_its_chunk():
    import weakref

    class Out(dict):
        pass

    def convert_block(block, k):
        return [Out(slice_columns(block, i * 16, (i + 1) * 16)) for i in range(k)]

    pipe = BatchPipeline(ListReader(make_chunks([256])), 16, prefetch=0, convert_block=convert_block)
    ref = weakref.ref(next(pipe))
    next(pipe)
    assert ref() is None


@pytest.mark.parametrize("prefetch", [0, 2])
def test_blocks_are_converted_in_the_consumers_thread(prefetch):
    threads = set()

    def convert_block(block, k):
        threads.add(threading.current_thread())
        return block_to_list([])(block, k)

    out = list(BatchPipeline(ListReader(make_chunks(SIZES)), 16, convert=copy_batch, prefetch=prefetch,
                             convert_block=convert_block))
    assert threads == {threading.current_thread()}
    assert sum(len(b["id"]) for b in out) == sum(SIZES)
