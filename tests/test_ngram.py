"""NGram: windows of consecutive rows by timestamp, from row lists (the original's form_ngram) and from
column batches (the workers' form_ngrams_from_columns)."""
import pickle

import cloudpickle
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from petastorm import make_reader
from petastorm.errors import PetastormSchemaError
from petastorm.ngram import NGram, ngram_window_starts, windows_in_row_slice
from petastorm.predicates import in_lambda
from petastorm.unischema import Unischema, UnischemaField

TestSchema = Unischema("TestSchema", [
    UnischemaField("id", np.int64, (), None, False),
    UnischemaField("id2", np.int32, (), None, False),
    UnischemaField("sensor_name", np.str_, (), None, False),
    UnischemaField("matrix", np.float32, (2, 2), None, False),
])


def _rows(ids):
    return [{"id": i, "id2": i % 3, "sensor_name": f"s{i}", "matrix": np.full((2, 2), i, np.float32)} for i in ids]


def _columns(ids):
    ids = np.asarray(ids, dtype=np.int64)
    return {"id": ids, "id2": (ids % 3).astype(np.int32), "sensor_name": np.array([f"s{i}" for i in ids]),
            "matrix": np.repeat(ids.astype(np.float32), 4).reshape(-1, 2, 2)}


def _ids(windows):
    return [{k: int(v["id"]) for k, v in w.items() if "id" in v} for w in windows]


DOC_FIELDS = {-1: [TestSchema.id, TestSchema.id2, TestSchema.matrix], 0: [TestSchema.id, TestSchema.id2,
                                                                          TestSchema.sensor_name]}


def test_documented_case_1_nothing_within_threshold():
    ngram = NGram(DOC_FIELDS, delta_threshold=5, timestamp_field=TestSchema.id)
    assert ngram.form_ngram(_rows([0, 10, 20, 30]), TestSchema) == []
    assert ngram.form_ngrams_from_columns(_columns([0, 10, 20, 30]), 4) == []


def test_documented_case_2_skips_pairs_further_apart_than_the_threshold():
    ngram = NGram(DOC_FIELDS, delta_threshold=4, timestamp_field=TestSchema.id)
    ids = [0, 3, 8, 10, 11, 20, 30]
    expected = [{-1: 0, 0: 3}, {-1: 8, 0: 10}, {-1: 10, 0: 11}]
    assert _ids(ngram.form_ngram(_rows(ids), TestSchema)) == expected
    assert _ids(ngram.form_ngrams_from_columns(_columns(ids), len(ids))) == expected


def test_each_offset_holds_only_its_fields():
    ngram = NGram(DOC_FIELDS, delta_threshold=4, timestamp_field=TestSchema.id)
    for windows in (ngram.form_ngram(_rows([0, 3]), TestSchema), ngram.form_ngrams_from_columns(_columns([0, 3]), 2)):
        (w,) = windows
        assert set(w) == {-1, 0}
        assert set(w[-1]) == {"id", "id2", "matrix"} and set(w[0]) == {"id", "id2", "sensor_name"}
        assert w[0]["sensor_name"] == "s3"
        np.testing.assert_array_equal(w[-1]["matrix"], np.zeros((2, 2)))


def test_gap_offsets_are_empty_and_key_order_does_not_matter():
    ngram = NGram({1: [TestSchema.id], -1: [TestSchema.id]}, delta_threshold=1, timestamp_field=TestSchema.id)
    assert ngram.length == 3
    windows = ngram.form_ngrams_from_columns(_columns([5, 6, 7, 8]), 4)
    assert windows == ngram.form_ngram(_rows([5, 6, 7, 8]), TestSchema)
    assert [sorted(w) for w in windows] == [[-1, 0, 1]] * 2
    assert windows[0][0] == {} and windows[0][-1]["id"] == 5 and windows[0][1]["id"] == 7


def test_no_overlap_windows_share_no_rows():
    ngram = NGram({0: ["id"], 1: ["id"], 2: ["id"]}, delta_threshold=1, timestamp_field="id",
                  timestamp_overlap=False)
    ngram.resolve_regex_field_names(TestSchema)
    ids = list(range(10))
    expected = [{0: 0, 1: 1, 2: 2}, {0: 3, 1: 4, 2: 5}, {0: 6, 1: 7, 2: 8}]
    assert _ids(ngram.form_ngram(_rows(ids), TestSchema)) == expected
    assert _ids(ngram.form_ngrams_from_columns(_columns(ids), 10)) == expected


def test_no_overlap_with_equal_timestamps_follows_the_original_rule():
    # Behaviour of petastorm 0.13.1 (black box): a window starts only after the previous window's last timestamp.
    ngram = NGram({0: [TestSchema.id], 1: [TestSchema.id]}, 4, TestSchema.id, timestamp_overlap=False)
    ids = [0, 1, 2, 2, 3, 4, 5, 6]
    expected = [{0: 0, 1: 1}, {0: 2, 1: 2}, {0: 3, 1: 4}, {0: 5, 1: 6}]
    assert _ids(ngram.form_ngram(_rows(ids), TestSchema)) == expected
    assert _ids(ngram.form_ngrams_from_columns(_columns(ids), len(ids))) == expected


def test_columns_are_sorted_by_timestamp_first():
    ngram = NGram({0: [TestSchema.id, TestSchema.sensor_name], 1: [TestSchema.id]}, 1, TestSchema.id)
    windows = ngram.form_ngrams_from_columns(_columns([3, 1, 2, 0]), 4)
    assert _ids(windows) == [{0: 0, 1: 1}, {0: 1, 1: 2}, {0: 2, 1: 3}]
    assert [w[0]["sensor_name"] for w in windows] == ["s0", "s1", "s2"]


def test_form_ngram_refuses_unsorted_rows_like_the_original():
    ngram = NGram({0: [TestSchema.id], 1: [TestSchema.id]}, 4, TestSchema.id)
    with pytest.raises(NotImplementedError, match="NGram assumes that the data is sorted by id field"):
        ngram.form_ngram(_rows([0, 2, 1]), TestSchema)


def test_batch_shorter_than_the_window_gives_nothing():
    ngram = NGram({0: [TestSchema.id], 2: [TestSchema.id]}, 10, TestSchema.id)
    assert ngram.form_ngrams_from_columns(_columns([1, 2]), 2) == []


def test_accessors_and_schema_views():
    ngram = NGram({-1: [TestSchema.id, TestSchema.matrix], 1: [TestSchema.id2]}, 4, TestSchema.id)
    assert ngram.length == 3 and ngram.delta_threshold == 4 and ngram.timestamp_field == TestSchema.id
    assert ngram.timestamp_overlap is True
    assert ngram.get_field_names_at_timestep(-1) == ["id", "matrix"]
    assert ngram.get_field_names_at_timestep(0) == [] and ngram.get_field_names_at_timestep(7) == []
    assert ngram.get_field_names_at_all_timesteps() == [TestSchema.id, TestSchema.matrix, TestSchema.id2]
    assert list(ngram.get_schema_at_timestep(TestSchema, -1).fields) == ["id", "matrix"]
    assert list(ngram.get_schema_at_timestep(TestSchema, 0).fields) == []


def test_make_namedtuple_turns_each_offset_into_a_row():
    ngram = NGram(DOC_FIELDS, delta_threshold=4, timestamp_field=TestSchema.id)
    (window,) = ngram.form_ngrams_from_columns(_columns([0, 3]), 2)
    tuples = ngram.make_namedtuple(TestSchema, window)
    assert tuples[-1].id == 0 and tuples[0].sensor_name == "s3"
    assert tuples[-1]._fields == ("id", "id2", "matrix")


def test_regex_fields_resolve_against_the_schema():
    ngram = NGram({0: ["id.*", TestSchema.matrix], 1: ["sensor_.*"]}, 4, "i.")
    ngram.resolve_regex_field_names(TestSchema)
    assert {f.name for f in ngram.fields[0]} == {"id", "id2", "matrix"}
    assert ngram.fields[1] == [TestSchema.sensor_name]
    assert ngram.timestamp_field == TestSchema.id


def test_timestamp_regex_matching_nothing_is_a_clear_error():
    ngram = NGram({0: ["id"]}, 4, "nope")
    with pytest.raises(PetastormSchemaError, match="timestamp_field 'nope' matches 0 fields"):
        ngram.resolve_regex_field_names(TestSchema)


@pytest.mark.parametrize("kwargs,message", [
    (dict(fields=[1], delta_threshold=1, timestamp_field="id"), "Fields must be set and must be a dictionary"),
    (dict(fields={}, delta_threshold=1, timestamp_field="id"), "Fields must be set and must be a dictionary"),
    (dict(fields={0: "id"}, delta_threshold=1, timestamp_field="id"), "Each field value must be a list"),
    (dict(fields={0: [1]}, delta_threshold=1, timestamp_field="id"), "All field values must be of type"),
    (dict(fields={"a": ["id"]}, delta_threshold=1, timestamp_field="id"), "must be integers"),
    (dict(fields={0: ["id"]}, delta_threshold="1", timestamp_field="id"), "delta_threshold must be a number"),
    (dict(fields={0: ["id"]}, delta_threshold=1, timestamp_field=3), "timestamp_field must be set"),
    (dict(fields={0: ["id"]}, delta_threshold=1, timestamp_field="id", timestamp_overlap=1),
     "timestamp_overlap must be set and must be of type bool"),
])
def test_invalid_arguments_raise_the_original_value_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        NGram(**kwargs)


def test_missing_column_is_named():
    # the timestamp column is needed and named; another listed field missing from the batch (removed by a
    # TransformSpec) is left out of the windows, as 0.12.1 does (tests/test_ngram_transform.py)
    ngram = NGram({0: [TestSchema.id, TestSchema.sensor_name]}, 4, TestSchema.id)
    with pytest.raises(PetastormSchemaError, match="'id'"):
        ngram.form_ngrams_from_columns({"sensor_name": np.arange(3)}, 3)
    assert ngram.form_ngrams_from_columns({"id": np.arange(3)}, 3) == [{0: {"id": 0}}, {0: {"id": 1}}, {0: {"id": 2}}]


def test_float_and_datetime_timestamps():
    ngram = NGram({0: ["t"], 1: ["t"]}, 0.5, "t")
    windows = ngram.form_ngrams_from_columns({"t": np.array([0.0, 0.4, 1.2, 1.6])}, 4)
    assert [(w[0]["t"], w[1]["t"]) for w in windows] == [(0.0, 0.4), (1.2, 1.6)]
    ngram = NGram({0: ["t"], 1: ["t"]}, np.timedelta64(1, "s"), "t")
    t = np.array(["2020-01-01T00:00:00", "2020-01-01T00:00:01", "2020-01-01T00:00:05"], dtype="datetime64[ms]")
    assert len(ngram.form_ngrams_from_columns({"t": t}, 3)) == 1


def test_ngram_survives_cloudpickle():
    ngram = NGram({0: ["id"], 1: ["id"]}, 2, "id", timestamp_overlap=False)
    clone = pickle.loads(cloudpickle.dumps(ngram))
    assert clone.length == 2 and clone.timestamp_overlap is False and clone.fields == ngram.fields


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(0, 30), min_size=0, max_size=25), st.integers(1, 4), st.integers(0, 4), st.booleans())
def test_columnar_windows_equal_the_row_algorithm(ids, length, delta, overlap):
    fields = {k: [TestSchema.id, TestSchema.sensor_name] for k in range(-1, length - 1)}
    ngram = NGram(fields, delta, TestSchema.id, timestamp_overlap=overlap)
    sorted_ids = sorted(ids)
    by_rows = ngram.form_ngram(_rows(sorted_ids), TestSchema)
    by_columns = ngram.form_ngrams_from_columns(_columns(ids), len(ids))
    assert _ids(by_columns) == _ids(by_rows)
    for w in by_columns:
        ts = [w[k]["id"] for k in sorted(w)]
        assert len(ts) == length and all(0 <= b - a <= delta for a, b in zip(ts, ts[1:]))
    if not overlap:
        ends = [(w[-1]["id"], w[length - 2]["id"]) for w in by_columns]
        assert all(prev_end < start for (_, prev_end), (start, _) in zip(ends, ends[1:]))


def test_window_starts_function_directly():
    ts = np.array([0, 1, 2, 10, 11, 12, 13])
    assert ngram_window_starts(ts, 2, 1).tolist() == [0, 1, 3, 4, 5]
    assert ngram_window_starts(ts, 2, 1, timestamp_overlap=False).tolist() == [0, 3, 5]
    assert ngram_window_starts(ts, 1, 0).tolist() == list(range(7))
    assert ngram_window_starts(ts, 8, 100).tolist() == []


def test_matches_the_original_on_a_gapped_window():
    # petastorm 0.13.1 (black box) on these ids with offsets -1 and 1, threshold 4:
    # [{-1: {'id': 0, ...}, 0: {}, 1: {'id': 2}}, (1, 3), (2, 4), (10, 12)]
    ngram = NGram({-1: [TestSchema.id, TestSchema.id2], 1: [TestSchema.id]}, 4, TestSchema.id)
    ids = [0, 1, 2, 3, 4, 10, 11, 12]
    for windows in (ngram.form_ngram(_rows(ids), TestSchema), ngram.form_ngrams_from_columns(_columns(ids), 8)):
        assert _ids(windows) == [{-1: 0, 1: 2}, {-1: 1, 1: 3}, {-1: 2, 1: 4}, {-1: 10, 1: 12}]
        assert all(w[0] == {} for w in windows)


# --- equality (petastorm 0.12.1 and 0.13.1, black box: fields per offset compare as sets, UnischemaFields and
# regular expressions as given; the original ignores delta_threshold, timestamp_field and timestamp_overlap,
# raises AttributeError against a non-NGram, and is unhashable) ---------------------------------------------

def test_ngrams_with_the_same_fields_per_offset_in_any_order_are_equal():
    a = NGram({0: [TestSchema.id, TestSchema.id2], 1: [TestSchema.id]}, 1, TestSchema.id)
    b = NGram({1: [TestSchema.id], 0: [TestSchema.id2, TestSchema.id, TestSchema.id]}, 1.0, TestSchema.id)
    assert a == b and not a != b
    assert NGram({0: ["id"]}, 1, "id") == NGram({0: ["id"]}, 1, "id")


@pytest.mark.parametrize("other", [
    NGram({0: [TestSchema.id2], 1: [TestSchema.id]}, 1, TestSchema.id),  # other fields at offset 0
    NGram({0: [TestSchema.id]}, 1, TestSchema.id),  # an offset fewer
    NGram({0: [TestSchema.id], 2: [TestSchema.id]}, 1, TestSchema.id),  # other offsets
    NGram({0: [TestSchema.id], 1: [TestSchema.id]}, 2, TestSchema.id),  # delta_threshold
    NGram({0: [TestSchema.id], 1: [TestSchema.id]}, 1, TestSchema.id2),  # timestamp_field
    NGram({0: [TestSchema.id], 1: [TestSchema.id]}, 1, TestSchema.id, timestamp_overlap=False),
    NGram({0: ["id"], 1: ["id"]}, 1, "id"),  # regular expressions are not the fields they match
])
def test_ngrams_differing_in_fields_offsets_threshold_or_timestamp_are_not_equal(other):
    ngram = NGram({0: [TestSchema.id], 1: [TestSchema.id]}, 1, TestSchema.id)
    assert ngram != other and not ngram == other


def test_resolved_regular_expressions_equal_the_fields_they_matched():
    ngram = NGram({0: ["id.*"], 1: ["id"]}, 1, "id")
    ngram.resolve_regex_field_names(TestSchema)
    assert ngram == NGram({0: [TestSchema.id2, TestSchema.id], 1: [TestSchema.id]}, 1, TestSchema.id)


def test_ngram_is_unequal_to_other_types_and_unhashable():
    ngram = NGram({0: [TestSchema.id]}, 1, TestSchema.id)
    assert ngram != 5 and ngram != None  # noqa: E711 - the original raised AttributeError here
    with pytest.raises(TypeError, match="unhashable"):
        hash(ngram)


# --- drop partitions: every window of a row group, each once ------------------------------------------------

def _five_step():
    from _fixtures.datasets import SyntheticSchema as S

    return NGram({k: [S.id, S.timestamp] for k in range(5)}, delta_threshold=10, timestamp_field=S.timestamp)


def _read_windows(url, **kwargs):
    with make_reader(url, schema_fields=_five_step(), workers_count=2, **kwargs) as reader:
        return [tuple(int(w[k].id) for k in range(5)) for w in reader]


# The original 0.12.1 on 10 row groups of 10 rows (ids 0..99 in order, a 5-step ngram, shuffle_row_groups=False):
# 60 windows for shuffle_row_drop_partitions 1, 2, 3, 5 and 10, the same windows in the same order (windows
# start at rows 0..5 of each row group); each partition returns the windows that start in it.
@pytest.mark.parametrize("pool", ["dummy", "thread", "process"])
@pytest.mark.parametrize("parts", [2, 3, 5, 10])
def test_drop_partitions_yield_every_window_of_the_row_groups_once(synthetic_dataset, pool, parts):
    expected = [tuple(range(g * 10 + s, g * 10 + s + 5)) for g in range(10) for s in range(6)]
    assert _read_windows(synthetic_dataset, shuffle_row_groups=False, reader_pool_type=pool) == expected
    got = _read_windows(synthetic_dataset, shuffle_row_groups=False, reader_pool_type=pool,
                        shuffle_row_drop_partitions=parts)
    assert got == expected


@pytest.mark.parametrize("shuffle_rows,shuffle_row_groups", [(True, False), (False, True), (True, True)])
def test_shuffled_drop_partitions_yield_the_same_set_of_windows(synthetic_dataset, shuffle_rows, shuffle_row_groups):
    whole = _read_windows(synthetic_dataset, shuffle_row_groups=False)
    got = _read_windows(synthetic_dataset, seed=4, shuffle_rows=shuffle_rows, shuffle_row_groups=shuffle_row_groups,
                        shuffle_row_drop_partitions=3, reader_pool_type="thread")
    assert len(got) == 60 and sorted(got) == whole
    if shuffle_row_groups:  # partitions of one row group are dealt apart
        assert got != whole


def test_drop_partitions_with_a_predicate_keep_every_window(synthetic_dataset):
    # windows across the rows the predicate removes, as without partitions (the original 0.12.1 loses those that
    # cross a partition boundary: 60 instead of 70 windows of 3 with ids % 10 != 4 and 3 partitions)
    def grams(parts):
        from _fixtures.datasets import SyntheticSchema as S

        ngram = NGram({k: [S.id] for k in range(3)}, delta_threshold=20, timestamp_field=S.timestamp)
        with make_reader(synthetic_dataset, schema_fields=ngram, shuffle_row_groups=False, reader_pool_type="dummy",
                         shuffle_row_drop_partitions=parts, predicate=in_lambda(["id"], _not_four)) as reader:
            return [tuple(int(w[k].id) for k in range(3)) for w in reader]

    whole = grams(1)
    assert len(whole) == 70 and (3, 5, 6) in whole
    assert grams(3) == whole and grams(10) == whole


def _not_four(i):
    return i % 10 != 4


@pytest.mark.parametrize("pool", ["dummy", "process"])
def test_resume_inside_a_drop_partition_continues_its_windows(synthetic_dataset, pool):
    opts = dict(seed=2, shuffle_rows=True, shuffle_row_groups=True, shuffle_row_drop_partitions=4, num_epochs=2,
                reader_pool_type=pool)
    full = _read_windows(synthetic_dataset, **opts)
    assert len(full) == 120
    for stop in (1, 7, 61):
        with make_reader(synthetic_dataset, schema_fields=_five_step(), workers_count=2, **opts) as reader:
            head = [tuple(int(w[k].id) for k in range(5)) for w in (next(reader) for _ in range(stop))]
            state = reader.state_dict()
        tail = _read_windows(synthetic_dataset, resume_from=state, **opts)
        assert head + tail == full


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 40), st.integers(1, 40), st.integers(1, 8), st.data())
def test_row_slices_deal_each_window_to_exactly_one_partition(rows, batch_rows, parts, data):
    batch_rows = min(batch_rows, rows)  # a predicate only removes rows
    first_rows = np.arange(batch_rows)
    bounds = np.linspace(0, rows, parts + 1).astype(int)
    owners = np.zeros(batch_rows, dtype=int)
    for a, b in zip(bounds[:-1], bounds[1:]):
        owners += windows_in_row_slice(first_rows, batch_rows, int(a), int(b), rows)
    assert (owners == 1).all()
    if batch_rows == rows:  # no predicate: a window belongs to the partition of its first row
        a, b = sorted(data.draw(st.lists(st.integers(0, rows), min_size=2, max_size=2)))
        assert np.flatnonzero(windows_in_row_slice(first_rows, rows, a, b, rows)).tolist() == list(range(a, b))
