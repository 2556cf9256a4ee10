"""The item shuffling buffers refuse a state that is not a dict with a :class:`PetastormStateError`
(``NoopShufflingBuffer.load_state_dict(None)`` raised a bare ``TypeError``)."""
import pytest

from petastorm.errors import PetastormStateError
from petastorm.reader_impl.shuffling_buffer import NoopShufflingBuffer, RandomShufflingBuffer


@pytest.mark.parametrize("make", [NoopShufflingBuffer, lambda: RandomShufflingBuffer(10, 0)])
@pytest.mark.parametrize("state", [None, [1, 2], "items"])
def test_a_state_that_is_not_a_dict_is_refused(make, state):
    buf = make()
    buf.add_many([1, 2])
    with pytest.raises(PetastormStateError, match="state"):
        buf.load_state_dict(state)
    assert buf.size == 2
