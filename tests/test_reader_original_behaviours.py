"""Behaviours of the original petastorm's ``make_reader`` / ``make_batch_reader`` facade, recorded from it as a
black box (0.12.1; the cache clean-up from 0.13.1) and matched here: URL checks, Parquet stores without
Petastorm metadata, single files and lists of files, planning-time pruning by a predicate on partition keys
and its warning, the local-disk cache's removal; and the defect of files listed in the metadata but missing."""
import os
import warnings

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from petastorm import make_batch_reader, make_reader, write_dataset
from petastorm.codecs import NdarrayCodec, ScalarCodec
from petastorm.errors import PetastormDatasetError
from petastorm.predicates import in_lambda, in_set
from petastorm.spark_types import IntegerType, StringType
from petastorm.unischema import Unischema, UnischemaField

FACTORIES = [make_reader, make_batch_reader]
POOLS = ["dummy", "thread", "process"]
NO_METADATA_WARNING = "Currently make_reader supports reading only Petastorm datasets"
NO_DATA_WARNING = "No matching data is available for loading"

Schema = Unischema("Schema", [
    UnischemaField("id", np.int32, (), ScalarCodec(IntegerType()), False),
    UnischemaField("part", np.str_, (), ScalarCodec(StringType()), False),
    UnischemaField("vec", np.float32, (4,), NdarrayCodec(), False),
])


def _rows(n):
    return ({"id": i, "part": f"p{i % 2}", "vec": np.full(4, i, np.float32)} for i in range(n))


@pytest.fixture(scope="module")
def two_files(tmp_path_factory):
    """40 rows in two files of one row group each."""
    path = tmp_path_factory.mktemp("two_files") / "ds"
    write_dataset(f"file://{path}", Schema, _rows(40), num_files=2, workers_count=1, progress=False)
    return path


@pytest.fixture(scope="module")
def partitioned(tmp_path_factory):
    path = tmp_path_factory.mktemp("partitioned") / "ds"
    write_dataset(f"file://{path}", Schema, _rows(20), partition_by=["part"], workers_count=1, progress=False)
    return path


def _ids(reader):
    ids = []
    for item in reader:
        ids.extend(np.atleast_1d(item.id).tolist())
    return sorted(ids)


def _parquet_files(path):
    return sorted(str(p) for p in path.rglob("*.parquet"))


@pytest.mark.parametrize("pool", POOLS)
@pytest.mark.parametrize("factory", FACTORIES)
def test_missing_listed_file_raises_naming_it(two_files, tmp_path, factory, pool):
    import shutil

    copy = tmp_path / "ds"
    shutil.copytree(two_files, copy)
    gone = _parquet_files(copy)[1]
    os.remove(gone)
    with pytest.raises(PetastormDatasetError, match="missing") as info:
        with factory(f"file://{copy}", reader_pool_type=pool, workers_count=2) as reader:
            list(reader)
    assert os.path.basename(gone) in str(info.value)


def test_plain_parquet_store_reads_with_make_reader_after_a_warning(tmp_path):
    pq.write_table(pa.table({"a": list(range(10)), "s": [f"x{i}" for i in range(10)]}),
                   str(tmp_path / "p0.parquet"), row_group_size=5)
    with pytest.warns(UserWarning, match=NO_METADATA_WARNING):
        reader = make_reader(f"file://{tmp_path}", reader_pool_type="dummy")
    with reader:
        rows = list(reader)
    assert sorted(r.a for r in rows) == list(range(10))
    assert {r.s for r in rows} == {f"x{i}" for i in range(10)}


@pytest.mark.parametrize("factory", FACTORIES)
def test_url_of_one_file_of_a_petastorm_dataset_reads_that_file_with_an_inferred_schema(two_files, factory):
    first = _parquet_files(two_files)[0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with factory(f"file://{first}", reader_pool_type="dummy") as reader:
            ids = _ids(reader)
            schema = reader.schema
    assert len(ids) == 20
    # as the original: the file alone carries no Petastorm metadata, so the schema is inferred (the ndarray
    # field is the raw npy bytes) and make_reader warns
    assert schema.fields["vec"].numpy_dtype == np.bytes_
    warned = any(NO_METADATA_WARNING in str(w.message) for w in caught)
    assert warned == (factory is make_reader)


@pytest.mark.parametrize("factory", FACTORIES)
def test_a_list_of_file_urls_reads_every_listed_file_and_a_file_listed_twice_twice(two_files, factory):
    first, second = _parquet_files(two_files)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with factory([f"file://{first}", f"file://{second}"], reader_pool_type="dummy") as reader:
            assert _ids(reader) == list(range(40))
        with factory([f"file://{first}", f"file://{first}"], reader_pool_type="dummy") as reader:
            twice = _ids(reader)
    assert len(twice) == 40 and len(set(twice)) == 20


@pytest.mark.parametrize("bad, phrase", [(None, "directory url must be a string"),
                                         (123, "directory url must be a string"),
                                         ([], "dataset url list must be non-empty")])
@pytest.mark.parametrize("factory", FACTORIES)
def test_a_dataset_url_that_is_not_a_url_raises_value_error(factory, bad, phrase):
    with pytest.raises(ValueError, match=phrase):
        factory(bad)


@pytest.mark.parametrize("factory", FACTORIES)
def test_a_path_object_is_accepted_as_a_dataset_url(two_files, factory):
    with factory(two_files, reader_pool_type="dummy") as reader:
        assert _ids(reader) == list(range(40))


@pytest.mark.parametrize("predicate", [in_set(["zz"], "part"), in_lambda(["part"], lambda p: False)],
                         ids=["in_set", "in_lambda"])
@pytest.mark.parametrize("factory", FACTORIES)
def test_predicate_that_excludes_every_partition_warns_no_matching_data(partitioned, factory, predicate):
    with pytest.warns(UserWarning, match=NO_DATA_WARNING):
        reader = factory(f"file://{partitioned}", predicate=predicate, reader_pool_type="dummy")
    with reader:
        assert _ids(reader) == []


@pytest.mark.parametrize("factory", FACTORIES)
def test_predicate_on_partition_keys_prunes_row_groups_at_planning(partitioned, factory):
    seen = []

    def keep_p0(part):
        seen.append(part)
        return part == "p0"

    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # some data is left: no warning
        with factory(f"file://{partitioned}", predicate=in_lambda(["part"], keep_p0),
                     reader_pool_type="dummy") as reader:
            planned = int((reader._p.plan_rows > 0).sum())  # rejected row groups are planned with 0 rows
            assert _ids(reader) == list(range(0, 20, 2))
    assert planned == 1  # the p1 row group was pruned before reading


@pytest.mark.parametrize("factory", FACTORIES)
def test_filters_that_exclude_every_partition_warn_no_matching_data(partitioned, factory):
    with pytest.warns(UserWarning, match=NO_DATA_WARNING):
        reader = factory(f"file://{partitioned}", filters=[("part", "=", "zz")], reader_pool_type="dummy")
    with reader:
        assert _ids(reader) == []


@pytest.mark.parametrize("factory", FACTORIES)
def test_local_disk_cache_is_removed_when_the_reader_context_exits(two_files, tmp_path, factory):
    location = tmp_path / "cache"
    kwargs = dict(cache_type="local-disk", cache_location=str(location), cache_size_limit=10 ** 8,
                  cache_row_size_estimate=100, reader_pool_type="dummy")
    reader = factory(f"file://{two_files}", **kwargs)
    list(reader)
    reader.stop()
    reader.join()
    assert location.exists()  # stop() and join() keep the cache for a later reader, as in 0.13
    with factory(f"file://{two_files}", **kwargs) as reader:
        assert _ids(reader) == list(range(40))
        assert location.exists()
    assert not location.exists()


@pytest.mark.parametrize("factory", FACTORIES)
def test_convert_early_to_numpy_is_accepted_by_both_factories(two_files, factory):
    with factory(f"file://{two_files}", reader_pool_type="dummy", convert_early_to_numpy=True) as reader:
        assert _ids(reader) == list(range(40))


def test_local_disk_cache_made_with_cleanup_false_outlives_the_reader_context(two_files, tmp_path):
    location = tmp_path / "cache"
    with make_reader(f"file://{two_files}", cache_type="local-disk", cache_location=str(location),
                     cache_size_limit=10 ** 8, cache_row_size_estimate=100, reader_pool_type="dummy",
                     cache_extra_settings={"cleanup": False}) as reader:
        assert _ids(reader) == list(range(40))
    assert location.exists()


@pytest.mark.parametrize("pool", POOLS)
@pytest.mark.parametrize("factory", FACTORIES)
def test_unischema_fields_given_as_a_list_keep_their_order_then_regex_matches(two_files, factory, pool):
    with factory(f"file://{two_files}", schema_fields=[Schema.vec, Schema.id], reader_pool_type=pool,
                 workers_count=2) as reader:
        first = next(reader)
    assert first._fields == ("vec", "id")
    assert np.asarray(first.vec).shape[-1] == 4 and reader.schema.fields["vec"].shape == (4,)
    with factory(f"file://{two_files}", schema_fields=["vec", Schema.part, "i."], reader_pool_type=pool,
                 workers_count=2) as reader:
        assert next(reader)._fields == ("part", "id", "vec")
