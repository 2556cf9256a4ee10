"""WeightedSamplingReader over real ngram readers.

Recorded from petastorm 0.12.1 (black box, /work/main/.venv-original, with ``numpy.float = float`` set first
so that its WeightedSamplingReader runs under numpy 1.26; 0.13.1 gives the same): readers whose NGrams
list the same fields at the same offsets mix even when their ``delta_threshold``, ``timestamp_overlap`` or
``timestamp_field`` differ (datasets recorded at different rates); other offsets or fields are refused.
"""
import pytest

from petastorm import make_reader
from petastorm.ngram import NGram
from petastorm.weighted_sampling_reader import WeightedSamplingReader


def _reader(url, fields=None, delta=10, ts="timestamp", overlap=True):
    fields = fields or {0: ["id", "timestamp"], 1: ["id"]}
    return make_reader(url, schema_fields=NGram(fields, delta, ts, overlap), workers_count=1, num_epochs=1)


@pytest.mark.parametrize("other", [dict(delta=20), dict(overlap=False), dict(ts="id")])
def test_ngram_readers_differing_only_in_threshold_overlap_or_timestamp_mix(synthetic_dataset, other):
    # 0.12.1: accepted; windows come from both readers until one is exhausted
    with WeightedSamplingReader([_reader(synthetic_dataset), _reader(synthetic_dataset, **other)], [0.5, 0.5],
                                seed=1) as reader:
        windows = list(reader)
    assert len(windows) >= 30
    for w in windows:
        assert sorted(w) == [0, 1]
        assert w[0]._fields == ("id", "timestamp") and w[1]._fields == ("id",)


def test_ngram_readers_with_other_offsets_are_refused(synthetic_dataset):
    # 0.12.1: ValueError "All readers passed to WeightedSamplingReader should have the same ngram spec"
    a = _reader(synthetic_dataset)
    b = _reader(synthetic_dataset, fields={-1: ["id", "timestamp"], 0: ["id"]})
    try:
        with pytest.raises(ValueError, match="same ngram spec"):
            WeightedSamplingReader([a, b], [0.5, 0.5])
    finally:
        for r in (a, b):
            r.stop()
            r.join()
