"""make_jax_iterator on a nullable integer column of make_batch_reader (found while fixing the same defect in the
torch loaders; the fix is in petastorm/jax.py).

The torch loaders give such a column as floats with NaN in every batch (recorded from 0.12.1: float64 for every
batch cut from a reader batch holding a null). make_jax_iterator converts each of its batches on its own: the
batches holding the null are floats with NaN, and a batch of the same reader batch without a null is an object
column of ints, refused with "field 'v' holds Python objects (int32)", so the pass fails at that batch.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from petastorm import make_batch_reader
from petastorm.jax import make_jax_iterator

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def url(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("jax_nulls")
    pq.write_table(pa.table({"id": pa.array(np.arange(7, dtype=np.int64)),
                             "v": pa.array([None if k == 1 else k for k in range(7)], pa.int32())}),
                   str(path / "part0.parquet"))
    return f"file://{path}"


def test_every_batch_of_a_nullable_integer_column_is_floats(url):
    reader = make_batch_reader(url, reader_pool_type="dummy", num_epochs=1)
    try:
        batches = list(make_jax_iterator(reader, batch_size=3))
    finally:
        reader.stop()
        reader.join()
    assert [len(b["v"]) for b in batches] == [3, 3, 1]
    assert len({str(b["v"].dtype) for b in batches}) == 1 and np.isnan(np.asarray(batches[0]["v"])[1])


_STATE_INSIDE = """
import sys
from petastorm import make_batch_reader
from petastorm.jax import make_jax_iterator
holder = {}
def transform(columns):
    holder["state"] = holder["it"].state_dict()
    return columns
reader = make_batch_reader(sys.argv[1], reader_pool_type="dummy", num_epochs=1)
holder["it"] = make_jax_iterator(reader, batch_size=3, transform_fn=transform)
try:
    list(holder["it"])
except Exception as e:
    print(type(e).__name__)
finally:
    reader.stop()
    reader.join()
"""


@pytest.mark.slow
def test_jax_state_dict_from_inside_transform_fn_is_an_error_not_a_hang(url):
    import subprocess
    import sys

    try:  # in a child process: the hang must not leave a blocked thread in this one
        out = subprocess.run([sys.executable, "-c", _STATE_INSIDE, url], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("state_dict() inside transform_fn hung")
    assert "PetastormStateError" in out.stdout, out.stderr[-2000:]
