"""Batcher.next_block through the shuffling buffer: the rest of a round (its rows drawn already) is handed over
as one block of whole batches - the very batches, buffer draws and reader reads of batch-by-batch calls - and
a loader state taken inside such a block resumes exactly."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from petastorm.adapters import Batcher, BatchPipeline, ReaderSource
from petastorm.adapters.batcher import shuffle_buffer_layout
from petastorm.adapters.column_buffer import slice_columns
from tests.adapters._list_reader import ListReader, block_to_list, copy_batch, make_chunks


def _by_batch(batcher):
    out = []
    while (b := batcher.next_batch()) is not None:
        out.append(copy_batch(b))
    return out


def _by_block(batcher, max_batches, max_objects=None):
    out, ks = [], []
    while (got := batcher.next_block(max_batches, max_objects)) is not None:
        block, k = got
        ks.append(k)
        bs = len(block["id"]) // k
        out.extend(copy_batch(slice_columns(block, i * bs, (i + 1) * bs)) for i in range(k))
    return out, ks


@settings(max_examples=80, deadline=None)
@given(sizes=st.lists(st.integers(1, 300), min_size=1, max_size=10), batch_size=st.integers(1, 20),
       capacity=st.sampled_from([1, 7, 64, 160, 400]), seed=st.integers(0, 1000), drop_last=st.booleans(),
       max_batches=st.integers(1, 9))
def test_blocks_of_a_round_are_the_batches_of_batch_by_batch_calls(sizes, batch_size, capacity, seed, drop_last,
                                                                  max_batches):
    def batcher():
        return Batcher(ReaderSource(ListReader(make_chunks(sizes))), batch_size, capacity, seed=seed,
                       drop_last=drop_last)

    reference = _by_batch(batcher())
    blocks, ks = _by_block(batcher(), max_batches)
    assert [b["id"].tolist() for b in blocks] == [b["id"].tolist() for b in reference]
    assert all(np.array_equal(b["vec"][:, 0], 2 * b["id"]) for b in blocks)  # rows keep their own cells
    assert all(b["id"].flags.c_contiguous for b in blocks)
    assert max(ks, default=1) <= max_batches


def test_the_rest_of_each_round_is_one_block():
    # 100 rows of buffer and batches of 4: rounds of 3 batches, drawn from a full buffer
    rows, rounds = shuffle_buffer_layout(100, 4)
    assert rounds == 3
    batcher = Batcher(ReaderSource(ListReader(make_chunks([500]))), 4, 100, seed=3)
    _, ks = _by_block(batcher, 8)
    # a round: its first batch alone (drawn by next_batch), then its 2 others as one block
    assert ks[:6] == [1, 2, 1, 2, 1, 2]
    assert sum(ks) == 125


def test_a_block_of_a_round_respects_max_objects():
    batcher = Batcher(ReaderSource(ListReader(make_chunks([3000]))), 8, 1000, seed=0)  # rounds of 8 batches
    _, ks = _by_block(batcher, 64, max_objects=4 * 3)  # 2 columns + the dict: at most 4 batches per block
    assert max(ks) == 4


@pytest.mark.parametrize("prefetch", [0, 2])
@pytest.mark.parametrize("cut", [1, 2, 3, 7, 10, 25])
def test_a_state_taken_inside_a_round_block_resumes_exactly(prefetch, cut):
    sizes, batch_size, capacity = [300, 7, 150, 1, 400], 4, 100

    def pipe(calls):
        return BatchPipeline(ListReader(make_chunks(sizes)), batch_size, shuffling_queue_capacity=capacity,
                             seed=11, convert=copy_batch, prefetch=prefetch, convert_block=block_to_list(calls))

    calls = []
    full = [b["id"].tolist() for b in pipe(calls)]
    assert max(calls) >= 2  # rounds went through the block path
    first = pipe([])
    head = [next(first)["id"].tolist() for _ in range(cut)]
    state = first.state_dict()
    first.close()
    resumed = pipe([])
    resumed.load_state_dict(state)
    assert head + [b["id"].tolist() for b in resumed] == full
    assert sorted(i for b in full for i in b) == list(range(sum(sizes)))
