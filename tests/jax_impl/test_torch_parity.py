"""The same input through the torch loaders, where checking make_jax_iterator showed them failing where JAX
now passes (the reference for JAX is what the torch loaders do with the same rows); each failed before its fix
(``pytorch_impl/device.py``: big-endian columns; ``adapters/pipeline.py``: StopIteration in transform_fn)."""
import numpy as np
import pytest

from petastorm import make_batch_reader
from petastorm.pytorch import BatchedDataLoader, DataLoader
from tests.jax_impl._parity_inputs import StopsOnSecondBatch


@pytest.mark.timeout(60)
@pytest.mark.parametrize("loader", [BatchedDataLoader, DataLoader])
def test_torch_loaders_give_a_big_endian_field_of_make_batch_reader_with_its_values(big_endian_dataset, loader):
    with make_batch_reader(big_endian_dataset, schema_fields=["id", "v"], shuffle_row_groups=False,
                           workers_count=1) as reader:
        got = np.concatenate([batch["v"].numpy() for batch in loader(reader, batch_size=4)])
    np.testing.assert_array_equal(got, np.repeat(np.arange(12, dtype=np.float32)[:, None], 3, 1))


@pytest.mark.timeout(60)
def test_batched_data_loader_transform_fn_raising_stop_iteration_does_not_end_the_pass_silently(big_endian_dataset):
    with make_batch_reader(big_endian_dataset, schema_fields=["id"], shuffle_row_groups=False,
                           workers_count=1) as reader:
        with pytest.raises(RuntimeError, match="StopIteration"):
            for _ in BatchedDataLoader(reader, batch_size=2, transform_fn=StopsOnSecondBatch()):
                pass
