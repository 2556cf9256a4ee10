"""Where the original raises for a condition, we raise the same class (or a subclass) with a message that
still contains the original's wording. The original's classes and messages were recorded by running
petastorm 0.12.1 as a black box (tools_compat/original_error_wording.py -> tools_compat/original_errors.json)."""
import builtins
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from petastorm import TransformSpec, make_batch_reader, make_reader
from petastorm.predicates import in_set
from petastorm.selectors import SingleIndexSelector

RECORD = os.path.join(os.path.dirname(__file__), "..", "..", "tools_compat", "original_errors.json")


def _original(case):
    """(class our error must be an instance of, the original's message) of a recorded case. A class of the
    original's own modules (``petastorm.errors.NoDataAvailableError``) must be importable from the same
    module of ours; pyarrow's ``ArrowInvalid`` is a ``ValueError``."""
    with open(RECORD) as f:
        exc = json.load(f)["cases"][case]["exception"]
    module, _, name = exc["class"].rpartition(".")
    if module == "builtins":
        cls = getattr(builtins, name)
    elif module == "pyarrow.lib" and name == "ArrowInvalid":
        cls = ValueError
    else:
        import importlib

        cls = getattr(importlib.import_module(module), name)
    return cls, exc["message"]


def _check(case, call, wording=None):
    cls, message = _original(case)
    with pytest.raises(Exception) as info:
        call()
    if cls is not None:
        assert isinstance(info.value, cls), f"{case}: {type(info.value).__mro__} is not a {cls}"
    expected = wording if wording is not None else message
    assert expected in str(info.value), f"{case}: {expected!r} not in {str(info.value)!r}"
    return info.value


def test_unknown_cache_type(synthetic_dataset):
    _check("make_reader.cache_type_unknown", lambda: make_reader(synthetic_dataset, cache_type="bogus"))


def test_unknown_pool_type(synthetic_dataset):
    _check("make_reader.reader_pool_type_unknown", lambda: make_reader(synthetic_dataset, reader_pool_type="bogus"))


@pytest.mark.parametrize("fields", [["nope"], ["^zzz.*"]])
def test_schema_fields_matching_nothing(synthetic_dataset, fields):
    _check("make_reader.schema_fields_name_nomatch", lambda: make_reader(synthetic_dataset, schema_fields=fields),
           wording=f"No fields matching the criteria '{fields}' were found in the dataset")
    _check("make_batch_reader.schema_fields_name_nomatch",
           lambda: make_batch_reader(synthetic_dataset, schema_fields=fields),
           wording=f"No fields matching the criteria '{fields}' were found in the dataset")


@pytest.mark.parametrize("pool", ["thread", "process", "dummy"])
def test_reading_after_stop(synthetic_dataset, pool):
    def call():
        reader = make_reader(synthetic_dataset, reader_pool_type=pool, workers_count=1)
        next(reader)
        reader.stop()
        reader.join()
        next(reader)

    _check("make_reader.read_after_stop_join", call)


def test_reading_after_the_context_manager_exits(synthetic_dataset):
    def call():
        with make_batch_reader(synthetic_dataset) as reader:
            next(reader)
        next(reader)

    _check("make_reader.read_after_context_exit", call)


@pytest.mark.parametrize("kwargs", [dict(shard_count=2), dict(cur_shard=0), dict(cur_shard=0, shard_count=0)])
def test_incomplete_sharding_arguments(synthetic_dataset, kwargs):
    _check("make_reader.shard_count_without_cur_shard", lambda: make_reader(synthetic_dataset, **kwargs))


def test_more_shards_than_row_groups(synthetic_dataset):
    from petastorm.errors import NoDataAvailableError

    err = _check("make_reader.too_many_shards_empty_shard",
                 lambda: make_reader(synthetic_dataset, cur_shard=0, shard_count=11))
    assert isinstance(err, NoDataAvailableError)


def test_predicate_on_unknown_field(synthetic_dataset):
    _check("make_reader.predicate_field_not_in_schema",
           lambda: make_reader(synthetic_dataset, predicate=in_set({1}, "nope")),
           wording="At least some column names requested by the predicate (nope) are not valid schema names:")


@pytest.mark.parametrize("num_epochs", [0, -1, "x", 1.5])
def test_invalid_num_epochs(synthetic_dataset, num_epochs):
    _check("make_reader.num_epochs_0", lambda: make_reader(synthetic_dataset, num_epochs=num_epochs))


def test_missing_path(tmp_path):
    _check("make_reader.missing_path", lambda: make_reader("file://" + str(tmp_path / "does_not_exist")),
           wording="Passed non-file path: ")


def test_corrupt_parquet(tmp_path):
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all, no magic")
    _check("make_batch_reader.corrupt_parquet", lambda: make_batch_reader("file://" + str(tmp_path)))


def test_reset_in_the_middle_of_iteration(synthetic_dataset):
    def call():
        with make_reader(synthetic_dataset) as reader:
            next(reader)
            reader.reset()

    _check("make_reader.reset_before_exhaustion", call)


def test_rowgroup_selector_without_index(synthetic_dataset):
    _check("make_reader.rowgroup_selector_missing_index",
           lambda: make_reader(synthetic_dataset, rowgroup_selector=SingleIndexSelector("idx", [1])))


def test_ngram_with_the_batch_reader(synthetic_dataset):
    from _fixtures.datasets import SyntheticSchema as S

    from petastorm.ngram import NGram

    ngram = NGram({0: [S.id], 1: [S.id]}, delta_threshold=10, timestamp_field=S.timestamp)
    _check("make_batch_reader.ngram", lambda: make_batch_reader(synthetic_dataset, schema_fields=ngram))


def test_transform_returning_an_int(synthetic_dataset):
    def call():
        with make_reader(synthetic_dataset, transform_spec=TransformSpec(lambda row: 1)) as reader:
            next(reader)

    _check("make_reader.transform_returns_int", call,
           wording="make_namedtuple() argument after ** must be a mapping, not int")


def test_empty_url_list():
    _check("make_batch_reader.empty_url_list", lambda: make_batch_reader([]))


def test_url_list_with_mixed_schemes(tmp_path):
    pq.write_table(pa.table({"x": np.arange(3)}), str(tmp_path / "a.parquet"))
    _check("make_batch_reader.list_of_urls_mixed_schemes",
           lambda: make_batch_reader(["file://" + str(tmp_path / "a.parquet"), "s3://bucket/b.parquet"]))


def test_unknown_protocol():
    _check("make_reader.unsupported_hdfs_scheme", lambda: make_reader("foo://bar/baz"))
