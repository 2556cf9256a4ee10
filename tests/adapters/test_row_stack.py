"""``petastorm.adapters.row_stack``: a column of consecutive row cells as one view, ``np.stack`` otherwise."""
from __future__ import annotations

import numpy as np
import pytest

from petastorm import make_reader
from petastorm.adapters.row_stack import consecutive_view, stack_cells


def _npy_like_cells(n: int = 6, shape=(4, 5), gap: int = 16) -> tuple:
    """(buffer, cells): ``n`` float32 cells of ``shape`` in one uint8 buffer, ``gap`` bytes of 0xAB between
    them (as npy cells lie in an Arrow buffer with their headers between them)."""
    cell_bytes = int(np.prod(shape)) * 4
    stride = cell_bytes + gap
    buf = np.full(n * stride, 0xAB, np.uint8)
    cells = []
    for i in range(n):
        cell = buf[i * stride + gap:(i + 1) * stride].view(np.float32).reshape(shape)
        cell[...] = i
        cells.append(cell)
    return buf, cells


def test_consecutive_rows_of_a_block_give_a_view_equal_to_stack():
    block = np.arange(10 * 3 * 4, dtype=np.int32).reshape(10, 3, 4)
    rows = list(block[2:8])
    out = stack_cells(rows)
    np.testing.assert_array_equal(out, np.stack(rows))
    assert np.shares_memory(out, block) and out.flags.c_contiguous


def test_writing_into_the_view_changes_those_rows_only():
    block = np.zeros((10, 8), np.uint8)
    out = stack_cells(list(block[3:6]))
    out[...] = 9
    assert (block[3:6] == 9).all() and (block[:3] == 0).all() and (block[6:] == 0).all()


def test_cells_with_headers_between_them_give_a_strided_view_that_leaves_the_gaps_alone():
    buf, cells = _npy_like_cells()
    out = stack_cells(cells)
    np.testing.assert_array_equal(out, np.stack(cells))
    assert np.shares_memory(out, buf) and not out.flags.c_contiguous
    out[...] = -1.0
    stride = len(buf) // len(cells)
    gaps = np.concatenate([buf[i * stride:i * stride + 16] for i in range(len(cells))])
    assert (gaps == 0xAB).all()  # the "headers" between the cells are untouched
    assert all((c == -1.0).all() for c in cells)


@pytest.mark.parametrize("order", [[0, 2, 1, 3], [3, 2, 1, 0], [0, 1, 3, 4], [0, 0, 1, 2]])
def test_rows_out_of_order_repeated_or_with_a_hole_are_copied(order):
    block = np.arange(6 * 5, dtype=np.float64).reshape(6, 5)
    rows = [block[i] for i in order]
    out = stack_cells(rows)
    np.testing.assert_array_equal(out, np.stack(rows))
    assert not np.shares_memory(out, block)


def test_rows_of_two_blocks_are_copied():
    a, b = np.zeros((4, 3)), np.ones((4, 3))
    rows = list(a[2:]) + list(b[:2])
    out = stack_cells(rows)
    np.testing.assert_array_equal(out, np.stack(rows))
    assert not np.shares_memory(out, a) and not np.shares_memory(out, b)


def test_arrays_that_own_their_memory_and_single_values_are_copied():
    owners = [np.full((2, 2), i) for i in range(3)]
    assert consecutive_view(owners) is None
    np.testing.assert_array_equal(stack_cells(owners), np.stack(owners))
    block = np.zeros((3, 2))
    one = stack_cells([block[1]])
    assert one.shape == (1, 2) and not np.shares_memory(one, block)


def test_overlapping_windows_are_copied():
    base = np.arange(20, dtype=np.int64)
    windows = list(np.lib.stride_tricks.sliding_window_view(base, 5)[:4])  # each shares 4 elements with the next
    assert consecutive_view(windows) is None
    out = stack_cells(windows)
    out[0, 1] = -5
    assert base[1] == 1  # a copy: writing into one window's row does not reach the others


def test_read_only_cells_give_a_read_only_view():
    block = np.arange(12, dtype=np.int16).reshape(4, 3)
    block.flags.writeable = False
    out = stack_cells(list(block[:3]))
    np.testing.assert_array_equal(out, block[:3])
    assert np.shares_memory(out, block) and not out.flags.writeable
    with pytest.raises(ValueError):
        out[0, 0] = 1


def test_cells_of_different_shapes_raise_as_np_stack_does():
    block = np.zeros((4, 6))
    with pytest.raises(ValueError):
        stack_cells([block[0], block[1, :3]])
    with pytest.raises(ValueError):
        stack_cells([])


def test_rows_of_make_reader_are_stacked_without_a_copy(synthetic_dataset):
    with make_reader(synthetic_dataset, schema_fields=["id", "matrix", "image"], reader_pool_type="thread",
                     workers_count=1, shuffle_rows=False, shuffle_row_groups=False, num_epochs=1) as reader:
        rows = [next(reader) for _ in range(10)]  # the first row group: one decoded block per field
    assert [int(r.id) for r in rows] == list(range(10))
    for name in ("matrix", "image"):
        cells = [getattr(r, name) for r in rows]
        out = stack_cells(cells)
        np.testing.assert_array_equal(out, np.stack(cells))
        assert np.shares_memory(out, cells[0]), name
