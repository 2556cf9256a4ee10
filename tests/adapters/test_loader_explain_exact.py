"""A loader's explain() measures the very order its next pass serves: the buffer simulation gets the loader's seed."""
import numpy as np

from petastorm import make_batch_reader, make_reader
from petastorm.reader_impl.shuffle_quality import sequence_quality

# synthetic_dataset: ids 0..99 in dataset order, 10 row groups of 10 rows


def _quality(ids):
    ids = np.asarray(ids)
    return sequence_quality(ids, ids // 10).to_dict()


def test_a_batched_loader_with_its_own_seed(synthetic_dataset):
    from petastorm.pytorch import BatchedDataLoader

    with make_reader(synthetic_dataset, schema_fields=["id"], seed=6, workers_count=1) as reader:
        loader = BatchedDataLoader(reader, batch_size=5, shuffling_queue_capacity=30, seed=11)
        plan = loader.explain()
        assert plan.buffered_quality != reader.explain(shuffling_queue_capacity=30, batch_size=5).buffered_quality
        ids = np.concatenate([b["id"].numpy() for b in loader])
    assert _quality(ids) == plan.buffered_quality


def test_a_data_loader_with_the_default_collate(synthetic_dataset):
    from petastorm.pytorch import DataLoader

    with make_batch_reader(synthetic_dataset, schema_fields=["id"], seed=6, workers_count=1) as reader:
        loader = DataLoader(reader, batch_size=5, shuffling_queue_capacity=30)
        plan = loader.explain()
        ids = np.concatenate([b["id"].numpy() for b in loader])
    assert _quality(ids) == plan.buffered_quality


def test_a_jax_iterator_with_a_seed(synthetic_dataset):
    from petastorm.jax import make_jax_iterator

    reader = make_reader(synthetic_dataset, schema_fields=["id"], seed=8, workers_count=1)
    with make_jax_iterator(reader, batch_size=5, shuffling_queue_capacity=20, seed=4) as it:
        plan = it.explain()
        ids = np.concatenate([np.asarray(b["id"]) for b in it])
    assert _quality(ids) == plan.buffered_quality
