"""Columns of JAX's extra dtypes (ml_dtypes: int4, float8_*, bfloat16) made by a transform_fn keep their own dtype
and values when several small columns travel stacked in one transfer.

numpy writes the 1-byte ones alike (``int4`` and ``float8_e4m3fn`` are both ``'<V1'`` in ``dtype.str``): columns
grouped by that string were stacked together, numpy gave the stack one of the two dtypes, and the other columns
arrived converted to it.
"""
import jax.numpy as jnp
import numpy as np
import pytest

from petastorm import make_batch_reader
from petastorm.jax import make_jax_iterator

_DTYPES = [jnp.int4, jnp.float8_e4m3fn, jnp.float8_e5m2, jnp.bfloat16, jnp.uint4, np.int8]
_INTEGERS = {jnp.int4, jnp.uint4, np.int8}  # np.issubdtype does not know ml_dtypes' integers


def _columns(batch):
    """Two columns of each dtype (so that each dtype makes a stack), values 0.25 * (id % 7) and their negation
    (for int4/uint4/int8: id % 7 and 7 - id % 7)."""
    step = (batch["id"] % 7).astype(np.float32)
    out = {}
    for k, dtype in enumerate(_DTYPES):
        first, second = (step, 7 - step) if dtype in _INTEGERS else (step / 4, -step / 4)
        out[f"a{k}"], out[f"b{k}"] = first.astype(dtype), second.astype(dtype)
    return out


@pytest.mark.timeout(120)
@pytest.mark.parametrize("prefetch", [0, 2])
def test_small_columns_of_ml_dtypes_keep_their_own_dtype_and_values(synthetic_dataset, prefetch):
    with make_batch_reader(synthetic_dataset, schema_fields=["id"], shuffle_row_groups=False,
                           workers_count=1) as reader, \
            make_jax_iterator(reader, batch_size=16, transform_fn=_columns, prefetch=prefetch) as batches:
        got = list(batches)
    ids = np.arange(100)
    want = _columns({"id": ids})
    for name, column in want.items():
        assert [b[name].dtype for b in got] == [column.dtype] * len(got), name
        placed = np.concatenate([np.asarray(b[name]) for b in got])
        np.testing.assert_array_equal(placed.astype(np.float32), column.astype(np.float32), err_msg=name)
