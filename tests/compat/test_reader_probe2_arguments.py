"""Probe round 2 of the reader's arguments (helper Y4): ``make_reader`` / ``make_batch_reader`` as 0.12.1 users
call them, over a dataset written by ``write_dataset`` (with row-group indexes built by
``build_rowgroup_index``) and the datasets in ``testdata/`` written by the original.

Every expected value here was recorded by running the original 0.12.1 as a black box on the same data
(``/work/main/.venv-original``, public API only). The first tests are the defects found (each failed before its
fix); the rest pin the behaviours found equal, so that they stay so.
"""
import os
import warnings

import numpy as np
import pytest

from petastorm import make_batch_reader, make_reader
from petastorm.codecs import NdarrayCodec, ScalarCodec
from petastorm.etl.rowgroup_indexers import SingleFieldIndexer
from petastorm.etl.rowgroup_indexing import build_rowgroup_index
from petastorm.etl.writer import write_dataset
from petastorm.selectors import SingleIndexSelector
from petastorm.spark_types import spark_type
from petastorm.transform import TransformSpec
from petastorm.unischema import Unischema, UnischemaField

FACTORIES = [make_reader, make_batch_reader]

ProbeSchema = Unischema("ProbeSchema", [
    UnischemaField("id", np.int64, (), ScalarCodec(spark_type("LongType")), False),
    UnischemaField("part", np.str_, (), ScalarCodec(spark_type("StringType")), False),
    UnischemaField("name", np.str_, (), ScalarCodec(spark_type("StringType")), False),
    UnischemaField("f", np.float32, (), ScalarCodec(spark_type("FloatType")), False),
    UnischemaField("v", np.float32, (3,), NdarrayCodec(), False),
    UnischemaField("ts", np.int64, (), ScalarCodec(spark_type("LongType")), False),
])


def _write(path, **kwargs):
    rows = [dict(id=i, part=f"p{i % 4}", name=f"n{i}", f=np.float32(i / 2), v=np.full(3, i, np.float32), ts=i)
            for i in range(40)]
    url = "file://" + path
    write_dataset(url, ProbeSchema, rows, workers_count=1, progress=False, overwrite=True, rows_per_file=5,
                  **kwargs)
    build_rowgroup_index(url, None, [SingleFieldIndexer("by_id", "id"), SingleFieldIndexer("by_name", "name")])
    return url


@pytest.fixture(scope="module")
def part_url(tmp_path_factory):
    """40 rows, Hive-partitioned on ``part`` (p0..p3, row ``i`` in ``p{i % 4}``), 8 files of 5 rows, indexes
    ``by_id`` and ``by_name``."""
    return _write(str(tmp_path_factory.mktemp("y4") / "part"), partition_by=["part"])


@pytest.fixture(scope="module")
def flat_url(tmp_path_factory):
    """The same 40 rows unpartitioned: 8 files of 5 rows in id order."""
    return _write(str(tmp_path_factory.mktemp("y4") / "flat"))


@pytest.fixture(scope="module")
def legacy_url(testdata_dir):
    return "file://" + os.path.join(testdata_dir, "legacy", "0.7.6")


@pytest.fixture(scope="module")
def codecs_url(testdata_dir):
    return "file://" + os.path.join(testdata_dir, "original-0.12.1", "all_codecs_0.12.1")


def _ids(factory, url, **kwargs):
    kwargs.setdefault("workers_count", 1)
    kwargs.setdefault("shuffle_row_groups", False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with factory(url, **kwargs) as reader:
            if reader.batched_output:
                return [int(i) for batch in reader for i in batch.id]
            return [int(row.id) for row in reader]


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

    assert sorted(_ids(make_reader, part_url, predicate=Duck())) == [0, 1, 2]


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
