"""The per-batch split of petastorm.jax_impl.transfer chains its outputs on one CPU device (as the block cutter
does): every column must still arrive bit for bit, whatever the dtypes, cell shapes (0-d cells of a
transform_fn's scalars too) and special values next to it, and the chained and unchained splits agree."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from petastorm.jax_impl.transfer import BatchTransfer

from .test_chunks_chain import _columns


@pytest.mark.parametrize("chain", [True, False])
def test_a_chained_split_gives_every_column_bit_for_bit(chain):
    columns = _columns(3, np.random.default_rng(3))
    placed = BatchTransfer(chain=chain)(columns)
    assert list(placed) == list(columns)
    for name, column in columns.items():
        got = placed[name]
        assert isinstance(got, jax.Array) and got.shape == column.shape and got.dtype == jnp.dtype(column.dtype)
        assert np.asarray(got).tobytes() == column.tobytes(), name


def test_scalar_fields_of_a_transform_fn_are_split_exactly_when_chained():
    columns = {"a": np.array(np.nan, dtype=np.float32), "b": np.array(-0.0, dtype=np.float32),
               "c": np.array(7, dtype=np.int32), "d": np.array(-3, dtype=np.int32)}
    placed = BatchTransfer(chain=True)(columns)
    for name, column in columns.items():
        assert placed[name].shape == () and np.asarray(placed[name]).tobytes() == column.tobytes(), name


def test_the_chain_is_on_one_device_only():
    device = jax.devices()[0]
    assert BatchTransfer(jax.sharding.SingleDeviceSharding(device), chain=True).chain
    mesh = jax.sharding.Mesh(np.array(jax.devices()), ("data",))
    named = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
    assert not BatchTransfer(named, chain=True).chain
