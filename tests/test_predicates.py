"""Row predicates: per-row semantics of the original, and the vectorised batch evaluation the workers use."""
import pickle

import cloudpickle
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from petastorm.errors import PetastormSchemaError
from petastorm.predicates import (
    PredicateBase,
    evaluate_predicate,
    in_intersection,
    in_lambda,
    in_negate,
    in_pseudorandom_split,
    in_reduce,
    in_set,
)


def _rows(columns, n):
    return [{k: v[i] for k, v in columns.items()} for i in range(n)]


def _per_row(predicate, columns, n):
    return np.array([bool(predicate.do_include(r)) for r in _rows(columns, n)], dtype=bool)


COLUMNS = {
    "id": np.arange(10, dtype=np.int64),
    "f": np.linspace(0, 4.5, 10).astype(np.float32),
    "name": np.array(["a", "b", "c", "d", "e", "a", "b", "c", "d", "e"]),
    "obj_name": np.array(["a", "b", None, "d", "e", "a", "b", None, "d", "e"], dtype=object),
    "flag": np.array([True, False] * 5),
    "vec": np.arange(30, dtype=np.int32).reshape(10, 3),
}


def test_in_set_selects_rows_whose_value_is_listed():
    mask = evaluate_predicate(in_set([2, 5, 99], "id"), COLUMNS, 10)
    assert mask.tolist() == [i in (2, 5) for i in range(10)]
    assert in_set([2], "id").do_include({"id": 2}) and not in_set([2], "id").do_include({"id": 3})


@pytest.mark.parametrize("values,field", [
    ([1, 3.0, True], "id"), (["a", "c"], "name"), (["a", None], "obj_name"), ([0.5, 1.0], "f"),
    ([True], "flag"), (["1", "2"], "id"), ([1, "a"], "name"), ([b"a"], "name"), ([2 ** 70], "id"),
])
def test_in_set_batch_evaluation_agrees_with_do_include(values, field):
    pred = in_set(values, field)
    assert evaluate_predicate(pred, COLUMNS, 10).tolist() == _per_row(pred, COLUMNS, 10).tolist()


def test_in_set_on_strings_matches_text_not_numbers():
    assert evaluate_predicate(in_set(["1"], "id"), COLUMNS, 10).sum() == 0
    assert evaluate_predicate(in_set(["a"], "obj_name"), COLUMNS, 10).tolist() == [
        v == "a" for v in COLUMNS["obj_name"]]


def test_in_intersection_matches_rows_whose_list_shares_a_value():
    pred = in_intersection([4, 100], "vec")
    assert evaluate_predicate(pred, COLUMNS, 10).tolist() == [i == 1 for i in range(10)]
    ragged = {"tags": np.array([np.array([1, 2]), np.array([3]), None, np.array([], np.int64)], dtype=object)}
    assert evaluate_predicate(in_intersection([2, 3], "tags"), ragged, 4).tolist() == [True, True, False, False]
    assert in_intersection([2], "tags").do_include({"tags": [5, 2]})


def test_in_lambda_gets_field_values_in_order_and_the_state_argument():
    pred = in_lambda(["id", "name"], lambda i, n, limit: i < limit and n != "b", 6)
    assert evaluate_predicate(pred, COLUMNS, 10).tolist() == [i < 6 and "abcde"[i % 5] != "b" for i in range(10)]
    assert in_lambda(["id"], lambda i: i > 8).get_fields() == {"id"}


def test_in_lambda_requires_a_list_of_fields():
    with pytest.raises(ValueError, match="Predicate fields should be a list"):
        in_lambda("id", lambda i: True)


def test_in_negate_inverts():
    pred = in_negate(in_set([1, 2], "id"))
    assert evaluate_predicate(pred, COLUMNS, 10).tolist() == [i not in (1, 2) for i in range(10)]
    assert pred.get_fields() == {"id"}


@pytest.mark.parametrize("reduce_func", [all, any, lambda bools: sum(bools) == 1])
def test_in_reduce_combines_predicates(reduce_func):
    pred = in_reduce([in_set([1, 2, 3], "id"), in_set(["c", "d"], "name"), in_lambda(["f"], lambda f: f > 1)],
                     reduce_func)
    assert pred.get_fields() == {"id", "name", "f"}
    assert evaluate_predicate(pred, COLUMNS, 10).tolist() == _per_row(pred, COLUMNS, 10).tolist()


def test_in_pseudorandom_split_matches_the_original_assignment():
    # Subsets of fraction_list [0.5, 0.2, 0.3] that petastorm 0.13.1 assigns (run as a black box).
    expected_ints = "0020200222020011122000011022121222022001"
    expected_strings = "00000002020120220021"
    ints = {"x": np.arange(40, dtype=np.int64)}
    strings = {"x": np.array([f"volume_{i}" for i in range(20)])}
    for data, expected in ((ints, expected_ints), (strings, expected_strings)):
        n = len(data["x"])
        got = np.full(n, -1)
        for subset in range(3):
            mask = evaluate_predicate(in_pseudorandom_split([0.5, 0.2, 0.3], subset, "x"), data, n)
            assert (got[mask] == -1).all(), "subsets must be disjoint"
            got[mask] = subset
        assert "".join(map(str, got)) == expected


def test_in_pseudorandom_split_errors():
    with pytest.raises(ValueError, match="subset_index is out of range"):
        in_pseudorandom_split([0.5, 0.5], 2, "x")
    with pytest.raises(ValueError, match="Tested values does not have split key: x"):
        in_pseudorandom_split([0.5, 0.5], 0, "x").do_include({"y": 1})


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-50, 50), min_size=1, max_size=40), st.lists(st.integers(-50, 50), max_size=6),
       st.sampled_from(["int", "str", "obj"]))
def test_vectorised_evaluation_equals_the_row_loop(values, inclusion, kind):
    if kind == "int":
        col = np.asarray(values, dtype=np.int64)
        inc = inclusion
    elif kind == "str":
        col = np.asarray([str(v) for v in values])
        inc = [str(v) for v in inclusion]
    else:
        col = np.asarray([str(v) if v % 3 else None for v in values], dtype=object)
        inc = [str(v) for v in inclusion]
    columns = {"x": col}
    n = len(values)
    for pred in (in_set(inc, "x"), in_negate(in_set(inc, "x")), in_pseudorandom_split([0.3, 0.7], 1, "x"),
                 in_reduce([in_set(inc, "x"), in_pseudorandom_split([0.4, 0.6], 0, "x")], any)):
        assert evaluate_predicate(pred, columns, n).tolist() == _per_row(pred, columns, n).tolist()


def test_user_subclass_and_duck_typed_predicates_run_row_by_row():
    class Even(PredicateBase):
        def get_fields(self):
            return {"id"}

        def do_include(self, values):
            return values["id"] % 2 == 0

    class Duck:
        def get_fields(self):
            return {"id"}

        def do_include(self, values):
            return values["id"] > 7

    assert evaluate_predicate(Even(), COLUMNS, 10).tolist() == [i % 2 == 0 for i in range(10)]
    assert evaluate_predicate(in_negate(Even()), COLUMNS, 10).tolist() == [i % 2 == 1 for i in range(10)]
    assert evaluate_predicate(Duck(), COLUMNS, 10).tolist() == [i > 7 for i in range(10)]


def test_predicate_on_a_missing_field_names_it():
    with pytest.raises(PetastormSchemaError, match="nope"):
        evaluate_predicate(in_set([1], "nope"), COLUMNS, 10)


def test_empty_batch_gives_empty_mask():
    empty = {k: v[:0] for k, v in COLUMNS.items()}
    assert evaluate_predicate(in_lambda(["id"], lambda i: 1 / 0), empty, 0).shape == (0,)


def test_predicates_with_lambdas_survive_cloudpickle():
    limit = 4
    pred = in_reduce([in_lambda(["id"], lambda i: i < limit), in_negate(in_set([1], "id")),
                      in_pseudorandom_split([0.5, 0.5], 0, "id"), in_intersection([3], "vec")],
                     lambda bools: bools[0] and bools[1])
    clone = pickle.loads(cloudpickle.dumps(pred))
    assert evaluate_predicate(clone, COLUMNS, 10).tolist() == evaluate_predicate(pred, COLUMNS, 10).tolist()
    assert evaluate_predicate(clone, COLUMNS, 10).tolist() == [i in (0, 2, 3) for i in range(10)]


# --- make_batch_reader hands a user's predicate a DataFrame (the original's contract) ----------------------------

class _EvenIds(PredicateBase):
    """Written for the original's make_batch_reader: ``values`` is a DataFrame, the result a boolean Series."""

    def __init__(self):
        self.seen = []

    def get_fields(self):
        return {"id"}

    def do_include(self, values):
        self.seen.append((type(values).__name__, len(values), type(values["id"]).__name__))
        return values["id"] % 2 == 0


def _ids_dataset(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"id": list(range(10)), "s": [f"s{i}" for i in range(10)]}), str(tmp_path / "p.parquet"),
                   row_group_size=5)
    return "file://" + str(tmp_path)


@pytest.mark.parametrize("pool", ["dummy", "process"])
def test_user_predicate_gets_a_dataframe_in_make_batch_reader_and_its_series_selects_rows(tmp_path, pool):
    from petastorm import make_batch_reader

    predicate = _EvenIds()
    with make_batch_reader(_ids_dataset(tmp_path), predicate=predicate, reader_pool_type=pool, workers_count=1,
                           shuffle_row_groups=False) as reader:
        ids = [int(i) for b in reader for i in b.id]
    assert ids == [0, 2, 4, 6, 8]
    if pool == "dummy":
        assert predicate.seen == [("DataFrame", 5, "Series"), ("DataFrame", 5, "Series")]


def test_user_predicate_gets_a_dict_per_row_in_make_reader(tmp_path):
    import warnings

    from petastorm import make_reader

    seen = []

    class Odd(PredicateBase):
        def get_fields(self):
            return {"id", "s"}

        def do_include(self, values):
            seen.append((type(values), type(values["s"])))
            return values["id"] % 2 == 1

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a plain Parquet store: make_reader warns
        with make_reader(_ids_dataset(tmp_path), predicate=Odd(), reader_pool_type="dummy",
                         shuffle_row_groups=False) as reader:
            ids = [int(r.id) for r in reader]
    assert ids == [1, 3, 5, 7, 9]
    assert set(seen) == {(dict, np.str_)}


def test_user_predicate_returning_a_scalar_in_make_batch_reader_is_an_error_that_says_what_is_expected(tmp_path):
    from petastorm import make_batch_reader

    class Always(PredicateBase):
        def get_fields(self):
            return {"id"}

        def do_include(self, values):
            return True

    with pytest.raises(ValueError, match="DataFrame.*boolean Series"):
        with make_batch_reader(_ids_dataset(tmp_path), predicate=Always(), reader_pool_type="dummy") as reader:
            list(reader)


def test_builtin_predicates_stay_vectorised_in_make_batch_reader(tmp_path):
    """in_set is one np.isin over the column, never do_include with a DataFrame."""
    from petastorm import make_batch_reader

    class Spy(in_set):
        def do_include(self, values):
            raise AssertionError("the vectorised path was not taken")

    with make_batch_reader(_ids_dataset(tmp_path), predicate=in_negate(Spy({1, 2}, "id")),
                           reader_pool_type="dummy", shuffle_row_groups=False) as reader:
        ids = [int(i) for b in reader for i in b.id]
    assert ids == [0, 3, 4, 5, 6, 7, 8, 9]


def test_in_lambda_gets_a_series_per_field_in_make_batch_reader_as_the_original(tmp_path):
    """The original calls an in_lambda's function once per batch with a pandas Series per field, so functions
    written for it (``s.str.startswith``) work unchanged; also inside in_negate and in_reduce."""
    from petastorm import make_batch_reader

    seen = []

    def ends_in_even(s, state):
        seen.append((type(s).__name__, len(s), state))
        return s.str[-1].astype(int) % 2 == 0

    url = _ids_dataset(tmp_path)
    with make_batch_reader(url, predicate=in_lambda(["s"], ends_in_even, "x"), reader_pool_type="dummy",
                           shuffle_row_groups=False) as reader:
        ids = [int(i) for b in reader for i in b.id]
    assert ids == [0, 2, 4, 6, 8]
    assert seen == [("Series", 5, "x"), ("Series", 5, "x")]
    with make_batch_reader(url, predicate=in_negate(in_lambda(["s"], ends_in_even, "x")), reader_pool_type="dummy",
                           shuffle_row_groups=False) as reader:
        assert [int(i) for b in reader for i in b.id] == [1, 3, 5, 7, 9]


def test_in_lambda_written_for_single_values_still_works_in_make_batch_reader(tmp_path):
    """A function that cannot take a Series (it raises, or gives a single bool) is called per row."""
    from petastorm import make_batch_reader

    wanted = {1, 4, 7}
    with make_batch_reader(_ids_dataset(tmp_path), predicate=in_lambda(["id"], lambda i: i in wanted),
                           reader_pool_type="dummy", shuffle_row_groups=False) as reader:
        assert [int(i) for b in reader for i in b.id] == [1, 4, 7]
    with make_batch_reader(_ids_dataset(tmp_path), predicate=in_lambda(["id"], lambda i: bool(i > 6)),
                           reader_pool_type="dummy", shuffle_row_groups=False) as reader:
        assert [int(i) for b in reader for i in b.id] == [7, 8, 9]
