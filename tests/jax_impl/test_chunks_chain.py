"""The block cutter of petastorm.jax_impl.chunks chains its outputs (each is ``select(True, its slice, the previous
output)``, so XLA runs the copies one after another on the calling thread): every value must still arrive bit for
bit, whatever the dtypes, cell shapes and special values of the columns next to it."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from petastorm.jax_impl.chunks import BlockPlacer

BS = 16


def _columns(k, rng):
    """``k * BS`` rows of columns of several dtypes and cell shapes, with NaN payloads, -0.0, inf, extremes."""
    rows = k * BS
    f32 = rng.standard_normal(rows).astype(np.float32)
    f32[::7] = np.nan
    f32[1::7] = -0.0
    f32[2::7] = np.inf
    nan_payload = np.full(rows, 0x7FC12345, dtype=np.uint32).view(np.float32)  # a NaN with a payload
    return {
        "f32": f32,
        "nan_payload": nan_payload,
        "i32": np.arange(rows, dtype=np.int32) * -3,
        "u8": (np.arange(rows) % 256).astype(np.uint8),
        "flag": np.arange(rows) % 3 == 0,
        "c64": (np.arange(rows) + 1j * np.arange(rows)[::-1]).astype(np.complex64),
        "i16x3": np.arange(rows * 3, dtype=np.int16).reshape(rows, 3),
        "f32x2x2": rng.standard_normal((rows, 2, 2)).astype(np.float32),
        "f32b": np.linspace(-1e38, 1e38, rows, dtype=np.float32),
    }


@pytest.mark.parametrize("k", [1, 5])
def test_every_output_of_a_chained_cut_holds_its_own_slice_bit_for_bit(k):
    columns = _columns(k, np.random.default_rng(k))
    placed = BlockPlacer(BS)(columns, k)
    assert len(placed) == k
    for b, batch in enumerate(placed):
        assert sorted(batch) == sorted(columns)  # every column stacked (the field order is DevicePlacer's)
        for name, column in columns.items():
            want = column[b * BS:(b + 1) * BS]
            got = batch[name]
            assert isinstance(got, jax.Array) and got.shape == want.shape, name
            assert got.dtype == jnp.dtype(want.dtype), name
            assert np.asarray(got).tobytes() == want.tobytes(), f"{name} of batch {b}"


def test_a_single_column_of_one_row_per_batch_is_cut_exactly():
    placer = BlockPlacer(1)
    column = np.array([np.nan, -0.0, 3.5], dtype=np.float32)
    placed = placer({"x": column}, 3)
    assert [np.asarray(b["x"]).tobytes() for b in placed] == [column[i:i + 1].tobytes() for i in range(3)]
