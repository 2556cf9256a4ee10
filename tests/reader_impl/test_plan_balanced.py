"""The balanced mode's global sequence and its cuts (pure numpy; no files)."""
import numpy as np
import pytest

from petastorm.errors import NoDataAvailableError
from petastorm.reader_impl.plan_balanced import balanced_dealt_items, balanced_sequence, cut_sequence
from petastorm.reader_impl.plan_options import PlanOptions

ROWS = np.array([3, 0, 5, 2], dtype=np.int64)


def _rows(items):
    return [(int(g), r) for g, s, e in zip(*items) for r in range(int(s), int(e))]


def test_the_sequence_in_dataset_order_holds_every_row_once():
    rg, starts, stops, cum = balanced_sequence(ROWS, PlanOptions(seed=0, shuffle_row_groups=False), 0)
    assert _rows((rg, starts, stops)) == [(g, r) for g in range(4) for r in range(int(ROWS[g]))]
    assert cum.tolist() == [3, 8, 10]


def test_cuts_wrap_around_the_sequence_and_keep_range_order():
    seq = balanced_sequence(ROWS, PlanOptions(seed=0, shuffle_row_groups=False), 0)
    everything = _rows(seq[:3])
    assert _rows(cut_sequence(*seq, [(8, 12)])) == everything[8:] + everything[:2]
    assert _rows(cut_sequence(*seq, [(5, 6), (1, 2)])) == [everything[5], everything[1]]
    assert [len(a) for a in cut_sequence(*seq, [])] == [0, 0, 0]


def test_shards_partition_the_sequence_with_drop_and_cover_it_with_pad():
    def shard(k, remainder):
        options = PlanOptions(seed=1, shard_seed=7, cur_shard=k, shard_count=3, shard_mode="balanced",
                              balanced_remainder=remainder)
        return _rows(balanced_dealt_items(ROWS, options, 2)[:3])

    dropped = [shard(k, "drop") for k in range(3)]
    assert [len(s) for s in dropped] == [3, 3, 3]
    assert len(set(sum(dropped, []))) == 9  # no row twice, one of the 10 left out
    padded = [shard(k, "pad") for k in range(3)]
    assert [len(s) for s in padded] == [4, 4, 4]
    assert len(set(sum(padded, []))) == 10  # every row, two of them twice


def test_an_empty_shard_is_refused_naming_the_fix():
    options = PlanOptions(seed=0, cur_shard=0, shard_count=20, shard_mode="balanced")
    with pytest.raises(NoDataAvailableError, match="balanced_remainder='pad'"):
        balanced_dealt_items(ROWS, options, 0)
