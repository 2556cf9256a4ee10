"""The reader's arguments where ours differed from 0.12.1, fixed: ``make_reader`` / ``make_batch_reader`` as
0.12.1 users call them, over a dataset written by ``write_dataset`` (with row-group indexes built by
``build_rowgroup_index``), plain Parquet stores, and the datasets in ``testdata/`` written by the original.

Every expected value here was recorded by running the original 0.12.1 as a black box on the same data
(``/work/main/.venv-original``, public API only). These are the defects found (each test failed before its fix),
with the neighbouring cases that must keep working; ``test_reader_arguments_equal.py`` pins the behaviours found
equal. The dataset (``part_url``, ``flat_url``) is written by ``_indexed_dataset.py``; the fixtures are in
``conftest.py``.
"""
import warnings

import numpy as np
import pytest

from petastorm import make_batch_reader, make_reader
from petastorm.codecs import ScalarCodec
from petastorm.errors import NoDataAvailableError
from petastorm.etl.writer import write_dataset
from petastorm.predicates import in_negate, in_reduce, in_set
from petastorm.selectors import SingleIndexSelector
from petastorm.spark_types import spark_type
from petastorm.transform import TransformSpec
from petastorm.unischema import Unischema, UnischemaField

from ._indexed_dataset import FACTORIES, read_ids

# --- defects (fixed) -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("factory", FACTORIES)
@pytest.mark.parametrize("predicate", [lambda row: True, "id", {"id": 1}])
def test_a_predicate_that_is_no_predicate_is_the_originals_value_error(part_url, factory, predicate):
    # recorded from 0.12.1: ValueError('predicate parameter is expected to be derived from PredicateBase'), in
    # both factories (ours raised a bare AttributeError: 'function' object has no attribute 'get_fields')
    with pytest.raises(ValueError, match="^predicate parameter is expected to be derived from PredicateBase"):
        factory(part_url, predicate=predicate, workers_count=1)


def test_a_duck_typed_predicate_still_works(part_url):
    class Duck:  # get_fields + do_include, not a PredicateBase: ours accepts it (0.12.1 refused it)
        def get_fields(self):
            return {"id"}

        def do_include(self, values):
            return values["id"] < 3

    assert sorted(read_ids(make_reader, part_url, predicate=Duck())) == [0, 1, 2]


@pytest.mark.parametrize("factory", FACTORIES)
def test_a_selector_on_a_missing_index_names_the_indexes_with_the_originals_words(part_url, legacy_url, factory):
    # recorded from 0.12.1 (ours led with "Row groups index is not available in the dataset metadata file",
    # which says the dataset has no index at all)
    with pytest.raises(ValueError, match=r"^Some of required indexes \['nope'\] are not available in "
                                         r"\['by_id', 'by_name'\]"):
        factory(part_url, rowgroup_selector=SingleIndexSelector("nope", [1]), workers_count=1)
    with pytest.raises(ValueError, match=r"^Some of required indexes \['nope'\] are not available in "
                                         r"\['sensor_name', 'id', 'string_array_nullable', 'partition_key'\]"):
        factory(legacy_url, rowgroup_selector=SingleIndexSelector("nope", [1]), workers_count=1)


@pytest.mark.parametrize("factory", FACTORIES)
def test_a_selector_on_a_dataset_without_indexes_keeps_the_originals_message(codecs_url, factory):
    # recorded from 0.12.1 on all_codecs_0.12.1 (no index): ValueError with this message
    with pytest.raises(ValueError, match="^Row groups index is not available in the dataset metadata file. You "
                                         "can generate it on an existing dataset using rowgroup_indexing_run.py"):
        factory(codecs_url, rowgroup_selector=SingleIndexSelector("id", [1]), workers_count=1)


@pytest.mark.parametrize("factory", FACTORIES)
@pytest.mark.parametrize("pool", ["dummy", "thread", "process"])
def test_diagnostics_hold_the_originals_keys(part_url, factory, pool):
    # recorded from 0.12.1: the thread pool's reader.diagnostics is {'output_queue_size': <int>}, the process
    # pool's {'items_consumed', 'items_produced', 'items_inprocess', 'zmq_copy_buffers'} (ours had none of them:
    # reader.diagnostics['output_queue_size'] was a KeyError)
    with factory(part_url, workers_count=1, reader_pool_type=pool) as reader:
        next(reader)
        diag = reader.diagnostics
    for key in ("output_queue_size", "items_consumed", "items_produced", "items_inprocess"):
        assert isinstance(diag[key], int) and diag[key] >= 0, key
    assert diag["items_consumed"] >= 1


@pytest.mark.parametrize("removed, selected", [(["name"], ["id"]), ([], ["id"]), (["name"], [])])
def test_transform_spec_with_removed_and_selected_fields_is_the_originals_value_error(removed, selected):
    # recorded from 0.12.1: ValueError at construction, also for an empty list (ours read, applying both)
    with pytest.raises(ValueError, match="^User can only specify one of removed_fields and selected_fields in "
                                         "TransformSpec"):
        TransformSpec(removed_fields=removed, selected_fields=selected)


def _times_ten(df):
    df["id"] = df["id"] * 10
    return df


def _upper(df):
    df["name"] = df["name"].str.upper()
    return df


@pytest.mark.parametrize("func, names", [(_times_ten, ["n0", "n4", "n8", "n12", "n16"]),
                                         (_upper, ["N0", "N4", "N8", "N12", "N16"])])
def test_string_columns_after_a_batch_transform_are_unicode_arrays(part_url, func, names):
    # recorded from 0.12.1: after a TransformSpec func in make_batch_reader the string column 'name' of the first
    # batch is a '<U3' array (ours was an object array of str, while the same column without a transform is '<U3')
    with make_batch_reader(part_url, workers_count=1, shuffle_row_groups=False,
                           transform_spec=TransformSpec(func)) as reader:
        batch = next(reader)
    assert batch.name.dtype == np.dtype("<U3")
    assert list(batch.name) == names
    assert batch.part.dtype.kind == "U" and set(batch.part) == {"p0"}


def test_a_string_column_with_missing_values_after_a_batch_transform_stays_object(part_url):
    def drop_some(df):  # pandas gives NaN where the condition fails: never the string 'nan'
        df["name"] = df["name"].where(df["id"] % 8 == 0, None)
        return df

    with make_batch_reader(part_url, workers_count=1, shuffle_row_groups=False,
                           transform_spec=TransformSpec(drop_some)) as reader:
        batch = next(reader)
    assert batch.name.dtype == object
    assert [v if isinstance(v, str) else None for v in batch.name] == ["n0", None, "n8", None, "n16"]


# --- sharding comes before the rowgroup_selector and a predicate on partition keys (fixed) -------------------
# 0.12.1 deals out the row groups the filters leave (cur_shard/shard_count/shard_seed), then each shard keeps the
# ones of its share that the rowgroup_selector picks and the predicate on partition keys accepts. Ours selected
# first and then dealt out what was left: every shard read other rows than under 0.12.1, and a selection with
# fewer row groups than shards raised NoDataAvailableError where 0.12.1 read (a job selecting one partition on
# 8 ranks failed on every rank).

_PARTITIONS_1_2_3 = {"p1", "p2", "p3", "p_1", "p_2", "p_3"}

# recorded from 0.12.1 (shuffle_row_groups=False, one worker): ids of each shard, in order
_PREDICATE_SHARDS = {
    ("legacy", 2): [list(range(20, 30)), list(range(10, 20)) + list(range(30, 40))],
    ("legacy", 3): [list(range(30, 40)), list(range(10, 20)), list(range(20, 30))],
    ("part", 2): [[1, 5, 9, 13, 17, 2, 6, 10, 14, 18, 3, 7, 11, 15, 19],
                  [21, 25, 29, 33, 37, 22, 26, 30, 34, 38, 23, 27, 31, 35, 39]],
    ("part", 3): [[21, 25, 29, 33, 37, 3, 7, 11, 15, 19], [2, 6, 10, 14, 18, 23, 27, 31, 35, 39],
                  [1, 5, 9, 13, 17, 22, 26, 30, 34, 38]],
    ("codecs", 3): [[33, 37, 41, 18, 22, 26, 3, 7, 11, 47, 51, 55, 59],
                    [1, 5, 9, 13, 45, 49, 53, 57, 30, 34, 38, 42, 15, 19, 23, 27],
                    [17, 21, 25, 29, 2, 6, 10, 14, 46, 50, 54, 58, 31, 35, 39, 43]],
}


@pytest.mark.parametrize("factory", FACTORIES)
@pytest.mark.parametrize("dataset, shard_count", sorted(_PREDICATE_SHARDS))
def test_a_predicate_on_partition_keys_applies_to_each_shards_share(request, factory, dataset, shard_count):
    url = request.getfixturevalue(f"{dataset}_url")
    key = {"legacy": "partition_key", "part": "part", "codecs": "partition"}[dataset]
    for cur_shard, expected in enumerate(_PREDICATE_SHARDS[(dataset, shard_count)]):
        assert read_ids(factory, url, predicate=in_set(_PARTITIONS_1_2_3, key), cur_shard=cur_shard,
                    shard_count=shard_count) == expected, cur_shard


@pytest.mark.parametrize("factory", FACTORIES)
def test_a_predicate_leaving_fewer_row_groups_than_shards_reads_as_the_original(legacy_url, factory):
    # recorded from 0.12.1: shard 0 warns 'No matching data' and yields nothing (also with num_epochs=None: it
    # ends), shard 1 reads partition p_1 (ours raised NoDataAvailableError on both)
    predicate = in_set({"p_1"}, "partition_key")
    with pytest.warns(UserWarning, match="^No matching data is available for loading after rowgroup selector"):
        assert read_ids(factory, legacy_url, False, predicate=predicate, cur_shard=0, shard_count=2) == []
    with pytest.warns(UserWarning, match="^No matching data is available"):
        assert read_ids(factory, legacy_url, False, predicate=predicate, cur_shard=0, shard_count=2, num_epochs=None) == []
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        with factory(legacy_url, predicate=predicate, cur_shard=1, shard_count=2, workers_count=1,
                     shuffle_row_groups=False) as reader:
            ids = [int(i) for item in reader for i in np.atleast_1d(item.id)]
    assert ids == list(range(10, 20))


@pytest.mark.parametrize("factory", FACTORIES)
def test_a_rowgroup_selector_applies_to_each_shards_share(legacy_url, part_url, factory):
    # recorded from 0.12.1 (ids 1, 2 are in the first row group of legacy/0.7.6, 55 and 77 in its 6th and 8th)
    selector = SingleIndexSelector("id", [1, 2, 55, 77])
    assert read_ids(factory, legacy_url, rowgroup_selector=selector, cur_shard=0, shard_count=2) == list(range(10))
    assert read_ids(factory, legacy_url, rowgroup_selector=selector, cur_shard=1, shard_count=2) == \
        list(range(50, 60)) + list(range(70, 80))
    selector = SingleIndexSelector("by_id", [1, 2, 35, 8])
    assert read_ids(factory, part_url, rowgroup_selector=selector, cur_shard=0, shard_count=2) == \
        [0, 4, 8, 12, 16, 1, 5, 9, 13, 17, 2, 6, 10, 14, 18]
    assert read_ids(factory, part_url, rowgroup_selector=selector, cur_shard=1, shard_count=2) == [23, 27, 31, 35, 39]


def test_a_rowgroup_selector_with_shard_seed_and_a_predicate(legacy_url):
    # recorded from 0.12.1: the row groups (tens of ids) each shard reads
    selector = SingleIndexSelector("id", [1, 2, 55, 77, 93])

    def groups(**kwargs):
        return sorted({i // 10 for i in read_ids(make_reader, legacy_url, rowgroup_selector=selector, **kwargs)})

    assert groups(cur_shard=0, shard_count=2, shard_seed=3) == [0]
    assert groups(cur_shard=1, shard_count=2, shard_seed=3) == [5, 7, 9]
    assert groups(cur_shard=1, shard_count=2, predicate=in_set({"p_5", "p_9", "p_0"}, "partition_key")) == [5, 9]
    one = SingleIndexSelector("id", [55])
    with pytest.warns(UserWarning, match="^No matching data is available"):
        assert read_ids(make_reader, legacy_url, False, rowgroup_selector=one, cur_shard=0, shard_count=2) == []
    assert read_ids(make_reader, legacy_url, rowgroup_selector=one, cur_shard=1, shard_count=2) == list(range(50, 60))


def test_filters_still_come_before_sharding(legacy_url):
    # recorded from 0.12.1: filters leaving one partition for two shards raise NoDataAvailableError
    with pytest.raises(NoDataAvailableError, match="^Number of row-groups in the dataset must be greater"):
        make_reader(legacy_url, filters=[("partition_key", "=", "p_1")], cur_shard=0, shard_count=2)


def test_explain_counts_only_the_row_groups_a_shard_reads(legacy_url):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with make_reader(legacy_url, predicate=in_set({"p_1", "p_2", "p_3"}, "partition_key"), cur_shard=1,
                         shard_count=2, workers_count=1) as reader:
            plan = reader.explain(row_counts=True).to_dict()
    assert plan["rows_per_epoch"] == 20
    assert [(s["shard"], s["row_groups"], s["rows"]) for s in plan["shards"]] == [(0, 1, 10), (1, 2, 20)]


# --- arguments of the wrong kind (fixed) ---------------------------------------------------------------------

@pytest.mark.parametrize("factory", FACTORIES)
@pytest.mark.parametrize("selector", ["id", 1, [SingleIndexSelector("by_id", [1])]])
def test_a_rowgroup_selector_that_is_no_selector_is_the_originals_value_error(part_url, factory, selector):
    # recorded from 0.12.1: ValueError('rowgroup_selector parameter is expected to be derived from
    # RowGroupSelectorBase') (ours: a bare AttributeError, 'str' object has no attribute 'get_index_names')
    with pytest.raises(ValueError, match="^rowgroup_selector parameter is expected to be derived from "
                                         "RowGroupSelectorBase"):
        factory(part_url, rowgroup_selector=selector, workers_count=1)


@pytest.mark.parametrize("factory", FACTORIES)
@pytest.mark.parametrize("seed", [2.5, 2.0, "3"])
def test_a_seed_that_is_no_int_is_refused_naming_it(part_url, factory, seed):
    # recorded from 0.12.1: TypeError (numpy's "Cannot cast scalar from dtype('float64') to dtype('int64')") for
    # 2.0, 2.5 and '3'; ours read with int(seed): 2.5 quietly shuffled as the seed 2
    with pytest.raises(TypeError, match="^seed must be an int or None, got"):
        factory(part_url, seed=seed, workers_count=1)


def test_numpy_integer_and_bool_seeds_still_work(part_url):
    # 0.12.1 accepted both (recorded); the same seed gives the same order
    assert read_ids(make_reader, part_url, seed=np.int64(3), shuffle_row_groups=True) == \
        read_ids(make_reader, part_url, seed=3, shuffle_row_groups=True)
    assert sorted(read_ids(make_reader, part_url, seed=True, shuffle_row_groups=True)) == list(range(40))


# --- make_batch_reader on a plain Parquet store -------------------------------------------------------------

@pytest.fixture(scope="module")
def plain_url(tmp_path_factory):
    """A Parquet store without Petastorm metadata: 20 rows (id, a date column, a nullable date column) in
    4 row groups of 5."""
    import datetime

    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path_factory.mktemp("arguments") / "plain"
    path.mkdir()
    days = [datetime.date(2020, 1, 1) + datetime.timedelta(days=i) for i in range(20)]
    table = pa.table({"id": pa.array(np.arange(20, dtype=np.int64)), "d": pa.array(days),
                      "maybe_d": pa.array([None if i % 4 == 0 else day for i, day in enumerate(days)])})
    pq.write_table(table, str(path / "part0.parquet"), row_group_size=5)
    return "file://" + str(path)


def _add_one(df):
    df["id"] = df["id"] + 1
    return df


@pytest.mark.parametrize("transform", [None, TransformSpec(_add_one)])
def test_date_columns_stay_datetime_date_objects_after_a_batch_transform(plain_url, transform):
    # recorded from 0.12.1: the date column 'd' of make_batch_reader is an object array of datetime.date, with
    # and without a TransformSpec func (after a transform ours was datetime64[D]); nulls stay None
    import datetime

    with make_batch_reader(plain_url, workers_count=1, shuffle_row_groups=False, transform_spec=transform) as reader:
        batch = next(reader)
    assert batch.d.dtype == object
    assert list(batch.d) == [datetime.date(2020, 1, 1) + datetime.timedelta(days=i) for i in range(5)]
    assert batch.maybe_d.dtype == object
    assert batch.maybe_d[0] is None and batch.maybe_d[1] == datetime.date(2020, 1, 2)


@pytest.fixture(scope="module")
def two_level_url(tmp_path_factory):
    """A plain Parquet store partitioned on 'zeta' then 'alpha' (12 rows)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = str(tmp_path_factory.mktemp("arguments") / "two_level")
    table = pa.table({"id": np.arange(12), "zeta": [f"z{i % 2}" for i in range(12)], "alpha": [i % 3 for i in range(12)],
                      "v": np.arange(12) * 1.5})
    pq.write_to_dataset(table, path, partition_cols=["zeta", "alpha"])
    return "file://" + path


@pytest.mark.parametrize("factory", FACTORIES)
def test_partition_keys_of_a_plain_store_come_first_and_are_not_nullable(two_level_url, factory):
    # recorded from 0.12.1: fields zeta, alpha (the partition keys, in directory order), then the files' columns;
    # the partition fields are not nullable (ours put them last, nullable)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # make_reader's "Currently make_reader supports reading only Petastorm..."
        with factory(two_level_url, workers_count=1, shuffle_row_groups=False) as reader:
            item = next(reader)
            schema = reader.schema
    assert list(item._fields) == ["zeta", "alpha", "id", "v"]
    assert [(f.name, f.nullable) for f in schema.fields.values()] == \
        [("zeta", False), ("alpha", False), ("id", True), ("v", True)]


@pytest.fixture(scope="module")
def one_group_urls(tmp_path_factory):
    """Plain stores of one row group of n rows, n in 5, 6, 7, 10, 11."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    urls = {}
    for n in (5, 6, 7, 10, 11):
        path = tmp_path_factory.mktemp(f"rg{n}")
        pq.write_table(pa.table({"id": np.arange(n)}), str(path / "a.parquet"), row_group_size=n)
        urls[n] = "file://" + str(path)
    return urls


# recorded from 0.12.1: make_batch_reader's batch sizes (one per drop partition, in order) of one row group of n rows
_DROP_SIZES = {
    5: {2: [3, 2], 3: [2, 2, 1], 4: [2, 1, 1, 1], 6: [1, 1, 1, 1, 1]},
    6: {2: [3, 3], 3: [2, 2, 2], 4: [2, 1, 2, 1], 6: [1, 1, 1, 1, 1, 1]},
    7: {2: [4, 3], 3: [3, 2, 2], 4: [2, 2, 2, 1], 6: [2, 1, 1, 1, 1, 1]},
    10: {2: [5, 5], 3: [4, 3, 3], 4: [3, 2, 3, 2], 6: [2, 2, 1, 2, 2, 1]},
    11: {2: [6, 5], 3: [4, 4, 3], 4: [3, 3, 3, 2], 6: [2, 2, 2, 2, 2, 1]},
}


@pytest.mark.parametrize("n", sorted(_DROP_SIZES))
def test_drop_partitions_cut_row_groups_as_the_original(one_group_urls, n):
    # ours cut them the other way round ([2, 3] for 5 rows in 2 parts): the same rows, other batch sizes
    for parts, sizes in _DROP_SIZES[n].items():
        with make_batch_reader(one_group_urls[n], workers_count=1, shuffle_row_groups=False,
                               shuffle_row_drop_partitions=parts) as reader:
            batches = [list(batch.id) for batch in reader]
        assert [len(b) for b in batches] == sizes, parts
        assert sum(batches, []) == list(range(n))


@pytest.mark.parametrize("factory", FACTORIES)
@pytest.mark.parametrize("kwargs, named", [
    (dict(cache_size_limit="100000000"), "cache_size_limit"),
    (dict(cache_row_size_estimate="100"), "cache_row_size_estimate"),
    (dict(cache_location=5), "cache_location"),
    (dict(cache_extra_settings=[1]), "cache_extra_settings"),
])
def test_local_disk_cache_arguments_of_the_wrong_type_are_named(part_url, tmp_path, factory, kwargs, named):
    # recorded from 0.12.1: TypeError for a str size ("unsupported operand type(s) for /: 'str' and 'int'") and for
    # a list of extra settings; an int location made a directory '5' in the working directory. Ours raised the
    # same bare TypeErrors, and "expected str, bytes or os.PathLike object, not int" for the location
    args = dict(cache_type="local-disk", cache_location=str(tmp_path / "cache"), cache_size_limit=10 ** 8,
                cache_row_size_estimate=100, workers_count=1)
    args.update(kwargs)
    with pytest.raises(TypeError, match=f"^{named} must be"):
        factory(part_url, **args)


# --- filters with str values for number and boolean partition keys (fixed) ----------------------------------

@pytest.fixture(scope="module")
def int_partition_url(tmp_path_factory):
    """30 rows partitioned on an int32 'year' (2019 + i % 3) and a bool 'flag' (i even)."""
    schema = Unischema("IntPart", [
        UnischemaField("id", np.int64, (), ScalarCodec(spark_type("LongType")), False),
        UnischemaField("year", np.int32, (), ScalarCodec(spark_type("IntegerType")), False),
        UnischemaField("flag", np.bool_, (), ScalarCodec(spark_type("BooleanType")), False),
    ])
    url = "file://" + str(tmp_path_factory.mktemp("arguments") / "int_part")
    write_dataset(url, schema, [dict(id=i, year=2019 + i % 3, flag=i % 2 == 0) for i in range(30)], workers_count=1,
                  progress=False, partition_by=["year", "flag"], rows_per_file=5)
    return url


@pytest.mark.parametrize("factory", FACTORIES)
@pytest.mark.parametrize("filters, years", [
    ([("year", "=", "2020")], {2020}),
    ([("year", ">", "2019")], {2020, 2021}),
    ([("year", "!=", "2020")], {2019, 2021}),
    ([("year", "in", ["2019", "2021"])], {2019, 2021}),
    ([("year", "in", [2019])], {2019}),
])
def test_str_values_in_filters_on_an_integer_partition_key(int_partition_url, factory, filters, years):
    # recorded from 0.12.1: the same rows as with int values (ours: ArrowNotImplementedError "Function 'equal' has
    # no kernel matching input types (int32, string)")
    ids = read_ids(factory, int_partition_url, filters=filters)
    assert sorted(ids) == [i for i in range(30) if 2019 + i % 3 in years]


@pytest.mark.parametrize("value, even", [("true", True), ("false", False), (False, False)])
def test_filters_on_a_boolean_partition_key(int_partition_url, value, even):
    # ours, deliberately not 0.12.1's: 0.12.1 read every 'flag=false' row as True (np.bool_('false')) and its
    # filters on 'flag' gave 15 rows flagged True for 'true' and for 'false', none for False (recorded)
    ids = read_ids(make_reader, int_partition_url, filters=[("flag", "=", value)])
    assert sorted(ids) == [i for i in range(30) if (i % 2 == 0) == even]


def test_a_filter_value_that_the_column_cannot_hold_is_named(int_partition_url):
    # 0.12.1 read no row (recorded); ours raised pyarrow's ArrowNotImplementedError
    with pytest.raises(ValueError, match=r"^filters term \('year', '=', 'x'\): 'x' is not a value of column 'year'"):
        make_reader(int_partition_url, filters=[("year", "=", "x")])


@pytest.mark.parametrize("factory", FACTORIES)
@pytest.mark.parametrize("filters, column", [([("name", "<", 5)], "name: string"), ([("part", "=", 1)], "part: string"),
                                             ([("v", "=", 1)], "v: binary")])
def test_filters_comparing_a_column_with_a_value_of_another_type_are_named(part_url, factory, filters, column):
    # ours raised pyarrow's bare ArrowNotImplementedError ("Function 'less' has no kernel matching input types
    # (string, int8)") at the first read; 0.12.1 ignored filters on other columns than partition keys and raised
    # "invalid literal for int() with base 10: 'p0'" for ('part', '=', 1) (recorded)
    with pytest.raises(ValueError, match=rf"^filters .* do not apply to the dataset's columns \({column}\)"):
        factory(part_url, filters=filters, workers_count=1)


def test_a_predicate_that_reads_no_field_is_the_originals_value_error(part_url):
    # recorded from 0.12.1: ValueError("At least one field name must be returned by predicate's get_field()
    # method") for in_reduce([], all) (ours read every row; in_reduce([], any) read none)
    with pytest.raises(ValueError, match=r"^At least one field name must be returned by predicate's get_field\(\)"):
        make_reader(part_url, predicate=in_reduce([], all))


@pytest.mark.parametrize("make", [lambda: in_negate(lambda row: True), lambda: in_reduce([in_set({1}, "id"), 5], all)])
def test_in_negate_and_in_reduce_of_no_predicate_lead_with_the_originals_words(make):
    # recorded from 0.12.1: ValueError('Predicate is nor derived from PredicateBase') (its spelling)
    with pytest.raises(ValueError, match="^Predicate is nor derived from PredicateBase"):
        make()
