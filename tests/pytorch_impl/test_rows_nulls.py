"""``DataLoader`` with a user ``collate_fn`` over ``make_batch_reader``: a nullable array field whose reader batch
holds only nulls.

Recorded from petastorm 0.12.1 (black box, public API) on the dataset written here (``arr`` float32 (2,),
nullable, None in the 4 rows of the first file, arrays in the 8 others; one row group per file):
``DataLoader(make_batch_reader(url), batch_size=4, collate_fn=...)`` raises ``TypeError: Pytorch does not support
arrays of string or object classes. Found in field arr.``; over ``make_reader``: ``TypeError: Pytorch does not
support nullable fields. Found None in arr``.

Ours gave the ``collate_fn`` the 4 null rows as ``float64`` NaN *scalars* (the reader batch of nulls only was
taken for a number column with nulls) and the other rows as arrays: no error, values of the wrong shape. Fixed
in ``pytorch_impl/rows.py``: the row path converts a batch's nulls as the column path does (a column of an
array field holding only nulls is kept), so the nullable ``TypeError`` names the field, as over ``make_reader``.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from petastorm import make_batch_reader, make_reader
from petastorm.codecs import NdarrayCodec, ScalarCodec
from petastorm.etl.writer import write_dataset
from petastorm.pytorch import DataLoader
from petastorm.spark_types import spark_type
from petastorm.unischema import Unischema, UnischemaField

pytestmark = pytest.mark.timeout(120)

_KW = dict(workers_count=1, reader_pool_type="dummy", shuffle_row_groups=False, num_epochs=1)

NullArr = Unischema("NullArr", [
    UnischemaField("id", np.int64, (), ScalarCodec(spark_type("LongType")), False),
    UnischemaField("arr", np.float32, (2,), NdarrayCodec(), True),
    UnischemaField("n", np.int32, (), ScalarCodec(spark_type("IntegerType")), True),
])


@pytest.fixture(scope="module")
def url(tmp_path_factory) -> str:
    url = f"file://{tmp_path_factory.mktemp('null_arr')}/ds"
    rows = [{"id": np.int64(k), "arr": None if k < 4 else np.full(2, k, np.float32),
             "n": None if k < 4 else np.int32(k)} for k in range(12)]
    write_dataset(url, NullArr, rows, workers_count=1, progress=False, rows_per_file=4)
    return url


@pytest.mark.parametrize("make", [make_reader, make_batch_reader], ids=["make_reader", "make_batch_reader"])
@pytest.mark.parametrize("capacity", [0, 6])
def test_a_reader_batch_of_nulls_in_an_array_field_is_the_nullable_type_error(url, make, capacity):
    reader = make(url, schema_fields=["id", "arr"], **_KW)
    with DataLoader(reader, batch_size=4, collate_fn=lambda rows: rows, shuffling_queue_capacity=capacity) as loader, \
            pytest.raises(TypeError, match="Found None in arr"):
        list(loader)


def test_a_reader_batch_of_nulls_in_a_number_field_is_still_nan(url):
    # a number column with nulls: floats with NaN, as the original's batch reader gave them (also where the whole
    # reader batch is null), the same values as the default collate's
    reader = make_batch_reader(url, schema_fields=["id", "n"], **_KW)
    with DataLoader(reader, batch_size=12, collate_fn=lambda rows: rows) as loader:
        (rows,) = list(loader)
    values = {int(r["id"]): r["n"] for r in rows}
    assert all(math.isnan(values[k]) for k in range(4))
    assert [values[k] for k in range(4, 12)] == list(range(4, 12))
