"""WeightedSamplingReader under the torch DataLoader: a second pass.

0.12.1 (black box): the first pass of ``DataLoader(WeightedSamplingReader(...))`` ends when the first reader
picked is exhausted; a second pass raises ``AttributeError: 'WeightedSamplingReader' object has no attribute
'reset'``. Ours has ``reset``; it used to raise the inner reader's "Currently do not support resetting a
reader while in the middle of iteration", which named neither the mix nor the way out.
"""
import threading

import pytest

from petastorm import make_reader
from petastorm.pytorch import DataLoader
from petastorm.weighted_sampling_reader import WeightedSamplingReader


def test_second_loader_pass_over_a_mix_says_why_it_cannot_restart(synthetic_dataset):
    readers = [make_reader(synthetic_dataset, schema_fields=["id"], workers_count=1) for _ in range(2)]
    with WeightedSamplingReader(readers, [0.5, 0.5], seed=3) as mix:
        loader = DataLoader(mix, batch_size=4)
        first = [int(i) for batch in loader for i in batch["id"]]
        assert 100 <= len(first) < 200  # ends with the first reader exhausted
        with pytest.raises(RuntimeError, match="WeightedSamplingReader cannot start a new pass: reader [01] is in "
                                               "the middle of its pass.*num_epochs=None"):
            for _ in loader:
                pass
    assert not [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]


def test_endless_mix_feeds_a_loader_for_as_long_as_asked(synthetic_dataset):
    readers = [make_reader(synthetic_dataset, schema_fields=["id"], workers_count=1, num_epochs=None)
               for _ in range(2)]
    with WeightedSamplingReader(readers, [0.9, 0.1], seed=1) as mix:
        with DataLoader(mix, batch_size=10) as loader:
            ids = []
            for batch in loader:
                ids.extend(int(i) for i in batch["id"])
                if len(ids) >= 500:
                    break
    assert len(ids) == 500 and set(ids) == set(range(100))
