"""InMemTable laid out batch by batch (``batch_rows``, what ``InMemBatchedDataLoader(shuffle=False)`` uses): whole
batches, the short last one, slices across batch boundaries and positions give the rows of the column-major
layout, in new memory every call, for one block and for several (dtypes, cells, promoted and object columns)."""
import numpy as np
import pytest
import torch

from petastorm.pytorch_impl.inmem_table import InMemTable


def _parts(n=1000, cuts=(0, 3, 250, 251, 700, 1000)):
    """Columns of ``n`` rows in parts cut at ``cuts`` (parts that start and end inside batches)."""
    ids = np.arange(n)
    cols = {"a": ids.astype(np.float32), "b": -ids.astype(np.float32), "id": ids.astype(np.int64),
            "flag": ids % 3 == 0, "cell": np.stack([ids, 2 * ids], axis=1).astype(np.float32),
            "u16": (ids % 60000).astype(np.uint16)}
    return [{k: v[s:e] for k, v in cols.items()} for s, e in zip(cuts[:-1], cuts[1:])], cols


def _same(got, want):
    assert list(got) == list(want)
    for k in want:
        assert got[k].dtype == want[k].dtype and got[k].shape == want[k].shape and torch.equal(got[k], want[k]), k
        assert got[k].is_contiguous()


@pytest.mark.parametrize("bs", [1, 7, 64, 1000, 4096])
def test_batches_of_the_batch_major_layout_are_those_of_the_column_major_one(bs):
    parts, _ = _parts()
    ref = InMemTable(_parts()[0], row_major=False)
    table = InMemTable(parts, row_major=False, batch_rows=bs)
    for start in range(0, 1000, bs):
        _same(table.batch(slice(start, start + bs)), ref.batch(slice(start, start + bs)))
    for rows in (slice(3, 17), slice(990, 1005), slice(5, 900, 13), np.array([999, 0, 7, 64, 63]),
                 np.array([], dtype=np.int64), slice(0, 0)):
        _same(table.batch(rows), ref.batch(rows))


def test_one_float_block_whole_batches_and_the_short_last_one():
    ids = np.arange(230, dtype=np.float32)
    table = InMemTable([{"x": ids[:100], "y": -ids[:100]}, {"x": ids[100:], "y": -ids[100:]}], row_major=False,
                       batch_rows=32)
    got = [table.batch(slice(s, s + 32)) for s in range(0, 230, 32)]
    assert [len(b["x"]) for b in got] == [32] * 7 + [6]
    assert torch.cat([b["x"] for b in got]).tolist() == ids.tolist()
    assert torch.cat([b["y"] for b in got]).tolist() == (-ids).tolist()
    assert all(b["x"].is_contiguous() and b["y"].is_contiguous() for b in got)


def test_writing_into_a_batch_changes_no_later_batch_nor_the_same_batch_asked_again():
    ids = np.arange(100, dtype=np.float32)
    table = InMemTable([{"x": ids, "y": ids + 1000}], row_major=False, batch_rows=10)
    first = table.batch(slice(0, 10))
    first["x"].fill_(-1.0)
    first["y"].add_(5.0)
    again = table.batch(slice(0, 10))
    assert again["x"].tolist() == ids[:10].tolist() and again["y"].tolist() == (ids[:10] + 1000).tolist()
    assert again["x"].data_ptr() != first["x"].data_ptr()
    assert table.batch(slice(10, 20))["x"].tolist() == ids[10:20].tolist()


def test_an_empty_table_and_positions_out_of_range():
    table = InMemTable([{"a": np.zeros((0, 2), np.float32)}], row_major=False, batch_rows=4)
    assert table.rows == 0 and table.batch(slice(0, 4))["a"].shape == (0, 2)
    full = InMemTable([{"a": np.arange(5, dtype=np.float32)}], row_major=False, batch_rows=4)
    with pytest.raises(IndexError, match="out of range"):
        full.batch(np.array([5]))
    assert full.batch(np.array([-1]))["a"].tolist() == [4.0]


def test_whole_batch_is_batch_of_the_slice():
    parts, _ = _parts()
    table = InMemTable(parts, row_major=False, batch_rows=64)
    assert table.batches == 16
    for b in (0, 7, 15):
        _same(table.whole_batch(b), table.batch(slice(b * 64, (b + 1) * 64)))
    assert len(table.whole_batch(15)["a"]) == 1000 - 15 * 64
    assert InMemTable(_parts()[0], row_major=False).batches is None


def test_batches_copied_a_few_at_a_time_are_each_new_memory_served_once():
    ids = np.arange(50, dtype=np.float32)  # 5 batches of 10 (under GROUP_BATCHES: one copy serves an epoch)
    table = InMemTable([{"x": ids, "y": -ids}], row_major=False, batch_rows=10)
    first = list(table.batches_from(0))
    for b in first:
        b["x"].fill_(-1.0)  # a user normalising in place
    second = list(table.batches_from(0))
    assert torch.cat([b["x"] for b in second]).tolist() == ids.tolist()
    assert all(s["x"].data_ptr() != f["x"].data_ptr() for s, f in zip(second, first))
    # a batch's tensors hold that batch's rows only (torch.save of one writes one batch, as a copy of it alone)
    assert all(b["x"].untyped_storage().nbytes() == 2 * 10 * 4 for b in second)
    # resumed mid-epoch, the short last batch, whole_batch beside it: the rows asked for, in fresh memory
    again = list(table.batches_from(3))
    assert [b["y"].tolist() for b in again] == [(-ids[30:40]).tolist(), (-ids[40:50]).tolist()]
    assert table.whole_batch(3)["x"].data_ptr() != again[0]["x"].data_ptr()
    short = InMemTable([{"x": ids[:47]}], row_major=False, batch_rows=10)
    assert [len(b["x"]) for b in short.batches_from(0)] == [10, 10, 10, 10, 7]
    assert torch.cat([b["x"] for b in short.batches_from(2)]).tolist() == ids[20:47].tolist()
    assert list(short.batches_from(5)) == []


def test_batches_over_the_group_bytes_are_copied_alone():
    from petastorm.pytorch_impl.inmem_table import GROUP_BYTES

    rows = np.arange(4 * 3, dtype=np.float64).reshape(4, 3)
    big = np.repeat(rows[:, :, None], GROUP_BYTES // (8 * 3) + 1, axis=2)  # one row is over GROUP_BYTES
    table = InMemTable([{"a": big, "b": big + 1}], row_major=False, batch_rows=1)
    got = list(table.batches_from(0))
    assert table._group == 1 and len(got) == 4
    assert [float(g["b"][0, 2, 0]) for g in got] == [float(r[2]) + 1 for r in rows]


def test_a_batch_size_over_the_rows_is_one_batch_without_padding():
    ids = np.arange(30, dtype=np.float32)
    table = InMemTable([{"x": ids[:10]}, {"x": ids[10:]}], row_major=False, batch_rows=1 << 20)
    assert table.batches == 1 and table.blocks[0][0].shape == (1, 1, 30)
    assert table.whole_batch(0)["x"].tolist() == ids.tolist()
    assert table.batch(slice(0, 1 << 20))["x"].tolist() == ids.tolist()


def test_a_column_widened_by_a_later_part_keeps_its_values_batch_by_batch():
    parts = [{"x": np.array([1, 2], np.int16), "y": np.array([1.5, 2.5])},
             {"x": np.array([70000, 3], np.int32), "y": np.array([3.5, 4.5])}]
    table = InMemTable(parts, row_major=False, batch_rows=3)
    got = list(table.batches_from(0))
    assert [g["x"].tolist() for g in got] == [[1, 2, 70000], [3]] and got[0]["x"].dtype == torch.int32
    assert [g["y"].tolist() for g in got] == [[1.5, 2.5, 3.5], [4.5]]
