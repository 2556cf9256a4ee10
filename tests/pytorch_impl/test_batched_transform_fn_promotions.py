"""``transform_fn`` of ``BatchedDataLoader`` / ``InMemBatchedDataLoader`` gets columns with the original's type
promotions already applied.

Recorded from petastorm 0.12.1 (black box, public API):

- ``BatchedDataLoader(make_reader(url), batch_size=4, transform_fn=times2)`` over the dataset written here
  (``u16a`` uint16 (3,) = 60000 + id, ``u32a`` uint32 (2,) = 4e9 + id, ``ba`` bool (2,)): the values reach
  ``transform_fn`` promoted (``uint16 -> int32``, ``uint32 -> int64``, ``bool -> uint8``), so ``x * 2`` gives
  ``u16a`` int32 ``[120000, ...]``, ``u32a`` int64 ``[8000000000, ...]``, ``ba`` uint8 ``[[2, 2], [0, 2]]``.
- ``BatchedDataLoader(make_batch_reader(plain parquet))``: a bool column reaches ``transform_fn`` as ``uint8``
  (``x * 2`` -> ``uint8 [2, 0]``).

Ours called ``transform_fn`` on the raw columns: ``x * 2`` overflowed in ``uint16`` / ``uint32`` before the
promotion (``[54464, ...]`` and ``[3705032704, ...]``: values silently changed) and a bool column gave
``int64``. Fixed in ``pytorch_impl/batched.py`` (``_per_column``): every column is promoted first.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from petastorm import make_batch_reader, make_reader
from petastorm.codecs import NdarrayCodec, ScalarCodec
from petastorm.etl.writer import write_dataset
from petastorm.pytorch import BatchedDataLoader, InMemBatchedDataLoader
from petastorm.spark_types import spark_type
from petastorm.unischema import Unischema, UnischemaField

pytestmark = pytest.mark.timeout(120)

_KW = dict(workers_count=1, reader_pool_type="dummy", shuffle_row_groups=False, num_epochs=1)

Promo = Unischema("Promo", [
    UnischemaField("id", np.int64, (), ScalarCodec(spark_type("LongType")), False),
    UnischemaField("u16a", np.uint16, (3,), NdarrayCodec(), False),
    UnischemaField("u32a", np.uint32, (2,), NdarrayCodec(), False),
    UnischemaField("ba", np.bool_, (2,), NdarrayCodec(), False),
])


@pytest.fixture(scope="module")
def promo_url(tmp_path_factory) -> str:
    url = f"file://{tmp_path_factory.mktemp('promo')}/ds"
    rows = [{"id": np.int64(k), "u16a": np.full(3, 60000 + k, np.uint16), "u32a": np.full(2, 4_000_000_000 + k, np.uint32),
             "ba": np.array([k % 2 == 0, True])} for k in range(12)]
    write_dataset(url, Promo, rows, workers_count=1, progress=False, num_files=1)
    return url


@pytest.fixture(scope="module")
def plain_url(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("promo_plain")
    n = 12
    pq.write_table(pa.table({"id": np.arange(n, dtype=np.int64), "b": np.arange(n) % 2 == 0,
                             "u16": np.arange(n, dtype=np.uint16) + 60000}), str(path / "part0.parquet"),
                   row_group_size=6)
    return f"file://{path}"


def _times2(seen):
    def fn(col):
        seen.add(str(col.dtype))
        return col * 2
    return fn


def _first_batch(kind, reader, transform_fn):
    loader = (BatchedDataLoader(reader, batch_size=4, transform_fn=transform_fn) if kind == "BatchedDataLoader"
              else InMemBatchedDataLoader(reader, batch_size=4, transform_fn=transform_fn))
    with loader:
        return next(iter(loader))


@pytest.mark.parametrize("kind", ["BatchedDataLoader", "InMemBatchedDataLoader"])
def test_transform_fn_gets_promoted_columns_of_make_reader(promo_url, kind):
    seen = set()
    batch = _first_batch(kind, make_reader(promo_url, **_KW), _times2(seen))
    # recorded from 0.12.1 (BatchedDataLoader; its InMemBatchedDataLoader failed on the lists it passed)
    assert seen == {"int64", "int32", "uint8"}
    assert batch["u16a"].dtype == torch.int32 and batch["u16a"][:2].tolist() == [[120000] * 3, [120002] * 3]
    assert batch["u32a"].dtype == torch.int64 and batch["u32a"][:2].tolist() == [[8_000_000_000] * 2,
                                                                                 [8_000_000_002] * 2]
    assert batch["ba"].dtype == torch.uint8 and batch["ba"][:2].tolist() == [[2, 2], [0, 2]]


@pytest.mark.parametrize("kind", ["BatchedDataLoader", "InMemBatchedDataLoader"])
def test_transform_fn_gets_promoted_columns_of_make_batch_reader(plain_url, kind):
    seen = set()
    batch = _first_batch(kind, make_batch_reader(plain_url, **_KW), _times2(seen))
    # recorded from 0.12.1: the bool column reaches transform_fn as uint8, x * 2 stays uint8 (its batch reader left
    # the uint16 column out; ours keeps it, promoted as the original promotes uint16 arrays)
    assert "bool" not in seen and "uint16" not in seen
    assert batch["b"].dtype == torch.uint8 and batch["b"].tolist() == [2, 0, 2, 0]
    assert batch["u16"].dtype == torch.int32 and batch["u16"].tolist() == [120000, 120002, 120004, 120006]


def test_without_transform_fn_the_promotions_are_unchanged(promo_url):
    batch = _first_batch("BatchedDataLoader", make_reader(promo_url, **_KW), None)
    assert batch["u16a"].dtype == torch.int32 and batch["u16a"][0].tolist() == [60000] * 3
    assert batch["ba"].dtype == torch.uint8
