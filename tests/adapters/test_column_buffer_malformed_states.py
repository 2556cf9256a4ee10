""":meth:`ColumnShufflingBuffer.load_state_dict` with malformed states refuses them with a
:class:`PetastormStateError` naming the key at fault, and a refused state leaves the buffer as it was."""
import numpy as np
import pytest

from petastorm.adapters import ColumnShufflingBuffer
from petastorm.errors import PetastormStateError

_RNG = np.random.default_rng(0).bit_generator.state


def _held():
    buf = ColumnShufflingBuffer(10, seed=0)
    buf.add({"a": np.arange(5)})
    return buf


@pytest.mark.parametrize("state, key", [
    ({"rows": [1, 2], "rng": _RNG}, "rows"),                                       # was AttributeError
    ({"rows": {"a": np.arange(3)}, "rng": "x"}, "rng"),                            # was numpy's TypeError
    ({"rows": {"a": np.arange(3), "b": np.arange(2)}, "rng": _RNG}, "rows"),        # was a schema error
    ({"rows": {"a": 5}, "rng": _RNG}, "rows"),                                     # was TypeError: no len()
])
def test_malformed_state_is_refused_and_the_buffer_kept(state, key):
    buf = _held()
    with pytest.raises(PetastormStateError, match=f"'{key}'"):
        buf.load_state_dict(state)
    assert buf.size == 5
    assert sorted(buf.retrieve(5)["a"].tolist()) == [0, 1, 2, 3, 4]


def test_a_valid_state_still_loads():
    buf = _held()
    other = ColumnShufflingBuffer(10, seed=1)
    other.load_state_dict(buf.state_dict())
    assert np.array_equal(other.retrieve(5)["a"], buf.retrieve(5)["a"])
