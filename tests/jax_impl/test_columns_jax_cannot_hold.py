"""What make_jax_iterator gives for each column type of a plain Parquet store and of a transform_fn's output.

The numeric types JAX has arrive with their dtype and values (64-bit ones narrowed while JAX's 64-bit mode is off,
refused where values would wrap); what JAX cannot hold is a PetastormTypeError that names the field and says
what it holds, not a bare numpy or JAX error, and not values arriving with their mask or nulls dropped.
"""
import os

import jax.numpy as jnp
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from petastorm import make_batch_reader
from petastorm.errors import PetastormSchemaError, PetastormTypeError
from petastorm.jax import make_jax_iterator

_ROWS = 8


@pytest.fixture(scope="module")
def typed_dataset(tmp_path_factory):
    """A plain Parquet store of 8 rows in row groups of 4, one column per type (values derived from ``id``)."""
    path = str(tmp_path_factory.mktemp("typed"))
    ids = np.arange(_ROWS)
    table = pa.table({
        "id": pa.array(ids, pa.int32()),
        "flag": pa.array(ids % 2 == 0),
        "u8": pa.array(ids.astype(np.uint8)),
        "i8": pa.array((ids - 4).astype(np.int8)),
        "u16": pa.array((ids + 60_000).astype(np.uint16)),
        "u32": pa.array((ids + 4_000_000_000).astype(np.uint32)),
        "u64": pa.array(ids.astype(np.uint64) + 7),
        "u64_big": pa.array(ids.astype(np.uint64) + 2 ** 40),
        "half": pa.array(ids.astype(np.float16) / 4),
        "gap": pa.array([None if i == 1 else int(i) for i in ids], pa.uint8()),  # a null in the first row group
        "pairs_with_holes": pa.array([[int(i), None] for i in ids], pa.list_(pa.int32())),
        "nothing": pa.array([None] * _ROWS, pa.null()),
    })
    pq.write_table(table, os.path.join(path, "part.parquet"), row_group_size=4)
    return "file://" + path


def _batches(url, fields, **kwargs):
    with make_batch_reader(url, schema_fields=["id"] + fields, shuffle_row_groups=False, workers_count=1) as reader, \
            make_jax_iterator(reader, batch_size=4, **kwargs) as batches:
        return list(batches)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("field, dtype, values", [
    ("flag", jnp.bool_, lambda ids: ids % 2 == 0),
    ("u8", jnp.uint8, lambda ids: ids),
    ("i8", jnp.int8, lambda ids: ids - 4),
    ("u16", jnp.uint16, lambda ids: ids + 60_000),
    ("u32", jnp.uint32, lambda ids: ids + 4_000_000_000),
    ("u64", jnp.uint32, lambda ids: ids + 7),       # 64-bit mode off: narrowed, the values fit
    ("half", jnp.float16, lambda ids: ids / 4),
])
def test_small_and_unsigned_numeric_columns_keep_their_dtype_and_values(typed_dataset, field, dtype, values):
    got = _batches(typed_dataset, [field])
    assert [b[field].dtype for b in got] == [dtype, dtype]
    ids = np.concatenate([np.asarray(b["id"]) for b in got]).astype(np.int64)
    np.testing.assert_array_equal(np.concatenate([np.asarray(b[field]) for b in got]), values(ids).astype(dtype))


@pytest.mark.timeout(60)
def test_uint64_values_that_uint32_cannot_hold_raise_naming_the_field(typed_dataset):
    with pytest.raises(PetastormSchemaError, match=r"field 'u64_big' holds uint64 values .* outside uint32"):
        _batches(typed_dataset, ["u64_big"])


@pytest.mark.timeout(60)
def test_a_plain_parquet_integer_column_is_floats_in_the_batches_holding_a_null_only(typed_dataset):
    # as docs/jax.md says: only a Unischema's nullable integer fields are floats in every batch
    first, second = _batches(typed_dataset, ["gap"])
    assert first["gap"].dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(first["gap"]), [0, np.nan, 2, 3])
    assert second["gap"].dtype == jnp.uint8
    np.testing.assert_array_equal(np.asarray(second["gap"]), [4, 5, 6, 7])


@pytest.mark.timeout(60)
def test_a_list_column_with_missing_elements_is_named_as_such_not_as_a_variable_shape(typed_dataset):
    # was "holds arrays of different shapes (a variable-shape field)": every list has 2 elements, one of them None
    with pytest.raises(PetastormTypeError, match=r"field 'pairs_with_holes' holds lists with missing elements"):
        _batches(typed_dataset, ["pairs_with_holes"])


@pytest.mark.timeout(60)
def test_a_column_of_arrow_type_null_is_refused_up_front_saying_it_may_hold_only_nulls(typed_dataset):
    with make_batch_reader(typed_dataset, schema_fields=["id", "nothing"], workers_count=1) as reader:
        with pytest.raises(PetastormTypeError, match=r"field 'nothing' holds .*only nulls"):
            make_jax_iterator(reader, batch_size=4)


def _masked(batch):
    return {"x": np.ma.masked_array(batch["id"], mask=batch["id"] % 2 == 0)}


_LONG_DOUBLE_WIDER = np.dtype(np.longdouble) != np.dtype(np.float64)  # float128 on x86-64 Linux


@pytest.mark.timeout(60)
@pytest.mark.parametrize("transform_fn, message", [
    # was a bare TypeError "'NoneType' object is not iterable", naming no field
    (lambda batch: {"x": None, "id": batch["id"]}, r"field 'x' is None, not an array"),
    # was served as the data under the mask: the masked values arrived as numbers
    (_masked, r"field 'x' is a numpy masked array with 2 masked values"),
] + ([
    # was JAX's bare "Dtype float128 is not a valid JAX array type", naming no field
    (lambda batch: {"x": batch["id"].astype(np.longdouble)}, r"field 'x' holds float128 values, a type JAX does not"),
] if _LONG_DOUBLE_WIDER else []))
def test_transform_fn_outputs_jax_cannot_hold_are_errors_naming_the_field(typed_dataset, transform_fn, message):
    with pytest.raises(PetastormTypeError, match=message):
        _batches(typed_dataset, [], transform_fn=transform_fn)


@pytest.mark.timeout(60)
def test_a_masked_array_that_masks_nothing_arrives_with_its_values(typed_dataset):
    got = _batches(typed_dataset, [], transform_fn=lambda batch: {"x": np.ma.masked_array(batch["id"] * 2)})
    np.testing.assert_array_equal(np.concatenate([np.asarray(b["x"]) for b in got]), np.arange(_ROWS) * 2)


@pytest.fixture(scope="module")
def far_times_dataset(tmp_path_factory):
    """Timestamps (µs) and durations (s) that int64 nanoseconds cannot hold, next to ones it can."""
    import datetime

    path = str(tmp_path_factory.mktemp("far_times"))
    stamps = [datetime.datetime(2020, 1, 1), datetime.datetime(9999, 12, 31), datetime.datetime(1500, 1, 1),
              datetime.datetime(2021, 1, 1)]
    table = pa.table({"id": pa.array(range(4), pa.int32()),
                      "when": pa.array(stamps, pa.timestamp("us")),
                      "in_range": pa.array(stamps[:1] * 4, pa.timestamp("us")),
                      "lasted": pa.array([datetime.timedelta(days=200_000)] * 4, pa.duration("s"))})
    pq.write_table(table, os.path.join(path, "part.parquet"))
    return "file://" + path


@pytest.mark.timeout(60)
@pytest.mark.parametrize("x64", [False, True])
@pytest.mark.parametrize("field, message", [
    ("when", r"field 'when' holds datetime64\[us\] values that int64 nanoseconds cannot hold \(2 of them, "
             r"such as 9999-12-31"),
    ("lasted", r"field 'lasted' holds timedelta64\[s\] values that int64 nanoseconds cannot hold"),
])
def test_times_beyond_int64_nanoseconds_raise_naming_the_field_instead_of_wrapping(far_times_dataset, x64, field,
                                                                                    message):
    # was, with 64-bit mode on, 9999-12-31 arriving as 1816-03-29 and 1500-01-01 as 2084-07-20 (numpy's cast wraps)
    import jax

    with jax.enable_x64(x64), pytest.raises(PetastormSchemaError, match=message):
        _batches(far_times_dataset, [field])


@pytest.mark.timeout(60)
def test_timestamps_within_int64_nanoseconds_arrive_as_nanoseconds_with_64_bit_mode_on(far_times_dataset):
    import jax

    with jax.enable_x64(True):
        (batch,) = _batches(far_times_dataset, ["in_range"])
    assert batch["in_range"].dtype == jnp.int64
    assert np.asarray(batch["in_range"]).tolist() == [1577836800 * 10 ** 9] * 4  # 2020-01-01 in ns
