"""Nulls in numeric columns of ``make_batch_reader`` through every torch loader, as 0.12.1 gave them (its batch
reader read through pandas: integers with nulls became float64 with NaN, floats kept their dtype with NaN).
Our batch reader gives such columns as object arrays holding None (docs/migration.md); the loaders turn them
back into what the original's loaders gave (petastorm.adapters.nulls.nullable_numbers_as_nan)."""
import math
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from petastorm import make_batch_reader, make_reader
from petastorm.pytorch import BatchedDataLoader, DataLoader, InMemBatchedDataLoader


@pytest.fixture(scope="module")
def nulls(tmp_path_factory):
    """6 rows in row groups of 3: id, ni (int32 with nulls), nf (float32 with nulls), ns (str with nulls)."""
    path = str(tmp_path_factory.mktemp("nulls"))
    pq.write_table(pa.table({"id": pa.array(range(6), pa.int64()),
                             "ni": pa.array([1, None, 3, 4, None, 6], pa.int32()),
                             "nf": pa.array([1.5, None, 2.5, None, 1.0, 2.0], pa.float32()),
                             "ns": pa.array(["a", None, "c", "d", "e", None])}),
                   os.path.join(path, "p.parquet"), row_group_size=3)
    return "file://" + path


def _values(t):
    return [None if math.isnan(v) else v for v in t.tolist()]


LOADERS = {
    "DataLoader": lambda r: DataLoader(r, batch_size=3),
    "BatchedDataLoader": lambda r: BatchedDataLoader(r, batch_size=3),
    "InMemBatchedDataLoader": lambda r: InMemBatchedDataLoader(r, batch_size=3),
}


@pytest.mark.parametrize("kind", list(LOADERS))
@pytest.mark.parametrize("field, dtype, values", [
    ("ni", torch.float64, [1.0, None, 3.0]),   # recorded from 0.12.1: float64 [1.0, nan, 3.0] (all three loaders)
    ("nf", torch.float32, [1.5, None, 2.5]),   # recorded from 0.12.1: float32 [1.5, nan, 2.5] (all three loaders)
])
def test_numeric_columns_with_nulls_are_nan_tensors_as_in_the_original(nulls, kind, field, dtype, values):
    # before: DataLoader raised "Pytorch does not support nullable fields" for both, and the other loaders gave
    # float64 for the float32 column
    with make_batch_reader(nulls, schema_fields=["id", field], reader_pool_type="dummy",
                           shuffle_row_groups=False) as r:
        batch = next(iter(LOADERS[kind](r)))
    assert batch[field].dtype == dtype and _values(batch[field]) == values


@pytest.mark.parametrize("field, kind, values", [
    ("ni", np.float64, [1.0, None, 3.0]),      # recorded from 0.12.1: numpy.float64 values, nan for the nulls
    ("nf", np.float32, [1.5, None, 2.5]),      # recorded from 0.12.1: numpy.float32 values, nan for the nulls
])
def test_a_collate_fn_gets_nan_for_the_nulls_as_in_the_original(nulls, field, kind, values):
    with make_batch_reader(nulls, schema_fields=["id", field], reader_pool_type="dummy",
                           shuffle_row_groups=False) as r:
        rows = next(iter(DataLoader(r, batch_size=3, collate_fn=list)))
    assert [type(row[field]) for row in rows] == [kind] * 3
    assert [None if np.isnan(row[field]) else float(row[field]) for row in rows] == values


@pytest.mark.filterwarnings("ignore:Currently make_reader supports reading only Petastorm datasets")
def test_strings_with_nulls_and_make_reader_nulls_stay_errors_naming_the_field(nulls):
    with make_batch_reader(nulls, schema_fields=["id", "ns"], reader_pool_type="dummy") as r:
        with pytest.raises(TypeError, match="Found None in ns"):
            next(iter(DataLoader(r, batch_size=3)))
    with make_reader(nulls, schema_fields=["id", "ni"], reader_pool_type="dummy", shuffle_row_groups=False) as r:
        # recorded from 0.12.1 over make_reader rows: TypeError('Pytorch does not support nullable fields...')
        with pytest.raises(TypeError, match="Pytorch does not support nullable fields. Found None in ni"):
            next(iter(DataLoader(r, batch_size=3)))
