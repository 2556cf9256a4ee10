"""A TransformSpec that changes a column's dtype without declaring it, under the torch loaders, against 0.12.1
(helper TORCH-PROBE).

Recorded from petastorm 0.12.1 (black box, public API): over ``make_batch_reader``, a ``TransformSpec(func)``
whose ``func`` turns the int32 column ``v`` into ``v.astype(np.float64) / 3`` (no ``edit_fields``) yields
``v`` as float64 ``[0.0, 333.33.., 666.66..]`` in the reader's batches and in ``DataLoader``'s batches. Ours
cast the function's floats back to the field's declared int32: ``[0, 333, 666]``, values silently truncated.
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
    url = f"file://{tmp_path_factory.mktemp('probe_tspec')}/ds"
    write_dataset(url, schema, [{"id": np.int64(k), "v": np.int32(k * 1000)} for k in range(7)], workers_count=1,
                  progress=False, num_files=1)
    return url


def _thirds(df):
    df["v"] = df["v"].astype(np.float64) / 3
    return df


@pytest.mark.xfail(strict=True, reason="make_batch_reader casts an undeclared TransformSpec result back to the "
                                       "field's dtype (float64 333.33 -> int32 333): fix in petastorm/transform.py "
                                       "_scalar_column, see the TORCH-PROBE report")
def test_dataloader_keeps_the_values_of_an_undeclared_transform_spec_dtype_change(url):
    reader = make_batch_reader(url, reader_pool_type="dummy", num_epochs=1, transform_spec=TransformSpec(_thirds))
    with DataLoader(reader, batch_size=3) as loader:
        batch = next(iter(loader))
    # recorded from 0.12.1: float64 [0.0, 333.333..., 666.666...]
    assert batch["v"].dtype == torch.float64
    assert torch.allclose(batch["v"], torch.tensor([0.0, 1000 / 3, 2000 / 3], dtype=torch.float64))


def test_make_reader_keeps_the_value_of_an_undeclared_transform_spec_dtype_change(url):
    def thirds(row):
        row["v"] = np.float64(row["v"]) / 3
        return row

    reader = make_reader(url, reader_pool_type="dummy", num_epochs=1, transform_spec=TransformSpec(thirds))
    with DataLoader(reader, batch_size=3) as loader:
        batch = next(iter(loader))
    # recorded from 0.12.1: float64 [0.0, 333.333..., 666.666...]
    assert batch["v"].dtype == torch.float64
    assert torch.allclose(batch["v"], torch.tensor([0.0, 1000 / 3, 2000 / 3], dtype=torch.float64))
