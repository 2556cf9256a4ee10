"""petastorm.reader_impl.elastic_merge: a rank's reader state whose elastic record was changed after
``state_dict()`` (hand-edited, cut, from another version) is refused with a PetastormStateError naming the
state and the field, not a bare KeyError / TypeError from inside the merge, nor merged into a job that loses
rows (positions outside the epoch)."""
import copy

import pytest

from petastorm import merge_state_dicts
from petastorm.errors import PetastormStateError
from petastorm.reader_impl.elastic import KEY_ELASTIC

from ._elastic_sim import states_of_ranks, write_ids_dataset


@pytest.fixture(scope="module")
def rank_states(tmp_path_factory):
    url, _ = write_ids_dataset(str(tmp_path_factory.mktemp("malformed") / "d"), 4, 2, 25)
    return states_of_ranks(url, 2, True, [3, 3], num_epochs=2)[1]


def _record(state):
    return state["extra"][KEY_ELASTIC]


def _epoch(state):
    return next(iter(_record(state)["epochs"].values()))


CHANGES = [
    ("extra is a string", lambda s: s.update(extra="x"), r"states\[0\]\['extra'\] must be a dict"),
    ("options is an int", lambda s: s.update(options=-1), r"states\[0\]\['options'\] must be a dict"),
    ("no epoch", lambda s: _record(s).pop("epoch"), r"states\[0\]\['extra'\]\['elastic'\] has no 'epoch'"),
    ("no rank", lambda s: _record(s).pop("rank"), r"has no 'rank'"),
    ("world None", lambda s: _record(s).update(world=None), r"\['world'\] must be an integer >= 1, got None"),
    ("rank a string", lambda s: _record(s).update(rank="x"), r"\['rank'\] must be an integer >= 0, got 'x'"),
    ("rank beyond the world", lambda s: _record(s).update(rank=5), r"\['rank'\] is 5, not a rank of shard_count=2"),
    ("epochs a string", lambda s: _record(s).update(epochs="x"), r"\['epochs'\] must be a dict, got str"),
    ("no span", lambda s: _epoch(s).pop("span"), r"\['epochs'\]\['0'\] must be an epoch number's record"),
    ("span None", lambda s: _epoch(s).update(span=None), r"\['span'\] must be an integer >= 0, got None"),
    ("consumed None", lambda s: _epoch(s).update(consumed=None), r"\['consumed'\] must be a list of \[start, stop\]"),
    ("consumed inverted", lambda s: _epoch(s).update(consumed=[[5, 2]]), r"\['consumed'\] must be a list"),
    ("consumed beyond the epoch", lambda s: _epoch(s).update(consumed=[[0, 10 ** 9]]),
     r"within \[0, 200\], got \[\[0, 1000000000\]\]"),
]


@pytest.mark.parametrize("change,pattern", [c[1:] for c in CHANGES], ids=[c[0] for c in CHANGES])
def test_a_changed_rank_state_is_refused_naming_the_field(rank_states, change, pattern):
    assert merge_state_dicts(rank_states)["next_epoch"] == 0  # the states as saved merge
    states = copy.deepcopy(rank_states)
    change(states[0])
    with pytest.raises(PetastormStateError, match=pattern):
        merge_state_dicts(states)
