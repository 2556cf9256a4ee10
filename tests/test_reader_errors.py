"""Bad input to make_reader / make_batch_reader: a clear error naming what is wrong, and nothing hangs.
(Stores that cannot be opened: tests/reader_impl/test_dataset_errors.py; corrupt pages:
tests/reader_impl/test_worker_corrupt_pages.py.)
"""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from petastorm import TransformSpec, make_batch_reader, make_reader
from petastorm.errors import PetastormError, PetastormStateError
from petastorm.predicates import in_set


def test_plain_parquet_with_make_reader_suggests_make_batch_reader(tmp_path):
    pq.write_table(pa.table({"x": [1, 2]}), str(tmp_path / "a.parquet"))
    with pytest.warns(UserWarning, match="make_batch_reader"):  # the original's warning; it reads on
        make_reader("file://" + str(tmp_path)).stop()


def test_schema_field_regex_matching_nothing(synthetic_dataset):
    with pytest.raises(ValueError, match="no_such_field"):
        make_reader(synthetic_dataset, schema_fields=["no_such_field"])


@pytest.mark.parametrize("kwargs,word", [
    (dict(cur_shard=3, shard_count=3), "cur_shard"),
    (dict(cur_shard=0), "shard_count"),
    (dict(shard_count=2), "cur_shard"),
    (dict(workers_count=-1), "workers_count"),
    (dict(reader_pool_type="fibers"), "reader_pool_type"),
    (dict(num_epochs=0), "num_epochs"),
    (dict(num_epochs="x"), "num_epochs"),
    (dict(cache_type="redis"), "cache_type"),
])
def test_bad_arguments_name_the_argument(synthetic_dataset, kwargs, word):
    with pytest.raises(ValueError, match=word):
        make_reader(synthetic_dataset, **kwargs)


def test_more_shards_than_row_groups(synthetic_dataset):
    with pytest.raises(PetastormError):
        make_reader(synthetic_dataset, cur_shard=11, shard_count=12)


def test_predicate_on_a_field_not_in_the_schema(synthetic_dataset):
    with pytest.raises(ValueError, match="not_a_field"):
        make_reader(synthetic_dataset, predicate=in_set({1}, "not_a_field"))


@pytest.mark.parametrize("pool", ["thread", "process"])
def test_transform_that_raises_reaches_the_caller(synthetic_dataset, pool):
    def boom(row):
        raise ZeroDivisionError("boom in transform")

    with make_reader(synthetic_dataset, transform_spec=TransformSpec(boom), reader_pool_type=pool,
                     workers_count=1) as reader:
        with pytest.raises(Exception, match="boom in transform"):
            next(reader)


def test_transform_returning_the_wrong_type(synthetic_dataset):
    with make_batch_reader(synthetic_dataset, transform_spec=TransformSpec(lambda df: 42),
                           workers_count=1) as reader:
        with pytest.raises(PetastormError):
            next(reader)


def test_state_dict_of_another_dataset_is_refused(synthetic_dataset, tmp_path):
    from _fixtures.datasets import write_synthetic_dataset

    other = write_synthetic_dataset(str(tmp_path / "other"), rows=50)
    with make_reader(other, seed=1) as reader:
        next(reader)
        state = reader.state_dict()
    with pytest.raises(PetastormStateError, match="dataset"):
        make_reader(synthetic_dataset, seed=1, resume_from=state)


def test_predicate_that_filters_everything_yields_nothing(synthetic_dataset):
    with make_reader(synthetic_dataset, predicate=in_set({-1}, "id")) as reader:
        assert list(reader) == []
