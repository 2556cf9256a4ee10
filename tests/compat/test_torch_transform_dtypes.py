"""A TransformSpec that changes a column's dtype without declaring it, under the torch loaders, against 0.12.1.

Recorded from petastorm 0.12.1 (black box, public API): over ``make_batch_reader``, a ``TransformSpec(func)``
whose ``func`` turns the int32 column ``v`` into ``v.astype(np.float64) / 3`` (no ``edit_fields``) yields
``v`` as float64 ``[0.0, 333.33.., 666.66..]`` in the reader's batches and in ``DataLoader``'s batches. Ours
cast the function's floats back to the field's declared int32: ``[0, 333, 666]``, values silently truncated
(fixed: an undeclared change keeps the function's values; a declared one is cast where the values fit).
``make_reader`` keeps the function's value (float64 333.33..) in both.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from petastorm import TransformSpec, make_batch_reader, make_reader
from petastorm.codecs import ScalarCodec
from petastorm.etl.writer import write_dataset
from petastorm.pytorch import DataLoader
from petastorm.spark_types import spark_type
from petastorm.unischema import Unischema, UnischemaField

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def url(tmp_path_factory) -> str:
    schema = Unischema("Ints", [
        UnischemaField("id", np.int64, (), ScalarCodec(spark_type("LongType")), False),
        UnischemaField("v", np.int32, (), ScalarCodec(spark_type("IntegerType")), False),
    ])
    url = f"file://{tmp_path_factory.mktemp('undeclared_dtype')}/ds"
    write_dataset(url, schema, [{"id": np.int64(k), "v": np.int32(k * 1000)} for k in range(7)], workers_count=1,
                  progress=False, num_files=1)
    return url


def _thirds(df):
    df["v"] = df["v"].astype(np.float64) / 3
    return df


def _row_thirds(row):
    row["v"] = np.float64(row["v"]) / 3
    return row


@pytest.mark.parametrize("make, thirds", [(make_batch_reader, _thirds), (make_reader, _row_thirds)],
                         ids=["make_batch_reader", "make_reader"])
def test_dataloader_keeps_the_values_of_an_undeclared_transform_spec_dtype_change(url, make, thirds):
    reader = make(url, reader_pool_type="dummy", num_epochs=1, transform_spec=TransformSpec(thirds))
    with DataLoader(reader, batch_size=3) as loader:
        batch = next(iter(loader))
    # recorded from 0.12.1: float64 [0.0, 333.333..., 666.666...]
    assert batch["v"].dtype == torch.float64
    assert torch.allclose(batch["v"], torch.tensor([0.0, 1000 / 3, 2000 / 3], dtype=torch.float64))


# recorded from 0.12.1 (black box, make_batch_reader's own batches): a dtype the function chose is kept
_UNDECLARED = [
    ("int32_to_float", lambda df: df.assign(v=df.v.astype(np.float64) / 3), "v", np.float64, [0.0, 1000 / 3]),
    ("int32_to_int64", lambda df: df.assign(v=df.v.astype(np.int64) * 2), "v", np.int64, [0, 2000]),
]


@pytest.mark.parametrize("name,func,field,dtype,first", _UNDECLARED, ids=[c[0] for c in _UNDECLARED])
def test_make_batch_reader_keeps_an_undeclared_dtype_change(url, name, func, field, dtype, first):
    with make_batch_reader(url, reader_pool_type="dummy", num_epochs=1, transform_spec=TransformSpec(func)) as r:
        batch = next(iter(r))
    col = getattr(batch, field)
    assert col.dtype == dtype
    np.testing.assert_allclose(col[:2], first)


def test_a_declared_dtype_is_applied_where_the_values_fit(url):
    # 0.12.1 kept float64 here too; ours gives the declared float32 (the schema and the batches agree)
    spec = TransformSpec(lambda df: df.assign(v=df.v.astype(np.float64) / 3), edit_fields=[("v", np.float32, (), False)])
    with make_batch_reader(url, reader_pool_type="dummy", num_epochs=1, transform_spec=spec) as r:
        batch = next(iter(r))
    assert batch.v.dtype == np.float32
    np.testing.assert_allclose(batch.v[:2], [0.0, 1000 / 3], rtol=1e-6)


def test_a_declared_integer_dtype_that_would_truncate_keeps_the_values_and_warns(url):
    # recorded from 0.12.1: edit_fields declares int64, the function returns float64 thirds: float64 kept
    spec = TransformSpec(lambda df: df.assign(v=df.v.astype(np.float64) / 3), edit_fields=[("v", np.int64, (), False)])
    with pytest.warns(UserWarning, match=r"column 'v'.*do not fit the int64 declared in edit_fields.*333\.3"):
        with make_batch_reader(url, reader_pool_type="dummy", num_epochs=1, transform_spec=spec) as r:
            batch = next(iter(r))
    assert batch.v.dtype == np.float64
    np.testing.assert_allclose(batch.v[:2], [0.0, 1000 / 3])
