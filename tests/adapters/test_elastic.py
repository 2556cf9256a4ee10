"""petastorm.adapters.elastic (merge_state_dicts): a rank's loader state changed after it was saved is refused."""
import pickle

import pytest

from petastorm import merge_state_dicts
from petastorm.errors import PetastormStateError
from petastorm.pytorch import BatchedDataLoader
from tests.reader_impl._elastic_sim import open_reader


def _states(url):
    states = []
    for rank in range(2):
        reader = open_reader(url, rank, 2, True, schema_fields=["id"], num_epochs=1)
        loader = BatchedDataLoader(reader, batch_size=4, shuffling_queue_capacity=10, seed=3)
        next(iter(loader))
        states.append(pickle.loads(pickle.dumps(loader.state_dict())))
        loader.__exit__(None, None, None)
    return states


def test_a_rank_state_changed_after_state_dict_is_refused_naming_the_rank(synthetic_dataset):
    states = _states(synthetic_dataset)
    assert merge_state_dicts(states)["loader"] == "BatchedDataLoader"
    states[1]["passes_done"] = 1  # edited (or a truncated copy): rows would be lost or repeated at the resume
    with pytest.raises(PetastormStateError, match=r"states\[1\] was changed or cut after state_dict\(\)"):
        merge_state_dicts(states)
