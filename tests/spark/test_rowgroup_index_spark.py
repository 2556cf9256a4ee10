"""build_rowgroup_index with a Spark context: the row groups are indexed in Spark tasks, and the stored
indexes are those 0.12.1 builds (recorded from the original's public API on the same dataset, black box)."""
import time

import pyarrow.parquet as pq
import pytest

from petastorm import make_reader
from petastorm.etl.rowgroup_indexers import FieldNotNullIndexer, SingleFieldIndexer
from petastorm.etl.rowgroup_indexing import build_rowgroup_index, get_row_group_indexes
from petastorm.selectors import SingleIndexSelector


def _jobs_of(spark_context, group, action):
    """Run ``action()`` with the Spark job group ``group``; the ids of the Spark jobs it started."""
    spark_context.setJobGroup(group, group)
    try:
        action()
    finally:
        spark_context.setLocalProperty("spark.jobGroup.id", None)
        spark_context.setLocalProperty("spark.job.description", None)
    return list(spark_context.statusTracker().getJobIdsForGroup(group))


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, spark_session):
    """A copy of the 100-row synthetic dataset (10 row groups of 10 rows), indexed with the Spark context."""
    from _fixtures.datasets import write_synthetic_dataset

    path = str(tmp_path_factory.mktemp("indexed") / "dataset")
    url = write_synthetic_dataset(path)
    indexers = [SingleFieldIndexer("by_div", "id_div_10"), SingleFieldIndexer("by_name", "name"),
                FieldNotNullIndexer("name_nn", "name")]
    jobs = _jobs_of(spark_session.sparkContext, "petastorm-index-build",
                    lambda: build_rowgroup_index(url, spark_session.sparkContext, indexers))
    return url, path, jobs


def test_the_row_groups_are_indexed_in_spark_tasks(indexed, spark_session):
    _, _, jobs = indexed
    assert jobs  # 0.12.1 ran one Spark job here too
    tracker = spark_session.sparkContext.statusTracker()
    deadline = time.monotonic() + 30  # the tracker is fed by Spark's listener bus, a little after the job
    while time.monotonic() < deadline:
        infos = [tracker.getJobInfo(job) for job in jobs]
        if all(info is not None and info.status == "SUCCEEDED" for info in infos):
            break
        time.sleep(0.1)
    assert [info.status for info in infos] == ["SUCCEEDED"] * len(jobs)
    stages = [tracker.getStageInfo(stage) for info in infos for stage in info.stageIds]
    assert sum(stage.numCompletedTasks for stage in stages if stage is not None) >= 1


def test_the_stored_indexes_are_those_0_12_1_builds(indexed):
    _, path, _ = indexed
    indexes = get_row_group_indexes(pq.ParquetDataset(path))
    # recorded from 0.12.1 on the same dataset
    assert sorted(indexes) == ["by_div", "by_name", "name_nn"]
    by_div = indexes["by_div"]
    assert {int(v): sorted(by_div.get_row_group_indexes(v)) for v in by_div.indexed_values} == \
        {v: [v] for v in range(10)}
    assert sorted(indexes["by_name"].indexed_values)[:5] == ["row_0", "row_1", "row_10", "row_11", "row_12"]
    assert sorted(indexes["by_name"].get_row_group_indexes("row_57")) == [5]
    assert sorted(indexes["name_nn"].get_row_group_indexes()) == list(range(10))


def test_a_reader_selects_row_groups_with_the_index(indexed):
    url, _, _ = indexed
    with make_reader(url, rowgroup_selector=SingleIndexSelector("by_div", [3, 5]), reader_pool_type="dummy") as reader:
        ids = sorted(int(row.id) for row in reader)
    assert ids == list(range(30, 40)) + list(range(50, 60))  # as 0.12.1 reads this index


def test_another_index_built_later_keeps_the_first_ones(indexed, spark_session):
    url, path, _ = indexed
    build_rowgroup_index(url, spark_session.sparkContext, [SingleFieldIndexer("by_id", "id")])
    indexes = get_row_group_indexes(pq.ParquetDataset(path))
    assert sorted(indexes) == ["by_div", "by_id", "by_name", "name_nn"]
    assert sorted(indexes["by_id"].get_row_group_indexes(42)) == [4]


def test_an_indexer_on_an_unknown_field_fails_before_any_spark_job(indexed, spark_session):
    url, _, _ = indexed
    sc = spark_session.sparkContext
    # 0.12.1 started the Spark job, whose tasks failed with ValueError 'Cannot build index with empty decoded_rows,
    # columns: {'nope'}, ...' (a Py4JJavaError in the caller); here a ValueError naming the indexer and the field
    with pytest.raises(ValueError, match=r"indexer 'x': fields \['nope'\] are not in the schema") as info:
        _jobs_of(sc, "petastorm-index-unknown",
                 lambda: build_rowgroup_index(url, sc, [SingleFieldIndexer("x", "nope")]))
    assert "'id_div_10'" in str(info.value)
    assert not list(sc.statusTracker().getJobIdsForGroup("petastorm-index-unknown"))


def test_no_indexer_fails_before_any_spark_job(indexed, spark_session):
    url, _, _ = indexed
    sc = spark_session.sparkContext
    # 0.12.1: a failed Spark job ('Cannot build index with empty decoded_rows, columns: set()')
    with pytest.raises(ValueError, match="indexers must be a non-empty list"):
        build_rowgroup_index(url, sc, [])
