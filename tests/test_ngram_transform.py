"""NGram with a TransformSpec and with timestamps that cannot be subtracted.

Expected behaviour recorded from petastorm 0.12.1 (black box, /work/main/.venv-original) on a dataset of the
same layout: a field listed in the NGram but removed by ``TransformSpec(removed_fields=...)`` is left out of
the windows (0.12.1 yields the windows without it); a string timestamp field raises a ``TypeError``.
"""
import pytest

from petastorm import TransformSpec, make_reader
from petastorm.ngram import NGram


def _ngram(ts_field="timestamp"):
    from _fixtures.datasets import SyntheticSchema as S

    return NGram({-1: [S.id, S.timestamp], 0: [S.id, S.value]}, delta_threshold=10,
                 timestamp_field=getattr(S, ts_field))


def test_ngram_field_removed_by_transform_is_left_out_of_windows(synthetic_dataset):
    # 0.12.1: {-1: (id, ts), 0: (id,)} windows, 9 per 10-row row group; the removed 'value' is simply absent
    spec = TransformSpec(lambda row: row, removed_fields=["value"])
    with make_reader(synthetic_dataset, schema_fields=_ngram(), transform_spec=spec, shuffle_row_groups=False,
                     workers_count=1) as reader:
        grams = list(reader)
    assert len(grams) == 90
    for g in grams:
        assert g[-1]._fields == ("id", "timestamp")
        assert g[0]._fields == ("id",)
        assert int(g[0].id) == int(g[-1].id) + 1


def test_ngram_transform_keeps_edited_values(synthetic_dataset):
    spec = TransformSpec(lambda row: {**row, "value": row["value"] * 2})
    with make_reader(synthetic_dataset, schema_fields=_ngram(), transform_spec=spec, shuffle_row_groups=False,
                     workers_count=1) as reader:
        grams = list(reader)
    assert len(grams) == 90
    assert all(g[0].value == pytest.approx(2 * int(g[0].id) / 7) for g in grams)


def test_ngram_transform_removing_the_timestamp_names_it(synthetic_dataset):
    spec = TransformSpec(lambda row: row, removed_fields=["timestamp"])
    with make_reader(synthetic_dataset, schema_fields=_ngram(), transform_spec=spec, workers_count=1) as reader:
        with pytest.raises(ValueError, match="timestamp"):
            next(reader)


def test_ngram_string_timestamp_error_names_the_field(synthetic_dataset):
    from _fixtures.datasets import SyntheticSchema as S

    ngram = NGram({0: [S.id, S.name], 1: [S.name]}, delta_threshold=10, timestamp_field=S.name)
    with make_reader(synthetic_dataset, schema_fields=ngram, workers_count=1) as reader:
        # 0.12.1 raises TypeError ("unsupported operand type(s) for -: 'numpy.str_' and 'numpy.str_'")
        with pytest.raises(TypeError, match="'name'"):
            next(reader)
