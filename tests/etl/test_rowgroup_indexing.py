"""Row-group indexers, selectors and build_rowgroup_index (in-process and with a Spark context), checked
against the indexes stored in the legacy datasets."""
import os
import shutil

import numpy as np
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from petastorm.errors import PetastormMetadataError
from petastorm.etl import RowGroupIndexerBase
from petastorm.etl import dataset_metadata as dm
from petastorm.etl.rowgroup_indexers import FieldNotNullIndexer, SingleFieldIndexer
from petastorm.etl.rowgroup_indexing import (
    build_rowgroup_index,
    get_row_group_indexes,
    load_rowgroup_indexes,
    select_row_groups,
)
from petastorm.selectors import IntersectIndexSelector, SingleIndexSelector, UnionIndexSelector

LOCAL = pafs.LocalFileSystem()


@pytest.fixture
def legacy_copy(testdata_dir, tmp_path):
    path = str(tmp_path / "legacy_076")
    shutil.copytree(os.path.join(testdata_dir, "legacy", "0.7.6"), path)
    return path


@pytest.fixture(scope="module")
def legacy_indexes(testdata_dir):
    return get_row_group_indexes(pq.ParquetDataset(os.path.join(testdata_dir, "legacy", "0.7.6")))


# --- indexers ---------------------------------------------------------------------------------------------

def test_single_field_indexer_maps_values_to_row_groups():
    indexer = SingleFieldIndexer("by_a", "a")
    assert isinstance(indexer, RowGroupIndexerBase)
    assert (indexer.index_name, indexer.column_names, indexer.indexed_values) == ("by_a", ["a"], [])
    data = indexer.build_index([{"a": 1}, {"a": 2}, {"a": None}], 3)
    assert dict(data) == {1: {3}, 2: {3}}
    indexer.build_index([{"a": np.array([2, 4])}, {"a": "s"}, {"a": b"b"}], 4)
    assert indexer.get_row_group_indexes(2) == {3, 4}
    assert indexer.get_row_group_indexes(np.int64(4)) == {4}
    assert indexer.get_row_group_indexes("nonexistent") == set()
    assert "nonexistent" not in indexer.indexed_values  # looking up does not add the value
    assert sorted(map(str, indexer.indexed_values)) == ["1", "2", "4", "b'b'", "s"]


def test_single_field_indexer_rejects_2d_arrays_and_missing_fields():
    indexer = SingleFieldIndexer("by_a", "a")
    with pytest.raises(ValueError, match="shape"):
        indexer.build_index([{"a": np.zeros((2, 2))}], 0)
    with pytest.raises(KeyError, match="'a'"):
        indexer.build_index([{"b": 1}], 0)


def test_indexers_add_merges_into_the_left_one():
    left, right = SingleFieldIndexer("i", "a"), SingleFieldIndexer("i", "a")
    left.build_index([{"a": 1}], 0)
    right.build_index([{"a": 1}, {"a": 7}], 5)
    merged = left + right
    assert merged is left
    assert merged.get_row_group_indexes(1) == {0, 5} and merged.get_row_group_indexes(7) == {5}
    with pytest.raises(TypeError, match="same indexer type"):
        left + FieldNotNullIndexer("i", "a")


def test_field_not_null_indexer_keeps_row_groups_with_any_value():
    indexer = FieldNotNullIndexer("has_a", "a")
    assert indexer.indexed_values == ["Field is Not Null"]
    indexer.build_index([{"a": None}, {"a": 0}], 1)
    indexer.build_index([{"a": None}], 2)
    indexer.build_index([{"a": np.array([])}], 5)
    assert indexer.get_row_group_indexes() == {1, 5} == indexer.get_row_group_indexes("anything")
    other = FieldNotNullIndexer("has_a", "a")
    other.build_index([{"a": 3}], 9)
    assert (indexer + other).get_row_group_indexes() == {1, 5, 9}


# --- selectors on the legacy dataset's stored indexes ----------------------------------------------------------

def test_selectors_on_legacy_indexes(legacy_indexes):
    assert sorted(legacy_indexes) == ["id", "partition_key", "sensor_name", "string_array_nullable"]
    single = SingleIndexSelector("id", [1, 2, 55])
    assert single.get_index_names() == ["id"]
    assert single.select_row_groups(legacy_indexes) == {0, 5}
    union = UnionIndexSelector([SingleIndexSelector("id", [1]), SingleIndexSelector("id", [55])])
    assert union.get_index_names() == ["id", "id"]
    assert union.select_row_groups(legacy_indexes) == {0, 5}
    inter = IntersectIndexSelector([single, SingleIndexSelector("partition_key", ["p_0"])])
    assert inter.get_index_names() == ["id", "partition_key"]
    assert inter.select_row_groups(legacy_indexes) == {0}
    assert SingleIndexSelector("sensor_name", ["test_sensor"]).select_row_groups(legacy_indexes) == set(range(10))
    assert SingleIndexSelector("id", [1000]).select_row_groups(legacy_indexes) == set()
    assert UnionIndexSelector([]).select_row_groups(legacy_indexes) == set()
    with pytest.raises(IndexError):
        IntersectIndexSelector([]).select_row_groups(legacy_indexes)
    with pytest.raises(KeyError, match="nope"):
        SingleIndexSelector("nope", [1]).select_row_groups(legacy_indexes)
    with pytest.raises(TypeError, match="list"):
        SingleIndexSelector("id", 1)


def test_select_row_groups_errors_use_the_original_wording(legacy_indexes):
    with pytest.raises(ValueError, match=r"Some of required indexes \['nope'\] are not available"):
        select_row_groups(SingleIndexSelector("nope", [1]), legacy_indexes, "ds")
    with pytest.raises(ValueError, match="Row groups index is not available in the dataset metadata file"):
        select_row_groups(SingleIndexSelector("id", [1]), {}, "ds")
    assert select_row_groups(SingleIndexSelector("id", [1]), legacy_indexes) == {0}


def test_dataset_without_index(testdata_dir):
    path = os.path.join(testdata_dir, "original-0.12.1", "all_codecs_0.12.1")
    assert load_rowgroup_indexes(dm.read_dataset_metadata(LOCAL, path), path) == {}
    with pytest.raises(ValueError, match="Row groups index is not available"):
        get_row_group_indexes(pq.ParquetDataset(path))


def test_refused_index_pickle_names_the_file(legacy_copy, tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    import pickle

    md_path = os.path.join(legacy_copy, "_common_metadata")
    schema = pq.read_schema(md_path)
    pq.write_metadata(schema.with_metadata({**schema.metadata, dm.ROWGROUPS_INDEX_KEY: pickle.dumps(Evil())}),
                      md_path)
    with pytest.raises(PetastormMetadataError, match="_common_metadata.*system"):
        get_row_group_indexes(pq.ParquetDataset(legacy_copy))
    assert not marker.exists()


# --- building -------------------------------------------------------------------------------------------

def _index_data(indexer):
    data = indexer._index_data
    if isinstance(data, set):
        return set(data)
    return {str(k): set(v) for k, v in data.items()}


def test_build_in_process_reproduces_the_legacy_indexes(legacy_copy, legacy_indexes, testdata_dir):
    build_rowgroup_index("file://" + legacy_copy, None, [
        SingleFieldIndexer("id", "id"), SingleFieldIndexer("partition_key", "partition_key"),
        SingleFieldIndexer("sensor_name", "sensor_name"),
        SingleFieldIndexer("string_array_nullable", "string_array_nullable"),
        FieldNotNullIndexer("has_matrix_nullable", "matrix_nullable")])
    rebuilt = get_row_group_indexes(pq.ParquetDataset(legacy_copy))
    assert sorted(rebuilt) == sorted(list(legacy_indexes) + ["has_matrix_nullable"])
    for name, stored in legacy_indexes.items():
        assert _index_data(rebuilt[name]) == _index_data(stored), name
    # matrix_nullable holds a value in some rows of every partition: every row group has one
    assert rebuilt["has_matrix_nullable"].get_row_group_indexes() <= set(range(10))
    assert dm.get_schema_from_dataset_url("file://" + str(legacy_copy)) == dm.get_schema_from_dataset_url(
        "file://" + os.path.join(testdata_dir, "legacy", "0.7.6"))


def test_build_keeps_other_indexes_and_checks_fields(legacy_copy):
    build_rowgroup_index(legacy_copy, None, [SingleFieldIndexer("by_odd", "id_odd")])
    indexes = get_row_group_indexes(pq.ParquetDataset(legacy_copy))
    assert set(indexes) == {"id", "partition_key", "sensor_name", "string_array_nullable", "by_odd"}
    assert indexes["by_odd"].get_row_group_indexes(True) == set(range(10))
    with pytest.raises(ValueError, match="nope"):
        build_rowgroup_index(legacy_copy, None, [SingleFieldIndexer("x", "nope")])


def test_build_needs_a_petastorm_schema(tmp_path):
    import pyarrow as pa

    pq.write_table(pa.table({"a": [1]}), str(tmp_path / "p.parquet"))
    with pytest.raises(PetastormMetadataError, match="petastorm-generate-metadata"):
        build_rowgroup_index(str(tmp_path), None, [SingleFieldIndexer("a", "a")])


@pytest.mark.spark
@pytest.mark.slow
def test_build_with_a_spark_context_equals_the_in_process_build(legacy_copy, tmp_path, spark_session):
    other = str(tmp_path / "other")
    shutil.copytree(legacy_copy, other)
    indexers = [SingleFieldIndexer("id", "id"), FieldNotNullIndexer("has_int", "integer_nullable"),
                SingleFieldIndexer("strings", "string_array_nullable")]
    build_rowgroup_index("file://" + legacy_copy, spark_session.sparkContext, indexers)
    build_rowgroup_index("file://" + other, None, indexers)
    with_spark = get_row_group_indexes(pq.ParquetDataset(legacy_copy))
    in_process = get_row_group_indexes(pq.ParquetDataset(other))
    for name in ("id", "has_int", "strings"):
        assert _index_data(with_spark[name]) == _index_data(in_process[name]), name
    assert len(with_spark["id"].indexed_values) == 100


def test_build_rowgroup_index_on_a_missing_dataset_is_an_oserror(tmp_path):
    # recorded from 0.12.1: OSError "Passed non-file path" (not a complaint about missing metadata)
    from petastorm.etl.rowgroup_indexers import SingleFieldIndexer
    from petastorm.etl.rowgroup_indexing import build_rowgroup_index

    missing = tmp_path / "nope"
    with pytest.raises(OSError, match="Passed non-file path") as e:
        build_rowgroup_index(f"file://{missing}", None, [SingleFieldIndexer("by_id", "id")])
    assert str(missing) in str(e.value)
