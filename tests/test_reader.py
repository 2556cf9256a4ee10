"""make_reader / make_batch_reader end to end on a synthetic Petastorm dataset (10 row groups x 10 rows)."""
import json
import warnings

import numpy as np
import pytest

from petastorm import TransformSpec, make_batch_reader, make_reader
from petastorm.predicates import in_lambda, in_set
from petastorm.unischema import UnischemaField

POOLS = [("dummy", 1), ("thread", 1), ("thread", 3), ("process", 2)]


def _ids(reader):
    return [int(r.id) for r in reader]


def test_rows_come_in_file_and_row_group_order_without_shuffling(synthetic_dataset):
    with make_reader(synthetic_dataset, shuffle_row_groups=False, workers_count=3) as reader:
        assert _ids(reader) == list(range(100))


def test_decoded_values_match_what_was_written(synthetic_dataset):
    from _fixtures.datasets import synthetic_row

    with make_reader(synthetic_dataset, shuffle_row_groups=False, workers_count=2) as reader:
        rows = list(reader)
    for r in rows[:25]:
        expected = synthetic_row(int(r.id))
        np.testing.assert_array_equal(r.matrix, expected["matrix"])
        np.testing.assert_array_equal(r.image, expected["image"])
        np.testing.assert_array_equal(r.var, expected["var"])
        assert r.name == expected["name"]
        assert r.maybe == expected["maybe"]
        assert r.dec == expected["dec"]


@pytest.mark.parametrize("pool,workers", POOLS)
def test_same_seed_gives_the_same_sequence_for_every_pool_and_worker_count(synthetic_dataset, pool, workers):
    kwargs = dict(seed=42, shuffle_rows=True, shuffle_row_groups=True, num_epochs=2, shuffle_row_drop_partitions=2)
    with make_reader(synthetic_dataset, reader_pool_type="dummy", workers_count=1, **kwargs) as reader:
        reference = _ids(reader)
    with make_reader(synthetic_dataset, reader_pool_type=pool, workers_count=workers, **kwargs) as reader:
        assert _ids(reader) == reference
    assert sorted(reference) == sorted(list(range(100)) * 2)
    assert reference[:100] != reference[100:]  # epochs are shuffled differently


def test_different_seeds_give_different_orders(synthetic_dataset):
    with make_reader(synthetic_dataset, seed=1, shuffle_rows=True) as a, \
            make_reader(synthetic_dataset, seed=2, shuffle_rows=True) as b:
        assert _ids(a) != _ids(b)


def test_num_epochs_none_reads_forever(synthetic_dataset):
    with make_reader(synthetic_dataset, num_epochs=None, workers_count=2) as reader:
        ids = [int(next(reader).id) for _ in range(250)]
    assert len(ids) == 250


def test_schema_fields_by_regex_and_by_field(synthetic_dataset):
    with make_reader(synthetic_dataset, schema_fields=["id", "ma.*"]) as reader:
        row = next(reader)
        assert row._fields == ("id", "matrix", "maybe")
        assert set(reader.schema.fields) == {"id", "matrix", "maybe"}
    from _fixtures.datasets import SyntheticSchema

    with make_reader(synthetic_dataset, schema_fields=[SyntheticSchema.value]) as reader:
        assert next(reader)._fields == ("value",)


def test_predicate_reads_only_matching_rows(synthetic_dataset):
    with make_reader(synthetic_dataset, predicate=in_set({3, 33, 77}, "id"), shuffle_row_groups=False) as reader:
        assert _ids(reader) == [3, 33, 77]
    with make_reader(synthetic_dataset, predicate=in_lambda(["value"], lambda v: v > 13)) as reader:
        assert sorted(_ids(reader)) == [i for i in range(100) if i / 7 > 13]


def test_transform_spec_runs_on_rows_and_on_batches(synthetic_dataset):
    def double(row):
        row["value"] = row["value"] * 2
        del row["image"]
        return row

    spec = TransformSpec(double, removed_fields=["image"])
    with make_reader(synthetic_dataset, transform_spec=spec, shuffle_row_groups=False) as reader:
        rows = list(reader)
        assert "image" not in reader.schema.fields
    assert rows[7].value == pytest.approx(2 * 7 / 7)

    def add_col(df):
        df["double_id"] = df["id"] * 2
        return df

    spec = TransformSpec(add_col, edit_fields=[("double_id", np.int64, (), False)], selected_fields=["id", "double_id"])
    with make_batch_reader(synthetic_dataset, transform_spec=spec, schema_fields=["id", "value"]) as reader:
        batches = list(reader)
        assert list(reader.schema.fields) == ["id", "double_id"]  # selected_fields: in that order, 'value' gone
    assert len(batches) == 10 and all(b._fields == ("id", "double_id") for b in batches)
    for batch in batches:
        np.testing.assert_array_equal(batch.double_id, batch.id * 2)
    assert sorted(np.concatenate([b.id for b in batches]).tolist()) == list(range(100))


def test_batch_reader_yields_one_batch_per_row_group(synthetic_dataset):
    with make_batch_reader(synthetic_dataset, shuffle_row_groups=False) as reader:
        batches = list(reader)
    assert len(batches) == 10
    assert batches[0].matrix.shape == (10, 4, 3)
    assert batches[0].image.shape == (10, 8, 6, 3)
    np.testing.assert_array_equal(np.concatenate([b.id for b in batches]), np.arange(100))


@pytest.mark.parametrize("shard_seed", [None, 7])
def test_original_sharding_partitions_row_groups(synthetic_dataset, shard_seed):
    seen = []
    for shard in range(3):
        # the original warns that shard_seed is deprecated (in favour of seed), and so do we
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with make_reader(synthetic_dataset, cur_shard=shard, shard_count=3, shard_seed=shard_seed) as reader:
                seen.append(set(_ids(reader)))
        deprecated = [w for w in caught if "shard_seed was deprecated" in str(w.message)]
        assert len(deprecated) == (shard_seed is not None)
    assert set.union(*seen) == set(range(100))
    assert sum(len(s) for s in seen) == 100


@pytest.mark.parametrize("remainder", ["drop", "pad"])
def test_balanced_sharding_gives_every_shard_the_same_row_count(synthetic_dataset, remainder):
    counts = []
    for shard in range(3):
        with make_reader(synthetic_dataset, cur_shard=shard, shard_count=3, shard_mode="balanced",
                         balanced_remainder=remainder) as reader:
            counts.append(len(_ids(reader)))
    assert len(set(counts)) == 1
    assert counts[0] == (33 if remainder == "drop" else 34)


def test_state_dict_resume_continues_exactly(synthetic_dataset):
    kwargs = dict(seed=5, shuffle_rows=True, num_epochs=2, workers_count=2)
    with make_reader(synthetic_dataset, **kwargs) as reader:
        full = _ids(reader)
    with make_reader(synthetic_dataset, **kwargs) as reader:
        head = [int(next(reader).id) for _ in range(137)]
        state = json.loads(json.dumps(reader.state_dict()))
    with make_reader(synthetic_dataset, resume_from=state, **kwargs) as reader:
        tail = _ids(reader)
    assert head + tail == full


def test_state_dict_from_other_options_is_refused(synthetic_dataset):
    from petastorm.errors import PetastormStateError

    with make_reader(synthetic_dataset, seed=5) as reader:
        next(reader)
        state = reader.state_dict()
    with pytest.raises(PetastormStateError):
        make_reader(synthetic_dataset, seed=5, shuffle_rows=True, resume_from=state)


def test_reset_after_exhaustion_reads_another_pass(synthetic_dataset):
    with make_reader(synthetic_dataset, workers_count=2) as reader:
        first = _ids(reader)
        with pytest.raises(NotImplementedError):
            make_reader(synthetic_dataset).reset()
        reader.reset()
        second = _ids(reader)
    assert sorted(first) == sorted(second) == list(range(100))


def test_reading_after_stop_raises(synthetic_dataset):
    reader = make_reader(synthetic_dataset)
    next(reader)
    reader.stop()
    reader.join()
    with pytest.raises(RuntimeError):
        next(reader)


def test_filters_on_partition_free_columns(synthetic_dataset):
    with make_batch_reader(synthetic_dataset, filters=[("id", "<", 15)]) as reader:
        ids = np.concatenate([b.id for b in reader])
    assert sorted(ids.tolist()) == list(range(15))


def test_local_disk_cache_serves_the_second_epoch(synthetic_dataset, tmp_path):
    cache_dir = str(tmp_path / "cache")
    with make_reader(synthetic_dataset, cache_type="local-disk", cache_location=cache_dir,
                     cache_size_limit=10 ** 9, cache_row_size_estimate=1000, num_epochs=2, seed=1,
                     shuffle_rows=True) as reader:
        ids = _ids(reader)
        assert sorted(ids) == sorted(list(range(100)) * 2)
        import os

        assert os.path.isdir(cache_dir) and os.listdir(cache_dir)
        reader.cleanup_cache()
        assert not os.path.exists(cache_dir)


def test_deprecated_arguments_warn(synthetic_dataset):
    with pytest.warns(DeprecationWarning):
        make_reader(synthetic_dataset, pyarrow_serialize=True).stop()


def test_unischema_field_not_in_dataset_is_rejected(synthetic_dataset):
    with pytest.raises(ValueError, match="nope"):
        make_reader(synthetic_dataset, schema_fields=[UnischemaField("nope", np.int32, (), None, False)])


def test_single_row_items_with_shuffled_rows(synthetic_dataset):
    with make_reader(synthetic_dataset, shuffle_rows=True, shuffle_row_drop_partitions=10, seed=4) as reader:
        assert sorted(_ids(reader)) == list(range(100))


@pytest.mark.parametrize("pool", ["dummy", "thread", "process"])
def test_ndarray_rows_are_writable_independent_and_outlive_the_reader(synthetic_dataset, pool):
    # fixed-shape ndarray cells are decoded as views of the row group's memory in threads (a copy into
    # shared memory in worker processes): rows must still behave as arrays of their own
    import gc

    with make_reader(synthetic_dataset, reader_pool_type=pool, workers_count=2, schema_fields=["id", "matrix"],
                     shuffle_row_groups=False) as reader:
        rows = [row for _, row in zip(range(30), reader)]
    first = {int(r.id): r.matrix.copy() for r in rows}
    for r in rows:
        assert r.matrix.flags.writeable and r.matrix.flags.c_contiguous and r.matrix.shape == (4, 3)
        r.matrix[0, 0] = -999.0
    del reader
    gc.collect()
    for r in rows:
        assert r.matrix[0, 0] == -999.0
        np.testing.assert_array_equal(r.matrix[1:], first[int(r.id)][1:])
