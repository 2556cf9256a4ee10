"""Loader states as training scripts checkpoint and load them: through ``torch.save`` / ``torch.load`` with its
default ``weights_only=True``, and loaded into an ``InMemBatchedDataLoader`` whose ``len()`` was asked first
(cases the resume property test, tests/adapters/test_loaders_resume_property.py, showed)."""
import io
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from petastorm import make_batch_reader, merge_state_dicts
from petastorm.jax import make_jax_iterator


def _dataset(path, rows=40, group=10):
    ids = np.arange(rows, dtype=np.int64)
    pq.write_table(pa.table({"id": ids, "x": ids + 0.5}), os.path.join(path, "p.parquet"), row_group_size=group)
    return "file://" + str(path)


def _torch_trip(state):
    buf = io.BytesIO()
    torch.save({"loader": state}, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)["loader"]


def test_a_jax_iterator_state_survives_torch_save_and_a_weights_only_load(tmp_path):
    url = _dataset(tmp_path)
    options = dict(reader_pool_type="dummy", seed=3, shuffle_row_groups=False)
    with make_batch_reader(url, **options) as reader:
        it = make_jax_iterator(reader, batch_size=4, shuffling_queue_capacity=12, seed=1)
        head = [np.asarray(next(it)["id"]).tolist() for _ in range(3)]
        state = _torch_trip(it.state_dict())
        it.close()
    with make_batch_reader(url, **options) as reader:
        it = make_jax_iterator(reader, batch_size=4, shuffling_queue_capacity=12, seed=1)
        it.load_state_dict(state)
        tail = [np.asarray(b["id"]).tolist() for b in it]
    assert sorted(i for b in head + tail for i in b) == list(range(40))


def test_merged_jax_states_survive_torch_save_and_a_weights_only_load(tmp_path):
    # the merged job state is plain values (held rows encoded), whatever the per-rank states hold
    url = _dataset(tmp_path, rows=60)
    options = dict(reader_pool_type="dummy", seed=3, shard_mode="balanced", shard_seed=1)
    seen, states = [], []
    for rank in range(3):
        with make_batch_reader(url, cur_shard=rank, shard_count=3, **options) as reader:
            it = make_jax_iterator(reader, batch_size=4, shuffling_queue_capacity=9, seed=1)
            seen += [i for _ in range(2) for i in np.asarray(next(it)["id"]).tolist()]
            states.append(it.state_dict())
            it.close()
    job = _torch_trip(merge_state_dicts(states))
    for rank in range(2):
        with make_batch_reader(url, cur_shard=rank, shard_count=2, **options) as reader:
            it = make_jax_iterator(reader, batch_size=4, shuffling_queue_capacity=9, seed=1)
            it.load_state_dict(job)
            seen += [i for b in it for i in np.asarray(b["id"]).tolist()]
    assert sorted(seen) == list(range(60))


def test_in_memory_loader_len_before_loading_a_state_saved_before_the_first_pass(tmp_path):
    from petastorm.pytorch import InMemBatchedDataLoader

    pq.write_table(pa.table({"id": np.arange(10, dtype=np.int64)}), os.path.join(str(tmp_path), "p.parquet"))
    url = "file://" + str(tmp_path)
    with make_batch_reader(url, reader_pool_type="dummy") as reader:
        state = InMemBatchedDataLoader(reader, batch_size=4, num_epochs=2).state_dict()  # saved before training
    with make_batch_reader(url, reader_pool_type="dummy") as reader:
        loader = InMemBatchedDataLoader(reader, batch_size=4, num_epochs=2)
        assert len(loader) == 6  # e.g. an LR schedule's total steps, built before the checkpoint is loaded
        loader.load_state_dict(state)
        served = [b["id"].tolist() for b in loader]
    assert sorted(i for b in served for i in b) == sorted(list(range(10)) * 2)


def test_in_memory_loader_len_before_loading_a_state_of_another_reader_is_refused_naming_the_difference(tmp_path):
    from petastorm.errors import PetastormStateError
    from petastorm.pytorch import InMemBatchedDataLoader

    pq.write_table(pa.table({"id": np.arange(10, dtype=np.int64), "v": np.arange(10.0)}),
                   os.path.join(str(tmp_path), "p.parquet"))
    url = "file://" + str(tmp_path)
    with make_batch_reader(url, reader_pool_type="dummy", schema_fields=["id"]) as reader:
        state = InMemBatchedDataLoader(reader, batch_size=4, num_epochs=2).state_dict()
    with make_batch_reader(url, reader_pool_type="dummy") as reader:
        loader = InMemBatchedDataLoader(reader, batch_size=4, num_epochs=2)
        assert len(loader) == 6
        with pytest.raises(PetastormStateError, match=r"len\(\) was called.*options"):
            loader.load_state_dict(state)
