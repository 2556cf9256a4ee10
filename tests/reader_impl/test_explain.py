"""reader.explain(): what is kept and pruned by each stage, rows and bytes per shard, the order and its quality,
checked against what the reader then actually reads (real files, real readers)."""
import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from petastorm import make_batch_reader, make_reader
from petastorm.errors import PetastormArgumentError
from petastorm.reader_impl.explain import ReadPlan
from petastorm.reader_impl.shuffle_quality import sequence_quality

# synthetic_dataset: 100 rows, ids 0..99 in dataset order, 10 row groups of 10 rows, 2 row groups per file


def _ids(reader):
    return [int(r.id) for r in reader]


def test_explain_reads_no_data_and_predicts_the_rows_read(synthetic_dataset):
    with make_reader(synthetic_dataset, seed=1, workers_count=2) as reader:
        plan = reader.explain()
        assert reader.diagnostics["pool_items_submitted"] == 0  # nothing was read to explain
        assert isinstance(plan, ReadPlan)
        assert plan.rows_per_epoch == 100 and plan.items == 10
        assert plan.kept.row_groups == 10 and plan.kept.files == 5
        assert plan.pool == {"type": "thread", "workers_count": 2, "results_queue_size": 50}
        assert "_common_metadata" in plan.metadata_source and "Petastorm schema" in plan.metadata_source
        assert len(_ids(reader)) == plan.rows_per_epoch


def test_explained_order_is_the_order_read(synthetic_dataset):
    with make_reader(synthetic_dataset, seed=11, shuffle_rows=True, num_epochs=2, workers_count=3) as reader:
        plans = [reader.explain(e, row_counts=True) for e in (0, 1)]
        ids = np.asarray(_ids(reader))
    for epoch, plan in enumerate(plans):
        read = sequence_quality(ids[epoch * 100:(epoch + 1) * 100], ids[epoch * 100:(epoch + 1) * 100] // 10)
        q = plan.shuffle_quality
        assert q["same_group_fraction"] == pytest.approx(read.same_group_fraction)
        assert q["same_group_uniform"] == pytest.approx(read.same_group_uniform)
        assert q["displacement_mean"] == pytest.approx(read.displacement_mean, abs=0.1)  # in-item perms: expectation
    assert plans[0].shuffle_quality != plans[1].shuffle_quality  # another epoch, another order


def test_original_sharding_table_matches_what_each_shard_reads(synthetic_dataset):
    per_shard = []
    for shard in range(3):
        with make_reader(synthetic_dataset, seed=2, cur_shard=shard, shard_count=3, workers_count=1) as reader:
            plan = reader.explain()
            per_shard.append((plan, len(_ids(reader))))
    plan0 = per_shard[0][0]
    assert [s.rows for s in plan0.shards] == [n for _, n in per_shard] == [40, 30, 30]
    assert [s.row_groups for s in plan0.shards] == [4, 3, 3]
    step = per_shard[1][0].selection[-1]
    assert (step.stage, step.row_groups, step.pruned_row_groups) == ("sharding", 3, 7)
    assert "shard 1 of 3" in step.detail


def test_balanced_shards_get_equal_rows(synthetic_dataset):
    with make_reader(synthetic_dataset, seed=4, cur_shard=2, shard_count=3, shard_mode="balanced",
                     shuffle_row_drop_partitions=2, workers_count=1) as reader:
        plan = reader.explain()
        read = len(_ids(reader))
    assert [s.rows for s in plan.shards] == [33, 33, 33]
    assert plan.rows_per_epoch == read == 33 and plan.rows_exact
    assert "balanced" in plan.order and "1/2 of a row group" in plan.order


def test_filters_on_partition_keys_prune_row_groups_and_other_filters_run_per_row(tmp_path):
    table = pa.table({"id": np.arange(60), "part": np.repeat(["a", "b", "c"], 20)})
    pq.write_to_dataset(table, str(tmp_path), partition_cols=["part"])
    url = "file://" + str(tmp_path)
    with make_batch_reader(url, filters=[("part", "in", ["a", "c"])], workers_count=1) as reader:
        plan = reader.explain()
        rows = sum(len(b.id) for b in reader)
    step = plan.selection[-1]
    assert (step.stage, step.row_groups, step.pruned_row_groups, step.files, step.pruned_files) == \
        ("filters", 2, 1, 2, 1)
    assert plan.rows_per_epoch == rows == 40
    assert "footers of 3 file(s)" in plan.metadata_source and "inferred" in plan.metadata_source
    with make_batch_reader(url, filters=[("id", "<", 5)], workers_count=1) as reader:
        plan = reader.explain()
    assert [s.stage for s in plan.selection] == ["dataset"]
    assert any("id" in f and "filters" in f for f in plan.row_filters)


def test_predicate_on_partition_keys_prunes(tmp_path):
    from petastorm.predicates import in_set

    table = pa.table({"id": np.arange(40), "part": np.repeat(["x", "y"], 20)})
    pq.write_to_dataset(table, str(tmp_path), partition_cols=["part"])
    with make_batch_reader("file://" + str(tmp_path), predicate=in_set({"y"}, "part"), workers_count=1) as reader:
        plan = reader.explain()
    step = plan.selection[-1]
    assert (step.stage, step.row_groups, step.pruned_row_groups) == ("predicate", 1, 1)
    assert any("predicate" in f for f in plan.row_filters)


def test_rowgroup_selector_stage(synthetic_dataset, tmp_path):
    from petastorm.etl.rowgroup_indexers import SingleFieldIndexer
    from petastorm.etl.rowgroup_indexing import build_rowgroup_index
    from petastorm.selectors import SingleIndexSelector

    path = str(tmp_path / "ds")
    shutil.copytree(synthetic_dataset[len("file://"):], path)
    build_rowgroup_index("file://" + path, None, [SingleFieldIndexer("by_decade", "id_div_10")])
    with make_reader("file://" + path, rowgroup_selector=SingleIndexSelector("by_decade", [2, 7]),
                     workers_count=1) as reader:
        plan = reader.explain()
    step = plan.selection[1]
    assert (step.stage, step.row_groups, step.pruned_row_groups, step.files, step.pruned_files) == \
        ("rowgroup_selector", 2, 8, 2, 3)
    assert plan.rows_per_epoch == 20


def test_estimated_bytes_follow_the_selected_columns(synthetic_dataset):
    path = synthetic_dataset[len("file://"):]
    import glob

    compressed = {}
    for f in glob.glob(path + "/*.parquet"):
        md = pq.ParquetFile(f).metadata
        for i in range(md.num_row_groups):
            for j in range(md.row_group(i).num_columns):
                col = md.row_group(i).column(j)
                compressed[col.path_in_schema] = compressed.get(col.path_in_schema, 0) + col.total_compressed_size
    with make_reader(synthetic_dataset, schema_fields=["id", "image"], workers_count=1) as reader:
        plan = reader.explain()
    assert plan.fields == ("id", "image")
    assert plan.bytes_per_epoch == pytest.approx(compressed["id"] + compressed["image"], rel=0.2)
    with make_reader(synthetic_dataset, workers_count=1) as reader:
        assert reader.explain().bytes_per_epoch == pytest.approx(sum(compressed.values()), rel=0.2)


def test_loader_buffer_quality_and_printable_forms(synthetic_dataset):
    with make_reader(synthetic_dataset, seed=5, workers_count=1) as reader:
        plan = reader.explain(shuffling_queue_capacity=30, batch_size=5)
    assert plan.buffered_quality["mixing"] > plan.shuffle_quality["mixing"]
    data = json.loads(json.dumps(plan.to_dict()))
    assert data["rows_per_epoch"] == 100 and data["selection"][0]["stage"] == "dataset"
    text = str(plan)
    for part in ("Selection", "Rows per epoch", "Order:", "Shuffle quality", "with loader buffer", "Pool: thread"):
        assert part in text


def test_bad_arguments_name_the_argument(synthetic_dataset):
    with make_reader(synthetic_dataset, workers_count=1) as reader:
        with pytest.raises(PetastormArgumentError, match="epoch"):
            reader.explain(-1)
        with pytest.raises(PetastormArgumentError, match="shuffling_queue_capacity"):
            reader.explain(shuffling_queue_capacity=-5)
        with pytest.raises(PetastormArgumentError, match="batch_size"):
            reader.explain(shuffling_queue_capacity=5, batch_size=0)


@pytest.mark.slow  # imports torch (~5 s on a loaded machine)
def test_a_loader_explains_the_order_it_serves(synthetic_dataset):
    from petastorm.pytorch import BatchedDataLoader, DataLoader

    with make_reader(synthetic_dataset, schema_fields=["id", "value"], seed=6, workers_count=1) as reader:
        loader = BatchedDataLoader(reader, batch_size=5, shuffling_queue_capacity=30)
        plan = loader.explain()
        assert plan.buffered_quality is not None and plan.buffered_quality["mixing"] > 0.5
        assert plan.shuffle_quality == reader.explain().shuffle_quality  # the reader's order, before the buffer
        ids = np.concatenate([b["id"].numpy() for b in loader])
    # the simulation is seeded as the loader's first pass: the quality of the very order it served
    assert sequence_quality(ids, ids // 10).to_dict() == plan.buffered_quality
    with make_reader(synthetic_dataset, seed=6, workers_count=1) as reader:
        assert DataLoader(reader, batch_size=4).explain().buffered_quality is None  # no buffer


def test_a_batch_pipeline_and_a_jax_iterator_explain_their_buffer(synthetic_dataset):
    from petastorm.adapters import BatchPipeline
    from petastorm.jax import make_jax_iterator

    with make_reader(synthetic_dataset, schema_fields=["id", "value"], seed=8, workers_count=1) as reader:
        pipeline = BatchPipeline(reader, 4, shuffling_queue_capacity=10, min_after_retrieve=40)
        plan = pipeline.explain()
        pipeline.close()
        # min_after_retrieve=40 with batches of 4: the buffer holds 44 rows, as one of capacity 44 does
        assert plan.buffered_quality == reader.explain(shuffling_queue_capacity=44, batch_size=4).buffered_quality
        assert plan.buffered_quality != reader.explain(shuffling_queue_capacity=10, batch_size=4).buffered_quality
        assert reader.diagnostics["pool_items_submitted"] == 0
    reader = make_reader(synthetic_dataset, schema_fields=["id", "value"], seed=8, workers_count=1)
    with make_jax_iterator(reader, batch_size=5, shuffling_queue_capacity=20) as it:
        plan = it.explain()
    assert plan.buffered_quality is not None and plan.rows_per_epoch == 100

