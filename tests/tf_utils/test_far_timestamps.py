"""Timestamps beyond int64 nanoseconds (the sentinel 9999-12-31): tf_utils gives a batch reader's timestamps as
int64 nanoseconds, and numpy's cast wrapped them silently (1816-03-29); they are refused naming the field, as in
JAX (tests/jax_impl/test_columns_jax_cannot_hold.py)."""
import datetime
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from petastorm import make_batch_reader


@pytest.fixture(scope="module")
def sentinel_dates_dataset(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("sentinel_dates"))
    stamps = [datetime.datetime(2020, 1, 1), datetime.datetime(9999, 12, 31)]
    pq.write_table(pa.table({"id": pa.array([0, 1], pa.int32()), "when": pa.array(stamps, pa.timestamp("us"))}),
                   os.path.join(path, "part.parquet"))
    return "file://" + path


@pytest.fixture(scope="module")
def sentinel_days_dataset(tmp_path_factory):
    """A date32 column: the batch reader gives it as datetime.date objects."""
    path = str(tmp_path_factory.mktemp("sentinel_days"))
    days = [datetime.date(2020, 1, 1), datetime.date(9999, 12, 31)]
    pq.write_table(pa.table({"id": pa.array([0, 1], pa.int32()), "day": pa.array(days, pa.date32())}),
                   os.path.join(path, "part.parquet"))
    return "file://" + path


@pytest.mark.timeout(120)
def test_tf_utils_refuses_batch_dates_that_int64_nanoseconds_cannot_hold(sentinel_days_dataset):
    import tensorflow as tf

    from petastorm.tf_utils import make_petastorm_dataset

    with make_batch_reader(sentinel_days_dataset, schema_fields=["id", "day"], workers_count=1) as reader:
        with pytest.raises(tf.errors.OpError, match=r"PetastormSchemaError: field 'day'.*9999-12-31"):
            list(make_petastorm_dataset(reader))  # arrived as -4852202631933722624, the year 1816


@pytest.mark.timeout(120)
def test_tf_utils_gives_batch_dates_in_range_as_nanoseconds(tmp_path):
    import numpy as np
    import tensorflow as tf

    from petastorm.tf_utils import make_petastorm_dataset

    days = [datetime.date(1700, 1, 1), datetime.date(2262, 4, 11)]
    pq.write_table(pa.table({"day": pa.array(days, pa.date32())}), str(tmp_path / "part.parquet"))
    with make_batch_reader("file://" + str(tmp_path), workers_count=1) as reader:
        batch = next(iter(make_petastorm_dataset(reader)))
    assert isinstance(batch.day, tf.Tensor)
    assert batch.day.numpy().tolist() == np.array(days, dtype="datetime64[ns]").astype(np.int64).tolist()


@pytest.mark.timeout(120)
def test_tf_utils_refuses_batch_timestamps_that_int64_nanoseconds_cannot_hold(sentinel_dates_dataset):
    import tensorflow as tf

    from petastorm.tf_utils import make_petastorm_dataset

    with make_batch_reader(sentinel_dates_dataset, schema_fields=["id", "when"], workers_count=1) as reader:
        # a PetastormSchemaError in the conversion reaches the loop as TensorFlow's OpError (as the None errors do)
        with pytest.raises(tf.errors.OpError, match=r"PetastormSchemaError: field 'when'.*9999-12-31"):
            list(make_petastorm_dataset(reader))  # arrived as -4852202631933722624, the year 1816
