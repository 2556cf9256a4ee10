"""Errors of the torch loaders and shuffling buffers are the built-in types 0.12.1 raised in the same calls.

Recorded from petastorm 0.12.1 (black box, public API, torch 2.13), by running the same calls under both:

- ``BatchedDataLoader`` / ``InMemBatchedDataLoader`` over ``make_reader`` with a string field: ``ValueError:
  too many dimensions 'str'`` (torch's); over ``make_batch_reader``: ``TypeError: Pytorch does not support arrays
  of string or object classes``. Ours: one error, both types, naming the field.
- ``BatchedDataLoader(transform_fn=lambda x: None)``: ``RuntimeError: Could not infer dtype of NoneType``;
  ``transform_fn=lambda x: 5``: ``TypeError: len() of a 0-d tensor``.
- ``BatchedRandomShufflingBuffer.add_many`` after ``finish()``: ``RuntimeError: Can not call add_many after
  done_adding() was called.``; ``BatchedNoopShufflingBuffer`` ignores such an add.
- ``NoopShufflingBuffer().retrieve()`` when empty: ``IndexError: pop from an empty deque``.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from petastorm import make_batch_reader, make_reader
from petastorm.codecs import ScalarCodec
from petastorm.etl.writer import write_dataset
from petastorm.pytorch import BatchedDataLoader, InMemBatchedDataLoader
from petastorm.reader_impl.pytorch_shuffling_buffer import (
    BatchedNoopShufflingBuffer,
    BatchedRandomShufflingBuffer,
)
from petastorm.reader_impl.shuffling_buffer import NoopShufflingBuffer
from petastorm.spark_types import spark_type
from petastorm.unischema import Unischema, UnischemaField

pytestmark = pytest.mark.timeout(120)

_KW = dict(reader_pool_type="dummy", shuffle_row_groups=False)
LOADERS = [BatchedDataLoader, InMemBatchedDataLoader]

Strings = Unischema("Strings", [
    UnischemaField("id", np.int64, (), ScalarCodec(spark_type("LongType")), False),
    UnischemaField("s", np.str_, (), ScalarCodec(spark_type("StringType")), False),
    UnischemaField("ns", np.str_, (), ScalarCodec(spark_type("StringType")), True),
])


@pytest.fixture(scope="module")
def strings_url(tmp_path_factory) -> str:
    """Petastorm dataset, 6 rows: ``id`` int64, ``s`` str, ``ns`` str or None (row 1)."""
    url = f"file://{tmp_path_factory.mktemp('strings')}/ds"
    write_dataset(url, Strings, [{"id": i, "s": f"row_{i}", "ns": None if i == 1 else f"n{i}"} for i in range(6)],
                  workers_count=1, progress=False, num_files=1)
    return url


@pytest.fixture(scope="module")
def plain_url(tmp_path_factory) -> str:
    """Plain Parquet, 6 rows: ``id`` int64 and ``s`` string."""
    path = tmp_path_factory.mktemp("plain_strings")
    pq.write_table(pa.table({"id": np.arange(6, dtype=np.int64), "s": [f"row_{i}" for i in range(6)]}),
                   str(path / "part0.parquet"))
    return f"file://{path}"


@pytest.mark.parametrize("loader_class", LOADERS)
@pytest.mark.parametrize("field", ["s", "ns"])
def test_a_string_field_of_make_reader_is_the_originals_value_error_naming_the_field(strings_url, loader_class,
                                                                                     field):
    """``ns`` holds a None too: still refused as strings (0.12.1 failed on its first string), not as nullable."""
    with make_reader(strings_url, schema_fields=["id", field], **_KW) as reader:
        with pytest.raises(ValueError, match=f"string or object classes. Found in field {field}") as caught:
            next(iter(loader_class(reader, batch_size=2)))
    assert isinstance(caught.value, TypeError)


@pytest.mark.parametrize("loader_class", LOADERS)
def test_a_string_column_of_make_batch_reader_is_the_originals_type_error_naming_the_field(plain_url, loader_class):
    with make_batch_reader(plain_url, **_KW) as reader:
        with pytest.raises(TypeError, match="Pytorch does not support arrays of string or object classes. "
                                            "Found in field s"):
            next(iter(loader_class(reader, batch_size=2)))


def test_a_transform_fn_returning_none_is_the_originals_runtime_error_naming_the_field(plain_url):
    with make_batch_reader(plain_url, schema_fields=["id"], **_KW) as reader:
        with pytest.raises(RuntimeError, match="transform_fn returned a NoneType for field 'id'") as caught:
            next(iter(BatchedDataLoader(reader, batch_size=2, transform_fn=lambda column: None)))
    assert isinstance(caught.value, TypeError)


@pytest.mark.parametrize("loader_class", LOADERS)
def test_a_transform_fn_returning_a_scalar_is_a_type_error_naming_the_field(plain_url, loader_class):
    with make_batch_reader(plain_url, schema_fields=["id"], **_KW) as reader:
        with pytest.raises(TypeError, match="transform_fn returned a int for field 'id', not a column"):
            next(iter(loader_class(reader, batch_size=2, transform_fn=lambda column: 5)))


def test_the_batched_random_buffer_refuses_rows_after_finish_as_the_original():
    buffer = BatchedRandomShufflingBuffer(6, 2, batch_size=3, extra_capacity=4)
    buffer.add_many([torch.arange(4), torch.arange(4) * 10])
    buffer.finish()
    with pytest.raises(RuntimeError, match=r"^Can not call add_many after done_adding\(\) was called"):
        buffer.add_many([torch.arange(2), torch.arange(2)])
    rows = []
    while buffer.can_retrieve():
        ids, tens = buffer.retrieve()
        rows.extend(zip(ids.tolist(), tens.tolist()))
    assert sorted(rows) == [(i, 10 * i) for i in range(4)]  # the refused rows were not stored


def test_the_batched_noop_buffer_ignores_rows_after_finish_as_the_original():
    buffer = BatchedNoopShufflingBuffer(batch_size=3)
    buffer.add_many([torch.arange(4)])
    buffer.finish()
    buffer.add_many([torch.arange(4, 6)])
    assert buffer.size == 4
    assert [buffer.retrieve()[0].tolist() for _ in range(2)] == [[0, 1, 2], [3]]


def test_the_noop_buffer_retrieve_when_empty_is_the_originals_index_error():
    buffer = NoopShufflingBuffer()
    with pytest.raises(IndexError):
        buffer.retrieve()
