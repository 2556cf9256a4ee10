"""The same input through the torch loaders, where probing make_jax_iterator showed them failing where JAX
now passes (the reference for JAX is what the torch loaders do with the same rows); each failed before its fix
(``pytorch_impl/device.py``: big-endian columns; ``adapters/pipeline.py``: StopIteration in transform_fn)."""
import numpy as np
import pytest

from petastorm import make_batch_reader
from petastorm.pytorch import BatchedDataLoader, DataLoader


@pytest.fixture(scope="module")
def big_endian_dataset(tmp_path_factory):
    """12 rows of a field declared big-endian (``>f4``): ``v`` = [i, i, i]."""
    from _fixtures.datasets import write_synthetic_dataset

    from petastorm.codecs import NdarrayCodec, ScalarCodec
    from petastorm.spark_types import spark_type
    from petastorm.unischema import Unischema, UnischemaField

    schema = Unischema("BigEndian", [
        UnischemaField("id", np.int32, (), ScalarCodec(spark_type("IntegerType")), False),
        UnischemaField("v", np.dtype(">f4"), (3,), NdarrayCodec(), False),
    ])
    return write_synthetic_dataset(str(tmp_path_factory.mktemp("big_endian_torch") / "d"), rows=12,
                                   rows_per_group=6, schema=schema,
                                   row_fn=lambda i: {"id": i, "v": np.full(3, i, ">f4")})


@pytest.mark.timeout(60)
@pytest.mark.parametrize("loader", [BatchedDataLoader, DataLoader])
def test_torch_loaders_give_a_big_endian_field_of_make_batch_reader_with_its_values(big_endian_dataset, loader):
    with make_batch_reader(big_endian_dataset, schema_fields=["id", "v"], shuffle_row_groups=False,
                           workers_count=1) as reader:
        got = np.concatenate([batch["v"].numpy() for batch in loader(reader, batch_size=4)])
    np.testing.assert_array_equal(got, np.repeat(np.arange(12, dtype=np.float32)[:, None], 3, 1))


class _StopsOnSecondBatch:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, columns):
        self.calls += 1
        if self.calls == 2:
            next(iter([]))  # a common bug: StopIteration from inside the function
        return columns


@pytest.mark.timeout(60)
def test_batched_data_loader_transform_fn_raising_stop_iteration_does_not_end_the_pass_silently(big_endian_dataset):
    with make_batch_reader(big_endian_dataset, schema_fields=["id"], shuffle_row_groups=False,
                           workers_count=1) as reader:
        with pytest.raises(RuntimeError, match="StopIteration"):
            for _ in BatchedDataLoader(reader, batch_size=2, transform_fn=_StopsOnSecondBatch()):
                pass
