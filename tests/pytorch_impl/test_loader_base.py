"""petastorm.pytorch_impl.loader_base: the seeds every torch loader gives its shuffling buffer, per pass."""
import pytest

from petastorm import make_batch_reader, make_reader
from petastorm.pytorch import BatchedDataLoader, DataLoader
from petastorm.pytorch_impl.loader_base import pass_seed, reader_seed


def test_pass_seed_keeps_every_bit_of_the_seed_and_the_pass():
    assert pass_seed(None, 3) is None
    assert pass_seed(5, 0) == [5, 0] and pass_seed(5, 1) == [5, 1]
    # seeds that differ above bit 63 (or by sign) are different seeds (the rows path kept 63 bits: they collided)
    assert pass_seed(-1, 0) != pass_seed((1 << 63) - 1, 0)
    assert pass_seed(7 + (1 << 64), 0) != pass_seed(7, 0)
    assert all(v >= 0 for v in pass_seed(-(1 << 100), 2))  # numpy's SeedSequence refuses negative entropy


def test_reader_seed_is_the_seed_the_reader_plans_with(synthetic_dataset):
    with make_reader(synthetic_dataset, seed=11, reader_pool_type="dummy") as r:
        assert reader_seed(r) == 11
    with make_reader(synthetic_dataset, reader_pool_type="dummy") as r:  # seed=None: the seed it drew
        assert isinstance(reader_seed(r), int)
    assert reader_seed(object()) is None


def _orders(loader, passes=2):
    return [[int(i) for b in loader for i in (b["id"] if isinstance(b, dict) else [row["id"] for row in b])]
            for _ in range(passes)]


@pytest.mark.parametrize("make_loader", [
    lambda r: DataLoader(r, batch_size=7, shuffling_queue_capacity=40),
    lambda r: DataLoader(r, batch_size=7, shuffling_queue_capacity=40, collate_fn=list),
    lambda r: BatchedDataLoader(r, batch_size=7, shuffling_queue_capacity=40),
], ids=["DataLoader", "DataLoader-collate_fn", "BatchedDataLoader"])
def test_each_pass_reshuffles_and_a_seeded_reader_repeats_every_pass(synthetic_dataset, make_loader):
    def run():
        with make_batch_reader(synthetic_dataset, schema_fields=["id"], seed=3, reader_pool_type="dummy",
                               shuffle_row_groups=False) as r:
            return _orders(make_loader(r))

    first, second = run()
    assert sorted(first) == sorted(second) == list(range(100))
    assert first != second                 # the buffer is seeded per pass
    assert run() == [first, second]        # and the same on every run with the same reader seed
