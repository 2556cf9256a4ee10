"""make_jax_iterator's block placement (petastorm.jax_impl.chunks): batches cut on the device from one page of
the whole batches of a reader batch must hold exactly the rows the shared core chose, across reader batches of
different sizes, batches straddling two reader batches, the short last batch and a mid-batch resume."""
import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from petastorm import make_batch_reader
from petastorm.jax import make_jax_iterator
from petastorm.jax_impl.chunks import BlockPlacer, page_calls
from petastorm.jax_impl.placement import DevicePlacer

ROWS = 1234


@pytest.fixture(scope="module")
def plain_dataset(tmp_path_factory):
    """Two Parquet files, row groups of 300 and of 170 rows (several sizes, none a multiple of the batch):
    ``id`` int32 0..1233 in order, ``f0``..``f4`` float32 = id * (j + 1) + 0.5, ``small`` uint8 = id % 251."""
    root = tmp_path_factory.mktemp("chunks")
    ids = np.arange(ROWS, dtype=np.int32)
    cols = {"id": ids}
    for j in range(5):
        cols[f"f{j}"] = ids.astype(np.float32) * (j + 1) + 0.5
    cols["small"] = (ids % 251).astype(np.uint8)
    table = pa.table(cols)
    pq.write_table(table.slice(0, 900), str(root / "part-0.parquet"), row_group_size=300)
    pq.write_table(table.slice(900), str(root / "part-1.parquet"), row_group_size=170)
    return "file://" + str(root)


def _reader(url, **kw):
    return make_batch_reader(url, shuffle_row_groups=False, workers_count=1, **kw)


def _check_values(batch):
    ids = np.asarray(batch["id"])
    for j in range(5):
        np.testing.assert_array_equal(np.asarray(batch[f"f{j}"]), ids.astype(np.float32) * (j + 1) + 0.5)
    np.testing.assert_array_equal(np.asarray(batch["small"]), (ids % 251).astype(np.uint8))


@pytest.mark.parametrize("batch_size", [32, 64, 150])
def test_every_batch_holds_the_rows_in_reader_order_with_their_own_values(plain_dataset, batch_size):
    with _reader(plain_dataset) as reader, make_jax_iterator(reader, batch_size=batch_size) as batches:
        got = list(batches)
    assert [int(b["id"].shape[0]) for b in got] == [batch_size] * (ROWS // batch_size) + \
        ([ROWS % batch_size] if ROWS % batch_size else [])
    assert np.concatenate([np.asarray(b["id"]) for b in got]).tolist() == list(range(ROWS))
    for batch in got:
        assert all(isinstance(v, jax.Array) for v in batch.values())
        assert batch["small"].dtype == jnp.uint8 and batch["f0"].dtype == jnp.float32
        _check_values(batch)


def test_batches_land_on_the_device_given_as_sharding(plain_dataset):
    device = jax.devices()[-1]
    with _reader(plain_dataset) as reader, make_jax_iterator(reader, batch_size=32, sharding=device) as batches:
        got = list(batches)
    assert {d for b in got for v in b.values() for d in v.devices()} == {device}
    assert np.concatenate([np.asarray(b["id"]) for b in got]).tolist() == list(range(ROWS))
    _check_values(got[3])


def test_a_batch_outlives_the_reader_batches_it_was_cut_from(plain_dataset):
    with _reader(plain_dataset) as reader, make_jax_iterator(reader, batch_size=32, drop_last=True) as batches:
        got = list(batches)
    assert len(got) == ROWS // 32
    _check_values(got[0])       # its reader batch was forgotten long ago
    _check_values(got[-1])


@pytest.mark.parametrize("checkpoint", [1, 5, 12, 30])
def test_resume_inside_a_reader_batch_yields_the_uninterrupted_sequence(plain_dataset, checkpoint):
    with _reader(plain_dataset) as reader, make_jax_iterator(reader, batch_size=32) as batches:
        full = [np.asarray(b["id"]).tolist() for b in batches]
    with _reader(plain_dataset) as reader:
        batches = make_jax_iterator(reader, batch_size=32, prefetch=3)
        head = [np.asarray(next(batches)["id"]).tolist() for _ in range(checkpoint)]
        state = pickle.loads(pickle.dumps(batches.state_dict()))
        batches.close()
    with _reader(plain_dataset) as reader, make_jax_iterator(reader, batch_size=32) as batches:
        batches.load_state_dict(state)
        rest = list(batches)
    assert head + [np.asarray(b["id"]).tolist() for b in rest] == full
    for batch in rest:
        _check_values(batch)


def _block(rows, start=0):
    ids = np.arange(start, start + rows)
    return {"a": ids.astype(np.float32), "b": (ids * 2).astype(np.int32),
            "m": np.stack([ids, ids + 1, ids + 2], axis=1).astype(np.float32)}


@pytest.mark.parametrize("k", [2, 5, 11])
def test_block_placer_gives_each_batch_its_own_rows_of_every_group(k):
    placer = BlockPlacer(batch_size=4)
    block = _block(4 * k)
    placed = placer(block, k)
    assert len(placed) == k
    for i, batch in enumerate(placed):
        assert sorted(batch) == ["a", "b", "m"]
        rows = slice(4 * i, 4 * i + 4)
        for name in block:
            assert isinstance(batch[name], jax.Array) and batch[name].dtype == block[name].dtype
            np.testing.assert_array_equal(np.asarray(batch[name]), block[name][rows])


@pytest.mark.parametrize("columns", [["a"], ["a", "b", "m"]])
def test_batches_keep_their_values_when_the_page_is_refilled_by_later_blocks(columns):
    # the page buffer is reused from block to block (and aliased by the device on a CPU host): a batch
    # already yielded must not change when it is; one column of one call is the case closest to an alias
    placer = BlockPlacer(batch_size=8)
    first = {n: c for n, c in _block(16).items() if n in columns}
    kept = placer(first, 2)
    for start in (1000, 2000, 3000):
        later = {n: c for n, c in _block(16 + 8 * (start // 1000), start).items() if n in columns}
        placer(later, 2 + start // 1000)
    for i, batch in enumerate(kept):
        for name in columns:
            np.testing.assert_array_equal(np.asarray(batch[name]), first[name][8 * i:8 * i + 8])


def test_wide_columns_are_left_to_the_caller_and_the_iterator_keeps_the_field_order():
    block = {"wide": np.arange(64, dtype=np.float64).reshape(8, 8), **_block(8)}   # 4 rows x 8 x 8 B: 256 B
    placer = BlockPlacer(batch_size=4, group_max_bytes=128)
    placed = placer(block, 2)
    assert sorted(placed[0]) == ["a", "b", "m"] and placer.plan(block).rest == ["wide"]
    device = DevicePlacer(None, 1, batch_size=4)
    device._blocks.group_max_bytes = 128
    batches = device.convert_block(block, 2)
    assert [list(b) for b in batches] == [["wide", "a", "b", "m"]] * 2
    np.testing.assert_array_equal(np.asarray(batches[1]["wide"]), block["wide"][4:8].astype(np.float32))
    np.testing.assert_array_equal(np.asarray(batches[1]["m"]), block["m"][4:8])


def test_only_numeric_columns_are_stacked_and_nothing_stacked_means_none():
    placer = BlockPlacer(batch_size=2)
    assert placer({"s": np.array(["x"] * 4)}, 2) is None


def test_page_shapes_are_powers_of_two_up_to_eight_calls_and_four_mib():
    assert [page_calls(n, 1024) for n in (1, 2, 3, 5, 8, 9, 16)] == [1, 2, 4, 8, 8, 8, 8]
    assert page_calls(16, 1 << 20) == 4                # 4 calls of 1 MiB fill a page
    assert page_calls(3, 8 << 20) == 1                 # one call bigger than a page: one call per page


def test_a_call_cuts_fewer_batches_where_they_would_pass_a_page():
    wide = BlockPlacer(batch_size=1024, group_max_bytes=1 << 30)
    cells = {"a": np.zeros((2048, 256), np.float32), "b": np.zeros((2048, 256), np.float32)}  # 2 MiB a batch
    assert wide.plan(cells).g == 2
    assert BlockPlacer(batch_size=1024).plan({"a": np.zeros(2048, np.float32)}).g == 8
