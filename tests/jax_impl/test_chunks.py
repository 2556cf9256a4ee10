"""make_jax_iterator's whole-reader-batch placement (petastorm.jax_impl.chunks): batches cut on the device from
one copy of each reader batch must hold exactly the rows the shared core chose, across reader batches of
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
from petastorm.jax_impl.chunks import ChunkPlacer

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


def test_placer_serves_only_row_ranges_of_a_registered_reader_batch():
    placer = ChunkPlacer(batch_size=4)
    chunk = {"a": np.arange(20, dtype=np.float32), "b": np.arange(20, dtype=np.int32) * 2,
             "m": np.arange(60, dtype=np.float32).reshape(20, 3)}
    placer.register(chunk)
    served = placer({"a": chunk["a"][8:12], "b": chunk["b"][8:12], "m": chunk["m"][8:12]})
    assert served is not None and list(served) == ["a", "b", "m"]
    np.testing.assert_array_equal(np.asarray(served["a"]), [8, 9, 10, 11])
    np.testing.assert_array_equal(np.asarray(served["b"]), [16, 18, 20, 22])
    np.testing.assert_array_equal(np.asarray(served["m"]), chunk["m"][8:12])
    chunk = {"a": chunk["a"], "b": chunk["b"]}
    placer.register(chunk)
    rest = {"a": chunk["a"][4:], "b": chunk["b"][4:]}          # as the core slices: views of views
    np.testing.assert_array_equal(np.asarray(placer({"a": rest["a"][12:16], "b": rest["b"][12:16]})["b"]),
                                  [32, 34, 36, 38])
    assert placer({"a": chunk["a"][8:12].copy(), "b": chunk["b"][8:12].copy()}) is None   # a copy
    assert placer({"a": chunk["a"][16:19], "b": chunk["b"][16:19]}) is None                 # short batch
    assert placer({"a": chunk["a"][8:12], "b": chunk["b"][4:8]}) is None                    # mixed offsets
    assert placer({"a": chunk["a"][8:12]}) is None                                         # other fields
