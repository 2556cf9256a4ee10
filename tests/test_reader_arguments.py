"""Arguments of make_reader / make_batch_reader: the original 0.12.1's signatures (recorded by running it as a
black box: tools_compat/original_signatures.py -> tools_compat/original_signatures.json), the deprecated
arguments kept for compatibility, and ``filters=`` on make_reader."""
import inspect
import json
import os
import warnings

import numpy as np
import pytest

import petastorm
from petastorm import make_batch_reader, make_reader
from petastorm.errors import NoDataAvailableError

RECORD = os.path.join(os.path.dirname(__file__), "..", "tools_compat", "original_signatures.json")
FUNCTIONS = ["make_reader", "make_batch_reader"]
# Parameters of ours that the original 0.12.1 lacks and that may still be passed by position (they come after
# every original parameter, so no call the original accepted changes meaning). Any other addition must be
# keyword-only.
EXTRA_POSITIONAL = {"make_reader": {"convert_early_to_numpy"}, "make_batch_reader": {"convert_early_to_numpy"}}


def _original(name):
    with open(RECORD) as f:
        doc = json.load(f)
    assert doc["versions"]["petastorm"] == "0.12.1"
    return doc["functions"][name]


def _ours(name):
    return list(inspect.signature(getattr(petastorm, name)).parameters.values())


# -- signatures ----------------------------------------------------------------------------------------------

def test_record_has_the_known_shape_of_the_original():
    reader = _original("make_reader")
    batch = _original("make_batch_reader")
    assert [p["name"] for p in reader[:2]] == ["dataset_url", "schema_fields"]
    assert batch[0]["name"] == "dataset_url_or_urls"
    assert {"pyarrow_serialize", "zmq_copy_buffers", "filters", "filesystem"} <= {p["name"] for p in reader}
    assert len(reader) == 27 and len(batch) == 26


@pytest.mark.parametrize("name", FUNCTIONS)
def test_every_original_parameter_has_the_same_position_kind_and_default(name):
    original, ours = _original(name), _ours(name)
    assert len(ours) >= len(original)
    for i, orig in enumerate(original):
        mine = ours[i]
        assert mine.name == orig["name"], f"{name}: parameter {i} is {mine.name!r}, original {orig['name']!r}"
        assert mine.kind.name == orig["kind"], f"{name}({orig['name']}): kind"
        if orig["default"] is None:
            assert mine.default is inspect.Parameter.empty, f"{name}({orig['name']}) must have no default"
        else:
            assert mine.default is not inspect.Parameter.empty, f"{name}({orig['name']}) lost its default"
            assert repr(mine.default) == orig["default"], f"{name}({orig['name']}): default"


@pytest.mark.parametrize("name", FUNCTIONS)
def test_parameters_added_after_the_original_ones_have_defaults_and_are_keyword_only(name):
    extras = _ours(name)[len(_original(name)):]
    assert {"resume_from", "shard_mode", "balanced_remainder"} <= {p.name for p in extras}
    for p in extras:
        assert p.default is not inspect.Parameter.empty, f"{name}({p.name}) needs a default"
        if p.name not in EXTRA_POSITIONAL.get(name, set()):
            assert p.kind is inspect.Parameter.KEYWORD_ONLY, f"{name}({p.name}) must be keyword-only"


def test_make_batch_reader_has_no_pyarrow_serialize_like_the_original(synthetic_dataset):
    assert "pyarrow_serialize" not in {p["name"] for p in _original("make_batch_reader")}
    with pytest.raises(TypeError, match="pyarrow_serialize"):
        make_batch_reader(synthetic_dataset, pyarrow_serialize=True)


def test_positional_call_in_the_original_order_reaches_the_right_parameters(synthetic_dataset):
    # dataset_url, schema_fields, reader_pool_type, workers_count, pyarrow_serialize, results_queue_size,
    # seed, shuffle_rows, shuffle_row_groups
    with make_reader(synthetic_dataset, ["id"], "dummy", 1, False, 5, 0, False, False) as reader:
        ids = [int(r.id) for r in reader]
    assert ids == list(range(100))


# -- deprecated arguments ------------------------------------------------------------------------------------

def _read_ids(factory, url, **kwargs):
    with factory(url, schema_fields=["id"], reader_pool_type="dummy", shuffle_row_groups=False,
                 **kwargs) as r:
        return np.concatenate([np.atleast_1d(np.asarray(x.id)) for x in r]).tolist()


@pytest.mark.parametrize("factory, argument, value", [
    (make_reader, "zmq_copy_buffers", False),
    (make_reader, "pyarrow_serialize", True),
    (make_batch_reader, "zmq_copy_buffers", False),
], ids=["make_reader-zmq_copy_buffers", "make_reader-pyarrow_serialize",
        "make_batch_reader-zmq_copy_buffers"])
def test_deprecated_argument_warns_naming_it_and_reads_the_same(synthetic_dataset, factory, argument, value):
    with pytest.warns(DeprecationWarning, match=argument) as record:
        ids = _read_ids(factory, synthetic_dataset, **{argument: value})
    assert ids == list(range(100))
    named = [w for w in record if issubclass(w.category, DeprecationWarning) and argument in str(w.message)]
    assert len(named) == 1
    assert os.path.basename(named[0].filename) == os.path.basename(__file__)  # points at the caller


@pytest.mark.parametrize("factory", [make_reader, make_batch_reader])
def test_default_values_of_deprecated_arguments_do_not_warn(synthetic_dataset, factory):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        _read_ids(factory, synthetic_dataset, zmq_copy_buffers=True)
        if factory is make_reader:
            _read_ids(factory, synthetic_dataset, pyarrow_serialize=False)
    deprecated = [str(w.message) for w in record if issubclass(w.category, DeprecationWarning)]
    assert not [m for m in deprecated if "zmq_copy_buffers" in m or "pyarrow_serialize" in m]


def _same_cell(a, b):
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(np.asarray(a), np.asarray(b))
    return a == b or (a is None and b is None)


@pytest.mark.parametrize("pool", ["dummy", "thread"])
def test_convert_early_to_numpy_is_accepted_and_reads_the_same_data(synthetic_dataset, pool):
    def read(**kwargs):
        with make_batch_reader(synthetic_dataset, reader_pool_type=pool, workers_count=2,
                               shuffle_row_groups=False, **kwargs) as reader:
            batches = list(reader)
        return {f: np.concatenate([getattr(b, f) for b in batches]) for f in batches[0]._fields}

    plain, early = read(), read(convert_early_to_numpy=True)
    assert set(plain) == set(early) and "id" in plain
    order_p, order_e = np.argsort(plain["id"]), np.argsort(early["id"])
    for field in plain:
        mine, theirs = plain[field][order_p], early[field][order_e]
        assert mine.dtype == theirs.dtype and mine.shape == theirs.shape, field
        if mine.dtype == object:  # ragged arrays, decimals, nullable ints: compare cell by cell
            assert all(_same_cell(a, b) for a, b in zip(mine, theirs)), field
        else:
            np.testing.assert_array_equal(mine, theirs, err_msg=field)
    assert plain["id"][order_p].tolist() == list(range(100))


# -- filters= on make_reader ---------------------------------------------------------------------------------
# Legacy 0.7.6 dataset: ids 0..99, Hive partitions partition_key=p_<id // 10>, id2 = id % 2.

def _legacy_url(testdata_dir):
    return "file://" + os.path.join(testdata_dir, "legacy", "0.7.6")


@pytest.mark.parametrize("filters, expected", [
    ([("partition_key", "=", "p_3")], set(range(30, 40))),
    ([("partition_key", "in", ["p_0", "p_7"])], set(range(0, 10)) | set(range(70, 80))),
    ([("id", "<", 15)], set(range(15))),
    ([("id", ">=", 42), ("id", "<", 47)], set(range(42, 47))),
    ([("partition_key", "=", "p_2"), ("id", ">", 25)], set(range(26, 30))),
    ([[("partition_key", "=", "p_1")], [("id", ">=", 95)]], set(range(10, 20)) | set(range(95, 100))),
    ([[("id", "<", 3)], [("id", "=", 50)], [("partition_key", "=", "p_9"), ("id", "<", 92)]],
     {0, 1, 2, 50, 90, 91}),
    ([("id", ">", 1000)], set()),
], ids=["partition", "partition-in", "column", "column-range", "partition-and-column", "dnf-or",
        "dnf-or-of-and", "column-matches-nothing"])
@pytest.mark.parametrize("pool", ["dummy", "thread"])
def test_make_reader_filters_give_the_expected_ids(testdata_dir, filters, expected, pool):
    with make_reader(_legacy_url(testdata_dir), schema_fields=["id", "partition_key"], reader_pool_type=pool,
                     workers_count=2, filters=filters) as reader:
        rows = list(reader)
    ids = [int(r.id) for r in rows]
    assert len(ids) == len(set(ids))
    assert set(ids) == expected
    assert all(r.partition_key == f"p_{int(r.id) // 10}" for r in rows)


@pytest.mark.parametrize("num_epochs", [1, None])
@pytest.mark.parametrize("factory", [make_reader, make_batch_reader])
def test_partition_filter_that_matches_nothing_yields_nothing_like_the_original(testdata_dir, factory, num_epochs):
    # the original 0.12.1 (both readers) yields nothing, without an error; with num_epochs=None too (no
    # endless loop over empty epochs)
    with factory(_legacy_url(testdata_dir), schema_fields=["id"], reader_pool_type="dummy", num_epochs=num_epochs,
                 filters=[("partition_key", "=", "p_nope")]) as reader:
        assert list(reader) == []
        state = reader.state_dict()
    with factory(_legacy_url(testdata_dir), schema_fields=["id"], reader_pool_type="dummy", num_epochs=num_epochs,
                 filters=[("partition_key", "=", "p_nope")], resume_from=state) as reader:
        assert list(reader) == []


def test_sharding_an_empty_selection_is_the_originals_no_data_error(testdata_dir):
    for mode in ("original", "balanced"):
        with pytest.raises(NoDataAvailableError) as info:
            make_reader(_legacy_url(testdata_dir), schema_fields=["id"], cur_shard=0, shard_count=2, shard_mode=mode,
                        filters=[("partition_key", "=", "p_nope")])
        # the original's wording (original mode), and what is really wrong: nothing is selected
        assert ("Number of row-groups in the dataset must be greater" in str(info.value)) == (mode == "original")
        assert "rowgroup_selector/filters" in str(info.value) and "select none" in str(info.value)


def test_make_reader_filter_on_a_column_outside_schema_fields(testdata_dir):
    with make_reader(_legacy_url(testdata_dir), schema_fields=["id"], reader_pool_type="dummy",
                     filters=[("id2", "=", 1), ("id", "<", 20)]) as reader:
        rows = list(reader)
    assert sorted(int(r.id) for r in rows) == list(range(1, 20, 2))
    assert rows[0]._fields == ("id",)


def test_make_reader_filters_compose_with_a_predicate_and_all_fields(testdata_dir):
    from petastorm.predicates import in_lambda

    with make_reader(_legacy_url(testdata_dir), reader_pool_type="dummy",
                     filters=[[("partition_key", "=", "p_4")], [("partition_key", "=", "p_5")]],
                     predicate=in_lambda(["id"], lambda i: int(i) % 3 == 0)) as reader:
        rows = list(reader)
    assert sorted(int(r.id) for r in rows) == [i for i in range(40, 60) if i % 3 == 0]
    assert all(r.matrix.shape == (32, 16, 3) for r in rows)
