"""make_jax_iterator over the datasets the original's releases wrote (/work/shared/testdata).

JAX has no 0.12.1 counterpart: the reference is the reader's own rows, in the dtype ``docs/jax.md`` promises
(64-bit types narrowed while JAX's 64-bit mode is off, numbers with nulls as floats with NaN). Defects found
and fixed here:

- a nullable *array* field (``matrix_nullable``, declared ``(32, 16, 3)``) whose batch held only ``None``
  arrived as a ``(rows,)`` float array of NaN: its shape silently changed (a batch mixing arrays and ``None``
  was already refused naming the field);
- a nullable integer field (``integer_nullable``, ``maybe_int``) arrived as ``float32`` in the batches holding
  a null and as ``int32`` in the others (over ``make_batch_reader``: those cut from a reader batch without a
  null), so its dtype changed from batch to batch of one pass (a ``jit`` step recompiled, and indexing with it
  failed on the float batches only).
"""
import os

import numpy as np
import pytest

from petastorm import make_batch_reader, make_reader
from petastorm.errors import PetastormTypeError
from petastorm.jax import make_jax_iterator

_READERS = [make_batch_reader, make_reader]
_IDS = ["make_batch_reader", "make_reader"]
#: numeric fields of the legacy datasets and the type JAX gives them (0.4.x lack id_float and id_odd, only 0.7.6
#: has matrix_uint32)
_LEGACY_NUMERIC = {"id": np.int32, "id2": np.int32, "id_float": np.float32, "id_odd": np.bool_,
                   "python_primitive_uint8": np.uint8, "image_png": np.uint8, "matrix": np.float32,
                   "matrix_uint16": np.uint16, "matrix_uint32": np.uint32}
_LEGACY_VERSIONS = ["0.4.0", "0.4.3", "0.5.1", "0.6.0", "0.7.0", "0.7.6"]
_CODECS_NUMERIC = {"id": np.int32, "id32": np.int32, "id16": np.int16, "f64": np.float32, "f32": np.float32,
                   "flag": np.bool_, "png": np.uint8, "jpeg": np.uint8, "gray": np.uint8, "matrix": np.float32,
                   "znd": np.float32}


def _url(testdata_dir: str, *parts: str) -> str:
    return "file://" + os.path.join(testdata_dir, *parts)


def _reader_column(make, url: str, field: str) -> np.ndarray:
    """The field's values as the reader gives them, in reader order (one array)."""
    with make(url, schema_fields=[field], shuffle_row_groups=False, workers_count=1) as reader:
        if make is make_reader:
            return np.stack([np.asarray(getattr(row, field)) for row in reader])
        return np.concatenate([getattr(batch, field) for batch in reader])


def _jax_column(make, url: str, field: str, batch_size: int = 7) -> list:
    with make(url, schema_fields=[field], shuffle_row_groups=False, workers_count=1) as reader, \
            make_jax_iterator(reader, batch_size=batch_size) as batches:
        return [np.asarray(batch[field]) for batch in batches]


def _assert_fields_arrive_as_read(make, url: str, fields: dict) -> None:
    """Each field's JAX batches: one dtype (``fields[field]``) in every batch, and the reader's values and shape."""
    for field, dtype in fields.items():
        expected = _reader_column(make, url, field)
        got = _jax_column(make, url, field)
        assert {b.dtype for b in got} == {np.dtype(dtype)}, field
        got = np.concatenate(got)
        assert got.shape == expected.shape, field
        np.testing.assert_array_equal(got, expected.astype(dtype), err_msg=field)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("make", _READERS, ids=_IDS)
@pytest.mark.parametrize("version", _LEGACY_VERSIONS)
def test_the_numeric_fields_of_legacy_datasets_arrive_with_the_readers_values(testdata_dir, make, version):
    url = _url(testdata_dir, "legacy", version)
    with make(url, workers_count=1) as reader:
        present = set(reader.schema.fields)
    assert {"id", "id2", "image_png", "matrix", "matrix_uint16"} <= present
    _assert_fields_arrive_as_read(make, url, {f: t for f, t in _LEGACY_NUMERIC.items() if f in present})


@pytest.mark.timeout(300)
@pytest.mark.parametrize("make", _READERS, ids=_IDS)
def test_the_numeric_fields_of_the_0_12_1_all_codecs_dataset_arrive_with_the_readers_values(testdata_dir, make):
    url = _url(testdata_dir, "original-0.12.1", "all_codecs_0.12.1")
    _assert_fields_arrive_as_read(make, url, _CODECS_NUMERIC)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("make", _READERS, ids=_IDS)
@pytest.mark.parametrize("field, what", [("decimal", "Decimal"), ("partition_key", "strings"),
                                         ("matrix_string", "bytes"), ("sensor_name", "strings"),
                                         ("string_array_nullable", "strings")])
def test_the_fields_of_a_legacy_dataset_jax_cannot_hold_are_named_up_front(testdata_dir, make, field, what):
    with make(_url(testdata_dir, "legacy", "0.7.6"), schema_fields=["id", field], workers_count=1) as reader:
        with pytest.raises(PetastormTypeError, match=f"field '{field}' holds {what}"):
            make_jax_iterator(reader, batch_size=4)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("make", _READERS, ids=_IDS)
def test_a_nullable_array_field_whose_batch_holds_only_nulls_is_refused_not_reshaped(testdata_dir, make):
    # matrix_nullable is declared uint16 (32, 16, 3) and is None in every row of the legacy datasets: it arrived
    # as a float32 array of shape (7,) full of NaN, a silent change of shape
    url = _url(testdata_dir, "legacy", "0.7.6")
    with make(url, schema_fields=["id", "matrix_nullable"], shuffle_row_groups=False, workers_count=1) as reader:
        batches = make_jax_iterator(reader, batch_size=7)
        with pytest.raises(PetastormTypeError, match="field 'matrix_nullable' holds None"):
            next(batches)
        batches.close()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("batch_size", [1, 7])
def test_a_nullable_integer_field_of_make_reader_keeps_one_float_dtype_in_every_batch(testdata_dir, batch_size):
    # integer_nullable is None in every odd row: with batch_size=1 the batches were int32, float32, int32...
    url = _url(testdata_dir, "legacy", "0.7.6")
    expected = [np.nan if v is None else float(v) for v in _reader_column(make_reader, url, "integer_nullable")]
    got = _jax_column(make_reader, url, "integer_nullable", batch_size=batch_size)
    assert {b.dtype for b in got} == {np.dtype(np.float32)}
    np.testing.assert_array_equal(np.concatenate(got), np.array(expected, np.float32))


@pytest.mark.timeout(120)
@pytest.mark.parametrize("make, batch_size", [(make_reader, 4), (make_reader, 1), (make_batch_reader, 1)])
def test_maybe_int_of_the_0_12_1_dataset_is_float_with_nan_in_every_batch(testdata_dir, make, batch_size):
    # maybe_int is None where id % 5 == 0: batches without such an id were int32, the others float32 (over
    # make_batch_reader: the batches cut from a reader batch without a null)
    url = _url(testdata_dir, "original-0.12.1", "all_codecs_0.12.1")
    with make(url, schema_fields=["id", "maybe_int"], shuffle_row_groups=False, workers_count=1) as reader, \
            make_jax_iterator(reader, batch_size=batch_size) as batches:
        got = [(np.asarray(b["id"]), np.asarray(b["maybe_int"])) for b in batches]
    assert {maybe.dtype for _, maybe in got} == {np.dtype(np.float32)}
    ids = np.concatenate([i for i, _ in got])
    maybe = np.concatenate([m for _, m in got])
    assert sorted(ids.tolist()) == list(range(60))
    np.testing.assert_array_equal(np.isnan(maybe), ids % 5 == 0)
    with make_reader(url, schema_fields=["id", "maybe_int"], shuffle_row_groups=False, workers_count=1) as reader:
        by_id = {int(row.id): row.maybe_int for row in reader}
    expected = [np.nan if by_id[i] is None else float(by_id[i]) for i in ids.tolist()]
    np.testing.assert_array_equal(maybe, np.array(expected, np.float32))


@pytest.mark.timeout(120)
def test_a_nullable_integer_field_a_transform_spec_fills_stays_integer(testdata_dir):
    # a TransformSpec function may fill the nulls without declaring the field anew: its values stay int32
    from petastorm.transform import TransformSpec

    def fill(row):
        row["integer_nullable"] = -1 if row["integer_nullable"] is None else row["integer_nullable"]
        return row

    url = _url(testdata_dir, "legacy", "0.7.6")
    with make_reader(url, schema_fields=["id", "integer_nullable"], shuffle_row_groups=False, workers_count=1,
                     transform_spec=TransformSpec(fill)) as reader, \
            make_jax_iterator(reader, batch_size=5) as batches:
        got = [(np.asarray(b["id"]), np.asarray(b["integer_nullable"])) for b in batches]
    assert {values.dtype for _, values in got} == {np.dtype(np.int32)}
    ids = np.concatenate([i for i, _ in got])
    np.testing.assert_array_equal(np.concatenate([v for _, v in got]), np.where(ids % 2 == 1, -1, ids))


@pytest.fixture(scope="module")
def nullable_hashes_dataset(tmp_path_factory):
    """20 rows: a nullable int64 ``h`` = 2**60 + i (None every 3rd row), as hashed ids are."""
    from _fixtures.datasets import write_synthetic_dataset

    from petastorm.codecs import ScalarCodec
    from petastorm.spark_types import spark_type
    from petastorm.unischema import Unischema, UnischemaField

    schema = Unischema("NullableHashes", [
        UnischemaField("id", np.int32, (), ScalarCodec(spark_type("IntegerType")), False),
        UnischemaField("h", np.int64, (), ScalarCodec(spark_type("LongType")), True),
    ])
    return write_synthetic_dataset(str(tmp_path_factory.mktemp("nullable_hashes") / "d"), rows=20, rows_per_group=10,
                                   schema=schema, row_fn=lambda i: {"id": i, "h": None if i % 3 == 1 else 2 ** 60 + i})


@pytest.mark.timeout(60)
@pytest.mark.parametrize("make", _READERS, ids=_IDS)
@pytest.mark.parametrize("x64, bound", [(False, "float32"), (True, "float64")])
def test_nullable_integers_a_float_would_round_are_refused_in_both_modes(nullable_hashes_dataset, make, x64, bound):
    # 2**60 + 2 arrived as 2**60 (float64 rounds it; that float64 is a float32 exactly, so the float32 check let
    # it pass with 64-bit mode off; with it on there was no check at all)
    import jax

    from petastorm.errors import PetastormSchemaError

    with jax.enable_x64(x64):
        with make(nullable_hashes_dataset, shuffle_row_groups=False, workers_count=1) as reader:
            batches = make_jax_iterator(reader, batch_size=5)
            with pytest.raises(PetastormSchemaError, match=f"field 'h' holds integers.*such as 1152921504606846978.*"
                                                           f"do not fit {bound} exactly"):
                next(batches)
            batches.close()
