""":class:`petastorm.adapters.ColumnShufflingBuffer` with the inputs a hostile user gives: bad counts and columns
that are not aligned arrays."""
import numpy as np
import pytest

from petastorm.adapters import ColumnShufflingBuffer
from petastorm.errors import PetastormArgumentError, PetastormSchemaError, PetastormTypeError


@pytest.mark.parametrize("rounds", [1, 4])
@pytest.mark.parametrize("count", [-1, -3, 2.7, None, True, "2"])
def test_retrieve_refuses_a_bad_count_and_keeps_its_rows(rounds, count):
    # a negative count served "the round" that was not there (AttributeError on None) and corrupted the
    # buffer's size; 2.7 was truncated silently
    buf = ColumnShufflingBuffer(100, seed=0, rounds=rounds)
    buf.add({"a": np.arange(50)})
    with pytest.raises(PetastormArgumentError, match="count"):
        buf.retrieve(count)
    assert buf.size == 50
    rows = np.concatenate([buf.retrieve(7)["a"] for _ in range(8)])
    assert sorted(rows.tolist()) == list(range(50))


def test_retrieve_takes_numpy_integers_and_zero():
    buf = ColumnShufflingBuffer(100, seed=0)
    buf.add({"a": np.arange(10)})
    assert len(buf.retrieve(np.int64(3))["a"]) == 3
    assert len(buf.retrieve(0)["a"]) == 0 and buf.size == 7


@pytest.mark.parametrize("second", [1, 5, 0])
def test_add_refuses_columns_of_different_lengths(second):
    # a 1-row column was broadcast to every row (its value repeated silently), 5 rows gave numpy's
    # "could not broadcast" naming no field
    buf = ColumnShufflingBuffer(100, seed=0)
    with pytest.raises(PetastormSchemaError, match=r"'b' \d+ rows"):
        buf.add({"a": np.arange(10), "b": np.arange(second)})
    buf.add({"a": np.arange(10), "b": np.arange(10)})
    with pytest.raises(PetastormSchemaError, match=r"'a' 3 rows, 'b' 1 rows"):
        buf.add({"a": np.arange(3), "b": np.arange(1)})
    assert buf.size == 10


@pytest.mark.parametrize("value, what", [([1, 2, 3], "list"), (np.float32(3), "float32"), (7, "int")])
def test_add_refuses_a_column_that_is_not_an_array_naming_it(value, what):
    # a list gave AttributeError: 'list' object has no attribute 'dtype'; a scalar TypeError: no len()
    buf = ColumnShufflingBuffer(100, seed=0)
    with pytest.raises(PetastormTypeError, match=f"'bad'.*{what}"):
        buf.add({"ok": np.arange(3), "bad": value})
    with pytest.raises(PetastormTypeError, match=f"'bad'.*{what}"):
        buf.add({"bad": value, "ok": np.arange(3)})
    assert buf.size == 0


@pytest.mark.parametrize("seed", [-1, "a", 1.5])
def test_a_bad_seed_is_refused_naming_it(seed):
    # numpy's "expected non-negative integer" / "SeedSequence expects int..." named no argument
    with pytest.raises((ValueError, TypeError), match="seed must be"):
        ColumnShufflingBuffer(10, seed=seed)
    from petastorm.reader_impl.pytorch_shuffling_buffer import BatchedRandomShufflingBuffer

    with pytest.raises(ValueError, match="seed must be"):
        BatchedRandomShufflingBuffer(10, 0, seed=seed)
