"""NGram through make_reader: windows of consecutive rows, the delta threshold, windows without overlap,
exact resume."""
import pytest

from petastorm import make_reader
from petastorm.ngram import NGram


def _ngram(ts_field="timestamp", delta=10, overlap=True):
    from _fixtures.datasets import SyntheticSchema as S

    return NGram({-1: [S.id, S.timestamp], 0: [S.id, S.value], 1: [S.id]}, delta_threshold=delta,
                 timestamp_field=getattr(S, ts_field), timestamp_overlap=overlap)


def test_ngrams_are_windows_of_consecutive_rows(synthetic_dataset):
    with make_reader(synthetic_dataset, schema_fields=_ngram(), shuffle_row_groups=False, workers_count=2) as reader:
        grams = list(reader)
    # 10 row groups of 10 rows: 8 windows of 3 consecutive rows per row group
    assert len(grams) == 80
    for g in grams:
        assert sorted(g) == [-1, 0, 1]
        assert int(g[0].id) == int(g[-1].id) + 1 == int(g[1].id) - 1
        assert g[0].value == pytest.approx(int(g[0].id) / 7)
        assert g[-1]._fields == ("id", "timestamp")


def test_ngram_delta_threshold_breaks_windows(synthetic_dataset):
    # consecutive timestamps are 10 apart: a threshold of 10 keeps every window, 5 breaks them all
    with make_reader(synthetic_dataset, schema_fields=_ngram(delta=10)) as reader:
        assert len(list(reader)) == 80
    with make_reader(synthetic_dataset, schema_fields=_ngram(delta=5)) as reader:
        assert list(reader) == []


def test_ngram_without_overlap(synthetic_dataset):
    with make_reader(synthetic_dataset, schema_fields=_ngram(overlap=False), shuffle_row_groups=False) as reader:
        grams = list(reader)
    # windows of 3 rows that share no timestamp: rows 0-2, 3-5 and 6-8 of each 10-row row group
    starts = [int(g[-1].id) for g in grams]
    assert starts == [rg * 10 + k for rg in range(10) for k in (0, 3, 6)]
    assert all(int(g[1].id) == int(g[-1].id) + 2 for g in grams)


def test_ngram_resume_continues_exactly(synthetic_dataset):
    kwargs = dict(schema_fields=_ngram(), seed=3, shuffle_rows=True, num_epochs=2)
    with make_reader(synthetic_dataset, **kwargs) as reader:
        full = [int(g[0].id) for g in reader]
    with make_reader(synthetic_dataset, **kwargs) as reader:
        head = [int(next(reader)[0].id) for _ in range(45)]
        state = reader.state_dict()
    with make_reader(synthetic_dataset, resume_from=state, **kwargs) as reader:
        tail = [int(g[0].id) for g in reader]
    assert head + tail == full
