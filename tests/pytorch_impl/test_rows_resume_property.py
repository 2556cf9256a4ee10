"""Property: a DataLoader saved at any batch and resumed on a fresh reader yields exactly the batches the
uninterrupted loader yields, for any batch size, shuffling capacity, reader and collate path."""
import pickle

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from petastorm import make_batch_reader, make_reader
from petastorm.pytorch import DataLoader


def _custom(rows):
    return {"id": [int(r["id"]) for r in rows]}


def _ids(batches):
    return [b["id"].tolist() if hasattr(b["id"], "tolist") else list(b["id"]) for b in batches]


@pytest.mark.slow
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch_size=st.integers(1, 40), capacity=st.sampled_from([0, 1, 7, 64, 500]), stop_at=st.integers(0, 40),
       batched=st.booleans(), custom=st.booleans(), drop=st.sampled_from([1, 3]), epochs=st.sampled_from([1, 2]))
def test_resume_at_any_batch_is_exact(synthetic_dataset, batch_size, capacity, stop_at, batched, custom, drop,
                                      epochs):
    make = make_batch_reader if batched else make_reader
    opts = dict(schema_fields=["id"], seed=9, reader_pool_type="dummy", shuffle_rows=True,
                shuffle_row_drop_partitions=drop, num_epochs=epochs)
    kwargs = dict(batch_size=batch_size, shuffling_queue_capacity=capacity)
    if custom:
        kwargs["collate_fn"] = _custom
    with make(synthetic_dataset, **opts) as r:
        expected = _ids(DataLoader(r, **kwargs))
    stop_at = min(stop_at, len(expected))
    with make(synthetic_dataset, **opts) as r:
        loader = DataLoader(r, **kwargs)
        it = iter(loader)
        head = [next(it) for _ in range(stop_at)]
        state = pickle.loads(pickle.dumps(loader.state_dict()))
        del it
    with make(synthetic_dataset, **opts) as r:
        loader = DataLoader(r, **kwargs)
        loader.load_state_dict(state)
        tail = list(loader)
    assert _ids(head) + _ids(tail) == expected
    assert sorted(i for b in expected for i in b) == sorted(list(range(100)) * epochs)
