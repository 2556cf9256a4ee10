"""WeightedSamplingReader: mixing readers with given probabilities."""
import numpy as np
import pytest

from petastorm.ngram import NGram
from petastorm.test_util.reader_mock import ReaderMock, schema_data_generator_example
from petastorm.unischema import Unischema, UnischemaField
from petastorm.weighted_sampling_reader import WeightedSamplingReader

Tagged = Unischema("Tagged", [UnischemaField("source", np.int64, ()), UnischemaField("value", np.float32, (3,))])


def _tagged(source):
    return ReaderMock(Tagged, lambda s: {"source": source, "value": np.full(3, source, np.float32)})


class _FiniteReader(ReaderMock):
    """A ReaderMock that runs out after ``n`` rows, as a reader with ``num_epochs=1`` does."""

    def __init__(self, source, n):
        super().__init__(Tagged, lambda s: {"source": source, "value": np.zeros(3, np.float32)})
        self._left = n

    def fetch(self, timeout=None):
        if self._left == 0:
            self.last_row_consumed = True
            raise StopIteration
        self._left -= 1
        return super().fetch(timeout)


def _sources(reader, n):
    return np.array([next(reader).source for _ in range(n)])


def test_items_come_from_each_reader_in_proportion_to_its_probability():
    reader = WeightedSamplingReader([_tagged(0), _tagged(1), _tagged(2)], [0.2, 0.5, 0.3], seed=0)
    counts = np.bincount(_sources(reader, 6000), minlength=3) / 6000
    np.testing.assert_allclose(counts, [0.2, 0.5, 0.3], atol=0.03)


def test_weights_are_normalised():
    a = _sources(WeightedSamplingReader([_tagged(0), _tagged(1)], [1, 3], seed=5), 500)
    b = _sources(WeightedSamplingReader([_tagged(0), _tagged(1)], [0.25, 0.75], seed=5), 500)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(WeightedSamplingReader([_tagged(0), _tagged(1)], [1, 3]).probabilities, [0.25, 0.75])


def test_a_reader_of_probability_zero_is_never_read():
    assert set(_sources(WeightedSamplingReader([_tagged(0), _tagged(1)], [0, 1], seed=1), 2000)) == {1}
    assert set(_sources(WeightedSamplingReader([_tagged(0), _tagged(1)], [1, 0], seed=1), 2000)) == {0}


def test_same_seed_same_sequence_other_seed_other_sequence():
    def run(seed):
        return _sources(WeightedSamplingReader([_tagged(0), _tagged(1)], [0.5, 0.5], seed=seed), 200)

    np.testing.assert_array_equal(run(3), run(3))
    assert not np.array_equal(run(3), run(4))


def test_items_are_the_inner_readers_items():
    reader = WeightedSamplingReader([_tagged(0), _tagged(1)], [0.5, 0.5], seed=2)
    for _ in range(20):
        row = next(reader)
        assert type(row)._fields == ("source", "value")
        np.testing.assert_array_equal(row.value, np.full(3, row.source, np.float32))
    assert next(iter(reader)).source in (0, 1)
    assert reader.next().source in (0, 1)


def test_iteration_stops_when_the_picked_reader_is_exhausted():
    reader = WeightedSamplingReader([_FiniteReader(0, 5), _FiniteReader(1, 10 ** 6)], [0.5, 0.5], seed=0)
    rows = list(reader)
    sources = [r.source for r in rows]
    assert sources.count(0) == 5
    assert reader.last_row_consumed is True


def test_exposes_the_readers_schema_and_output_kind():
    inner = [_tagged(0), _tagged(1)]
    reader = WeightedSamplingReader(inner, [0.5, 0.5])
    assert reader.schema is inner[0].schema
    assert reader.ngram is None
    assert reader.batched_output is False
    assert reader.is_batched_reader is False


def test_stop_join_and_context_manager_reach_every_reader():
    inner = [_tagged(0), _tagged(1), _tagged(2)]
    with WeightedSamplingReader(inner, [1, 1, 1]) as reader:
        next(reader)
        assert not any(r.stopped for r in inner)
    assert all(r.stopped for r in inner)
    inner = [_tagged(0), _tagged(1)]
    reader = WeightedSamplingReader(inner, [1, 1])
    reader.stop()
    reader.join()
    assert all(r.stopped for r in inner)


def test_fewer_than_two_readers_is_refused():
    with pytest.raises(ValueError, match="Two or more readers must be specified. Got 1"):
        WeightedSamplingReader([_tagged(0)], [1.0])


@pytest.mark.parametrize("probabilities, match", [
    ([0.5], "2 readers"),
    ([0.5, 0.3, 0.2], "2 readers"),
    ([-0.5, 1.5], "negative"),
    ([0, 0], "zero"),
    ([np.nan, 1], "finite"),
])
def test_bad_probabilities_are_refused(probabilities, match):
    with pytest.raises(ValueError, match=match):
        WeightedSamplingReader([_tagged(0), _tagged(1)], probabilities)


def test_readers_with_different_schemas_are_refused_naming_the_fields():
    other = Unischema("Other", [UnischemaField("source", np.int64, ()), UnischemaField("label", np.int8, ())])
    with pytest.raises(ValueError, match=r"should have the same schema.*reader 1.*\['value'\].*\['label'\]"):
        WeightedSamplingReader([_tagged(0), ReaderMock(other, schema_data_generator_example)], [0.5, 0.5])


def test_readers_with_different_batched_output_are_refused():
    batched = _tagged(1)
    batched.batched_output = True
    with pytest.raises(ValueError, match="batched_output"):
        WeightedSamplingReader([_tagged(0), batched], [0.5, 0.5])


def test_readers_with_different_ngrams_are_refused():
    seq = Unischema("Seq", [UnischemaField("ts", np.int64, ()), UnischemaField("x", np.int32, ())])
    with_ngram = ReaderMock(seq, schema_data_generator_example,
                            ngram=NGram({0: ["ts", "x"], 1: ["ts"]}, delta_threshold=1, timestamp_field="ts"))
    without = ReaderMock(seq, schema_data_generator_example)
    with pytest.raises(ValueError, match="ngram"):
        WeightedSamplingReader([with_ngram, without], [0.5, 0.5])
    # other offsets are refused; another delta_threshold mixes, as 0.12.1 (tests/test_weighted_sampling_reader_ngram.py)
    other_ngram = ReaderMock(seq, schema_data_generator_example,
                             ngram=NGram({-1: ["ts", "x"], 0: ["ts"]}, delta_threshold=1, timestamp_field="ts"))
    with pytest.raises(ValueError, match="ngram"):
        WeightedSamplingReader([with_ngram, other_ngram], [0.5, 0.5])


def test_readers_with_the_same_ngram_spec_mix():
    seq = Unischema("Seq", [UnischemaField("ts", np.int64, ()), UnischemaField("x", np.int32, ())])

    def make():
        return ReaderMock(seq, schema_data_generator_example,
                          ngram=NGram({0: ["ts", "x"], 1: ["ts"]}, delta_threshold=1, timestamp_field="ts"))

    reader = WeightedSamplingReader([make(), make()], [0.5, 0.5], seed=0)
    window = next(reader)
    assert sorted(window) == [0, 1] and window[1]._fields == ("ts",)
    assert reader.ngram is not None


def test_mixing_two_real_datasets(tmp_path):
    from petastorm import make_reader, write_dataset

    urls = []
    for source in (0, 1):
        url = f"file://{tmp_path}/ds{source}"
        rows = ({"source": np.int64(source), "value": np.full(3, i, np.float32)} for i in range(40))
        write_dataset(url, Tagged, rows, progress=False)
        urls.append(url)
    readers = [make_reader(u, workers_count=1, num_epochs=None, reader_pool_type="thread") for u in urls]
    with WeightedSamplingReader(readers, [0.25, 0.75], seed=0) as reader:
        assert reader.schema.fields.keys() == Tagged.fields.keys()
        sources = _sources(reader, 400)
    assert 0.6 < sources.mean() < 0.9
