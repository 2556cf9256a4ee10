"""make_reader and the torch loaders on nulls in nullable float fields, against 0.12.1.

Recorded from petastorm 0.12.1 (black box, public API) on the dataset written here by our ``write_dataset``:
``make_reader`` rows hold ``nan`` (of the field's float type) where a nullable float scalar field is null -
with a ``ScalarCodec`` (``DoubleType``, ``FloatType``) and without a codec - and ``DataLoader`` batches hold
float tensors with NaN: ``{'d': float64 [0.0, nan, 1.0, 1.5, 2.0], 'f': float32 [0.0, nan, 2.0, 3.0, 4.0],
'h': float16 [...], 'n': float32 [0.0, nan, nan, 3.0, 4.0]}``. Integer, string, bool, Decimal and ndarray
fields hold ``None`` (and the loaders raise "Pytorch does not support nullable fields"), in both.
Ours gave ``None`` for the float nulls too (and its loaders raised); fixed in ``arrow_types.arrow_column_to_numpy``.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from petastorm import make_reader
from petastorm.codecs import ScalarCodec
from petastorm.etl.writer import write_dataset
from petastorm.pytorch import DataLoader
from petastorm.spark_types import spark_type
from petastorm.unischema import Unischema, UnischemaField

pytestmark = pytest.mark.timeout(120)

NullFloats = Unischema("NullFloats", [
    UnischemaField("id", np.int64, (), ScalarCodec(spark_type("LongType")), False),
    UnischemaField("d", np.float64, (), ScalarCodec(spark_type("DoubleType")), True),
    UnischemaField("f", np.float32, (), ScalarCodec(spark_type("FloatType")), True),
    UnischemaField("n", np.float32, (), None, True),
    UnischemaField("i", np.int32, (), ScalarCodec(spark_type("IntegerType")), True),
])


@pytest.fixture(scope="module")
def url(tmp_path_factory) -> str:
    url = f"file://{tmp_path_factory.mktemp('null_floats')}/ds"
    rows = [{"id": k, "d": None if k == 1 else k / 2, "f": None if k == 1 else np.float32(k),
             "n": None if k in (1, 2) else np.float32(k), "i": None if k == 1 else np.int32(k)} for k in range(5)]
    write_dataset(url, NullFloats, rows, workers_count=1, progress=False, num_files=1)
    return url



def test_make_reader_rows_hold_nan_for_nulls_in_float_fields(url):
    with make_reader(url, reader_pool_type="dummy", num_epochs=1) as reader:
        rows = {int(r.id): r for r in reader}
    # recorded from 0.12.1: d=nan, f=nan, n=nan in row 1; n=nan in row 2; i=None in row 1
    assert isinstance(rows[1].d, np.float64) and math.isnan(rows[1].d)
    assert isinstance(rows[1].f, np.float32) and math.isnan(rows[1].f)
    assert isinstance(rows[2].n, np.float32) and math.isnan(rows[2].n)
    assert rows[1].i is None


def test_dataloader_over_make_reader_gives_nan_for_nulls_in_float_fields(url):
    reader = make_reader(url, reader_pool_type="dummy", num_epochs=1, schema_fields=["id", "d", "f", "n"])
    with DataLoader(reader, batch_size=5) as loader:
        (batch,) = list(loader)
    # recorded from 0.12.1
    assert batch["d"].dtype == torch.float64 and batch["f"].dtype == torch.float32
    assert torch.equal(torch.isnan(batch["n"]), torch.tensor([False, True, True, False, False]))
    assert batch["f"][[0, 2, 3, 4]].tolist() == [0.0, 2.0, 3.0, 4.0] and torch.isnan(batch["f"][1])


def test_dataloader_over_make_reader_refuses_nulls_in_integer_fields(url):
    # recorded from 0.12.1: TypeError("Pytorch does not support nullable fields. Found None in i")
    reader = make_reader(url, reader_pool_type="dummy", num_epochs=1, schema_fields=["id", "i"])
    with DataLoader(reader, batch_size=5) as loader, \
            pytest.raises(TypeError, match="Pytorch does not support nullable fields. Found None in i"):
        list(loader)
