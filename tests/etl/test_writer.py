"""write_dataset: round trips read back with plain pyarrow and the codecs, file layout, publish semantics."""
from __future__ import annotations

import glob
import os
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from petastorm.codecs import (
    CompressedImageCodec,
    CompressedNdarrayCodec,
    NdarrayCodec,
    ScalarCodec,
    decode_native_column,
)
from petastorm.errors import (
    PetastormArgumentError,
    PetastormSchemaError,
    PetastormWorkerError,
    PetastormWriteError,
)
from petastorm.etl.dataset_metadata import (
    ROW_GROUPS_PER_FILE_KEY,
    get_schema_from_dataset_url,
    load_num_row_groups_per_file,
    read_dataset_metadata,
)
from petastorm.etl.writer import WriteResult, write_dataset
from petastorm.spark_types import spark_type
from petastorm.unischema import Unischema, UnischemaField

N_ROWS = 12

NATIVE_SCALARS = [np.bool_, np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64, np.uint64,
                  np.float16, np.float32, np.float64]


def _all_types_schema() -> Unischema:
    fields = [UnischemaField("id", np.int64, (), ScalarCodec(spark_type("LongType")), False)]
    fields += [UnischemaField(f"n_{np.dtype(t).name}", t, (), None, False) for t in NATIVE_SCALARS]
    fields += [
        UnischemaField("n_str", np.str_, (), None, False),
        UnischemaField("n_bytes", np.bytes_, (), None, False),
        UnischemaField("n_decimal", Decimal, (), None, False),
        UnischemaField("n_datetime", np.datetime64, (), None, False),
        UnischemaField("n_list", np.int32, (None,), None, False),
        UnischemaField("n_nullable_float", np.float64, (), None, True),
        UnischemaField("n_nullable_str", np.str_, (), None, True),
        UnischemaField("s_int", np.int32, (), ScalarCodec(spark_type("IntegerType")), False),
        UnischemaField("s_float", np.float32, (), ScalarCodec(spark_type("FloatType")), False),
        UnischemaField("s_bool", np.bool_, (), ScalarCodec(spark_type("BooleanType")), False),
        UnischemaField("s_str", np.str_, (), ScalarCodec(spark_type("StringType")), False),
        UnischemaField("s_decimal", Decimal, (), ScalarCodec(spark_type("DecimalType", 10, 3)), False),
        UnischemaField("s_nullable_long", np.int64, (), ScalarCodec(spark_type("LongType")), True),
        UnischemaField("nd_fixed", np.float32, (3, 4), NdarrayCodec(), False),
        UnischemaField("nd_var", np.int16, (None, 2), NdarrayCodec(), False),
        UnischemaField("nd_uint64", np.uint64, (5,), NdarrayCodec(), False),
        UnischemaField("nd_float16", np.float16, (2, 2), NdarrayCodec(), False),
        UnischemaField("nd_bool", np.bool_, (None,), NdarrayCodec(), False),
        UnischemaField("nd_str", np.str_, (3,), NdarrayCodec(), False),
        UnischemaField("nd_datetime", np.dtype("datetime64[ms]"), (2,), NdarrayCodec(), False),
        UnischemaField("nd_nullable", np.int8, (None,), NdarrayCodec(), True),
        UnischemaField("cnd_var", np.float64, (None, None), CompressedNdarrayCodec(), False),
        UnischemaField("cnd_int8", np.int8, (8,), CompressedNdarrayCodec(), True),
        UnischemaField("img_png", np.uint8, (16, 24, 3), CompressedImageCodec("png"), False),
        UnischemaField("img_png_grey16", np.uint16, (None, None), CompressedImageCodec("png"), False),
        UnischemaField("img_jpeg", np.uint8, (16, 16, 3), CompressedImageCodec("jpeg", quality=95), False),
        UnischemaField("img_nullable", np.uint8, (8, 8), CompressedImageCodec("png"), True),
    ]
    return Unischema("AllTypes", fields)


def _all_types_row(i: int) -> dict:
    rng = np.random.default_rng(i)
    row = {"id": i}
    for t in NATIVE_SCALARS:
        name = f"n_{np.dtype(t).name}"
        row[name] = t(i % 2 == 1) if t is np.bool_ else t(np.iinfo(t).max - i if np.dtype(t).kind in "iu" else i + 0.5)
    jpeg = np.zeros((16, 16, 3), np.uint8)
    jpeg[:, :, 0] = 40 + 10 * i
    row.update({
        "n_str": f"row {i} \u00e9", "n_bytes": bytes([i, 0, 255]), "n_decimal": Decimal(f"{i}.125"),
        "n_datetime": np.datetime64("2020-01-01T00:00:00.123456789", "ns") + np.timedelta64(i, "D"),
        "n_list": np.arange(i % 4, dtype=np.int32),
        "n_nullable_float": None if i % 3 == 0 else i * 1.5,
        "n_nullable_str": None if i % 3 == 1 else str(i),
        "s_int": -i, "s_float": np.float32(i / 4), "s_bool": i % 2 == 0, "s_str": "x" * i,
        "s_decimal": Decimal(i) / Decimal(8), "s_nullable_long": None if i % 2 else 2 ** 40 + i,
        "nd_fixed": rng.standard_normal((3, 4)).astype(np.float32),
        "nd_var": rng.integers(-5, 5, (i % 3 + 1, 2)).astype(np.int16),
        "nd_uint64": np.full(5, 2 ** 64 - 1 - i, np.uint64),
        "nd_float16": np.full((2, 2), i / 2, np.float16),
        "nd_bool": np.arange(i) % 2 == 0,
        "nd_str": np.array(["a", "bb", str(i)]),
        "nd_datetime": np.array(["2021-03-04T05:06:07.089", "1970-01-01"], dtype="datetime64[ms]"),
        "nd_nullable": None if i % 4 == 0 else np.arange(i, dtype=np.int8),
        "cnd_var": rng.standard_normal((i % 2 + 1, 3)),
        "cnd_int8": None if i % 5 == 2 else np.full(8, i, np.int8),
        "img_png": rng.integers(0, 255, (16, 24, 3), dtype=np.uint8),
        "img_png_grey16": rng.integers(0, 65535, (4 + i, 6), dtype=np.uint16),
        "img_jpeg": jpeg,
        "img_nullable": None if i % 2 else np.full((8, 8), i, np.uint8),
    })
    return row


def _read_decoded(path: str, schema: Unischema, **read_kwargs) -> dict:
    """Read the dataset's Parquet with plain pyarrow and decode every column with the codecs."""
    table = pq.read_table(path, **read_kwargs)
    decoded = {}
    for name, field in schema.fields.items():
        column = table.column(name)
        if field.codec is None:
            decoded[name] = column.to_pylist() if field.shape else decode_native_column(field, column)
        else:
            decoded[name] = field.codec.decode_column(field, column)
    return decoded


def _assert_value_equal(field: UnischemaField, expected, actual, row: int) -> None:
    where = f"field {field.name!r} row {row}"
    if expected is None:
        if not field.shape and isinstance(field.numpy_dtype, type) and issubclass(field.numpy_dtype, np.floating):
            assert np.isnan(actual), where  # a null float reads back as NaN, as 0.12.1 gave it
        else:
            assert actual is None, where
        return
    if isinstance(field.codec, CompressedImageCodec) and field.codec.image_codec == "jpeg":
        assert actual.shape == expected.shape and np.abs(actual.astype(int) - expected).max() <= 3, where
        return
    if isinstance(expected, np.ndarray):
        actual = np.asarray(actual)
        assert actual.dtype == expected.dtype or field.codec is None, where
        np.testing.assert_array_equal(actual, expected, err_msg=where)
        return
    if isinstance(expected, np.datetime64):
        assert np.datetime64(actual, "ns") == expected, where
        return
    if isinstance(expected, (float, np.floating)):
        assert float(actual) == float(expected), where
        return
    if isinstance(actual, np.generic):
        actual = actual.item()
    assert actual == (expected.item() if isinstance(expected, np.generic) else expected), where


@pytest.mark.parametrize("workers_count", [1, 2])
def test_round_trip_every_codec_and_dtype_equals_the_input(tmp_path, workers_count):
    schema = _all_types_schema()
    rows = [_all_types_row(i) for i in range(N_ROWS)]
    url = f"file://{tmp_path}/ds"
    result = write_dataset(url, schema, rows, workers_count=workers_count, progress=False, chunk_rows=4)

    assert isinstance(result, WriteResult) and result.num_rows == N_ROWS
    decoded = _read_decoded(str(tmp_path / "ds"), schema)
    for name, field in schema.fields.items():
        for i, row in enumerate(rows):
            _assert_value_equal(field, row[name], decoded[name][i], i)
    # fixed-shape ndarray columns decode to one (rows,) + shape array
    assert decoded["nd_fixed"].shape == (N_ROWS, 3, 4) and decoded["nd_fixed"].dtype == np.float32
    assert get_schema_from_dataset_url(url) == schema


def test_parquet_column_types_follow_the_schema(tmp_path):
    schema = _all_types_schema()
    write_dataset(str(tmp_path / "ds"), schema, [_all_types_row(0)], workers_count=1, progress=False)
    arrow_schema = pq.read_schema(glob.glob(str(tmp_path / "ds" / "part-*.parquet"))[0])
    assert arrow_schema.field("n_uint64").type == pa.uint64()
    assert arrow_schema.field("n_float16").type == pa.float16()
    assert arrow_schema.field("n_str").type == pa.string()
    assert arrow_schema.field("s_int").type == pa.int32()
    assert arrow_schema.field("s_decimal").type == pa.decimal128(10, 3)
    assert arrow_schema.field("n_list").type == pa.list_(pa.int32())
    assert arrow_schema.field("nd_fixed").type == pa.binary()
    assert not arrow_schema.field("id").nullable and arrow_schema.field("nd_nullable").nullable


def _psw_blocks() -> set:
    """The writer's shared blocks of this process in ``/dev/shm`` (named ``psw<pid % 100000>_``). Only this
    process's: /dev/shm is machine-wide, and another test process (pytest-xdist) may be writing too."""
    if not os.path.isdir("/dev/shm"):
        return set()
    prefix = f"psw{os.getpid() % 100000}_"
    return {n for n in os.listdir("/dev/shm") if n.startswith(prefix)}


def test_worker_pool_round_trip_of_large_arrays_in_any_memory_layout(tmp_path):
    """Arrays of 4 KiB and more travel through shared memory: C, Fortran and strided arrays all arrive intact,
    and a batch bigger than its output block (large strings) still comes back."""
    schema = Unischema("Layouts", [UnischemaField("id", np.int32, (), None, False),
                                   UnischemaField("c", np.float64, (64, 32), NdarrayCodec(), False),
                                   UnischemaField("f", np.int32, (64, 32), NdarrayCodec(), False),
                                   UnischemaField("strided", np.uint8, (None, None), CompressedNdarrayCodec(), False),
                                   UnischemaField("text", np.str_, (), None, False)])
    rng = np.random.default_rng(0)
    rows = [{"id": i, "c": rng.standard_normal((64, 32)),
             "f": np.asfortranarray(rng.integers(0, 1000, (64, 32), dtype=np.int32)),
             "strided": rng.integers(0, 255, (128, 128), dtype=np.uint8)[::2, ::3],
             "text": str(i % 10) * 400_000} for i in range(24)]
    before = _psw_blocks()
    write_dataset(str(tmp_path / "ds"), schema, rows, workers_count=2, progress=False, chunk_rows=6)
    decoded = _read_decoded(str(tmp_path / "ds"), schema)
    for i, row in enumerate(rows):
        np.testing.assert_array_equal(decoded["c"][i], row["c"])
        np.testing.assert_array_equal(decoded["f"][i], row["f"])
        np.testing.assert_array_equal(decoded["strided"][i], row["strided"])
        assert decoded["text"][i] == row["text"] and decoded["id"][i] == i
    assert _psw_blocks() <= before  # every shared block was unlinked


# --- row groups and files ---------------------------------------------------------------------------------

def _blob_schema() -> Unischema:
    return Unischema("Blob", [UnischemaField("id", np.int32, (), None, False),
                              UnischemaField("part", np.int32, (), ScalarCodec(spark_type("IntegerType")), False),
                              UnischemaField("blob", np.uint8, (100, 100), NdarrayCodec(), False)])


def _blob_rows(n: int, start: int = 0):
    for i in range(start, start + n):
        yield {"id": i, "part": i % 3, "blob": np.full((100, 100), i % 256, np.uint8)}


def _ids(path, **kwargs) -> list:
    return pq.read_table(path, columns=["id"], **kwargs).column("id").to_pylist()


def test_row_groups_are_cut_by_size_and_recorded_in_metadata(tmp_path):
    path = str(tmp_path / "ds")
    # each row is ~10 KB encoded: 0.05 MiB row groups hold about 5 rows
    result = write_dataset(path, _blob_schema(), _blob_rows(60), row_group_size_mb=0.05, workers_count=1,
                           progress=False)
    (name,) = result.files
    meta = pq.ParquetFile(os.path.join(path, name)).metadata
    assert meta.num_row_groups == result.num_row_groups_per_file[name] >= 10
    sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    assert sum(sizes) == 60 and max(sizes) <= 7
    stored = load_num_row_groups_per_file(read_dataset_metadata(pa.fs.LocalFileSystem(), path), path)
    assert stored == {name: meta.num_row_groups}
    assert ROW_GROUPS_PER_FILE_KEY in read_dataset_metadata(pa.fs.LocalFileSystem(), path)
    assert _ids(path) == list(range(60))


def test_default_row_group_size_writes_one_row_group_for_small_data(tmp_path):
    result = write_dataset(str(tmp_path / "ds"), _blob_schema(), _blob_rows(20), workers_count=1, progress=False)
    assert list(result.num_row_groups_per_file.values()) == [1]


def test_rows_per_file_starts_a_new_file_every_n_rows(tmp_path):
    path = str(tmp_path / "ds")
    result = write_dataset(path, _blob_schema(), list(_blob_rows(10)), rows_per_file=4, workers_count=1,
                           progress=False)
    assert [result.rows_per_file[f] for f in result.files] == [4, 4, 2]
    assert sorted(os.listdir(path)) == sorted(list(result.files) + ["_common_metadata"])
    assert _ids(path) == list(range(10))


def test_num_files_splits_a_list_in_contiguous_balanced_files(tmp_path):
    path = str(tmp_path / "ds")
    result = write_dataset(path, _blob_schema(), list(_blob_rows(10)), num_files=3, workers_count=1,
                           progress=False)
    assert len(result.files) == 3 and sorted(result.rows_per_file.values()) == [3, 3, 4]
    assert _ids(path) == list(range(10))  # files in name order hold the input order


def test_num_files_with_a_generator_deals_rows_to_every_file(tmp_path):
    path = str(tmp_path / "ds")
    result = write_dataset(path, _blob_schema(), _blob_rows(10), num_files=3, workers_count=1, progress=False,
                           chunk_rows=4)
    assert len(result.files) == 3 and sorted(result.rows_per_file.values()) == [3, 3, 4]
    assert sorted(_ids(path)) == list(range(10))


def test_partition_by_writes_hive_directories_without_the_partition_column(tmp_path):
    path = str(tmp_path / "ds")
    schema = _blob_schema()
    result = write_dataset(path, schema, _blob_rows(30), partition_by=["part"], workers_count=1, progress=False)
    assert sorted(os.listdir(path)) == ["_common_metadata", "part=0", "part=1", "part=2"]
    assert all(f.startswith("part=") for f in result.files)
    a_file = os.path.join(path, result.files[0])
    assert pq.read_schema(a_file).names == ["id", "blob"]
    table = pq.read_table(path, partitioning="hive")
    pairs = sorted(zip(table.column("id").to_pylist(), [int(p) for p in table.column("part").to_pylist()]))
    assert pairs == [(i, i % 3) for i in range(30)]
    assert get_schema_from_dataset_url("file://" + path) == schema  # the stored schema keeps the partition field


def test_rows_per_file_and_num_files_count_per_partition_directory(tmp_path):
    path = str(tmp_path / "ds")
    result = write_dataset(path, _blob_schema(), _blob_rows(30), partition_by=["part"], rows_per_file=4,
                           workers_count=1, progress=False)
    for part in range(3):
        counts = sorted(n for f, n in result.rows_per_file.items() if f.startswith(f"part={part}/"))
        assert counts == [2, 4, 4]
    result = write_dataset(str(tmp_path / "rr"), _blob_schema(), _blob_rows(30), partition_by=["part"],
                           num_files=2, workers_count=1, progress=False)
    assert sorted(result.rows_per_file.values()) == [5] * 6


def test_partition_values_are_escaped_and_nulls_use_the_hive_default(tmp_path):
    schema = Unischema("P", [UnischemaField("id", np.int32, (), None, False),
                             UnischemaField("city", np.str_, (), None, True)])
    rows = [{"id": 0, "city": "New York/NY"}, {"id": 1, "city": None}, {"id": 2, "city": "a=b"}]
    path = str(tmp_path / "ds")
    write_dataset(path, schema, rows, partition_by="city", workers_count=1, progress=False)
    dirs = sorted(d for d in os.listdir(path) if d.startswith("city="))
    assert dirs == ["city=New York%2FNY", "city=__HIVE_DEFAULT_PARTITION__", "city=a%3Db"]
    table = pq.read_table(path, partitioning=pa.dataset.HivePartitioning.discover(segment_encoding="uri"))
    assert dict(zip(table.column("id").to_pylist(), table.column("city").to_pylist())) == \
        {0: "New York/NY", 1: None, 2: "a=b"}


def test_an_error_while_writing_files_reaches_the_caller_and_publishes_nothing(tmp_path):
    schema = Unischema("B", [UnischemaField("id", np.int32, (), None, False),
                             UnischemaField("key", np.bytes_, (), None, False)])
    rows = ({"id": i, "key": b"k"} for i in range(100))
    with pytest.raises(PetastormSchemaError, match="partition_by: field 'key' holds binary values"):
        write_dataset(str(tmp_path / "ds"), schema, rows, partition_by=["key"], workers_count=1, progress=False,
                      chunk_rows=8)
    assert _siblings(tmp_path) == []


def test_compression_choice_is_written_to_the_files(tmp_path):
    path = str(tmp_path / "ds")
    result = write_dataset(path, _blob_schema(), _blob_rows(5), compression="zstd", workers_count=1,
                           progress=False)
    meta = pq.ParquetFile(os.path.join(path, result.files[0])).metadata
    assert meta.row_group(0).column(2).compression == "ZSTD"
    with pytest.raises(PetastormArgumentError, match="compression"):
        write_dataset(str(tmp_path / "other"), _blob_schema(), _blob_rows(5), compression="zip", progress=False)


def test_empty_input_writes_a_readable_dataset_with_no_rows(tmp_path):
    path = str(tmp_path / "ds")
    result = write_dataset(path, _blob_schema(), [], workers_count=1, progress=False)
    assert result.num_rows == 0 and len(result.files) == 1
    assert pq.read_table(path).num_rows == 0


# --- already encoded input ----------------------------------------------------------------------------------

def _encoded_columns(schema: Unischema, start: int, n: int) -> dict:
    field = schema.blob
    return {"id": pa.array(range(start, start + n), pa.int64()),  # int64 casts safely to int32
            "part": pa.array([i % 3 for i in range(start, start + n)], pa.int32()),
            "blob": pa.array([bytes(field.codec.encode(field, np.full((100, 100), i % 256, np.uint8)))
                              for i in range(start, start + n)], pa.binary())}


def test_record_batches_dataframes_and_dicts_mix_in_input_order(tmp_path):
    pd = pytest.importorskip("pandas")
    schema = _blob_schema()
    batch = pa.RecordBatch.from_pydict(_encoded_columns(schema, 0, 4))
    frame = pd.DataFrame({k: v.to_pylist() for k, v in _encoded_columns(schema, 4, 3).items()})
    table = pa.table(_encoded_columns(schema, 9, 2))
    items = [batch, frame, *_blob_rows(2, start=7), table]
    path = str(tmp_path / "ds")
    result = write_dataset(path, schema, items, workers_count=1, progress=False)
    assert result.num_rows == 11
    decoded = _read_decoded(path, schema)
    assert list(decoded["id"]) == list(range(11))
    assert [int(b[0, 0]) for b in decoded["blob"]] == list(range(11))


def test_a_single_record_batch_is_accepted_as_rows(tmp_path):
    schema = _blob_schema()
    batch = pa.RecordBatch.from_pydict(_encoded_columns(schema, 0, 5))
    result = write_dataset(str(tmp_path / "ds"), schema, batch, workers_count=1, progress=False)
    assert result.num_rows == 5


def test_encoded_batch_with_a_type_that_does_not_cast_names_the_rows_and_field(tmp_path):
    schema = _blob_schema()
    columns = _encoded_columns(schema, 0, 3)
    columns["id"] = pa.array([1, 2 ** 40, 3], pa.int64())  # does not fit int32
    with pytest.raises(PetastormSchemaError, match=r"rows 0\.\.2 of the input: field 'id'"):
        write_dataset(str(tmp_path / "ds"), schema, [pa.RecordBatch.from_pydict(columns)], workers_count=1,
                      progress=False)
    assert not os.path.exists(tmp_path / "ds")


def test_encoded_batch_with_a_null_in_a_non_nullable_field_names_the_row(tmp_path):
    schema = _blob_schema()
    columns = _encoded_columns(schema, 0, 4)
    columns["part"] = pa.array([0, 1, None, 0], pa.int32())
    rows = [*_blob_rows(3), pa.RecordBatch.from_pydict(columns)]
    with pytest.raises(PetastormSchemaError, match="row 5 of the input: field 'part' is not nullable"):
        write_dataset(str(tmp_path / "ds"), schema, rows, workers_count=1, progress=False)
    assert not os.path.exists(tmp_path / "ds")


# --- publish semantics --------------------------------------------------------------------------------------

def _siblings(tmp_path) -> list:
    return sorted(os.listdir(tmp_path))


def test_existing_non_empty_target_is_an_error_naming_the_path(tmp_path):
    path = str(tmp_path / "ds")
    write_dataset(path, _blob_schema(), _blob_rows(3), workers_count=1, progress=False)
    before = sorted(os.listdir(path))
    with pytest.raises(PetastormWriteError, match="ds.*overwrite=True"):
        write_dataset(path, _blob_schema(), _blob_rows(5), workers_count=1, progress=False)
    assert sorted(os.listdir(path)) == before and _ids(path) == [0, 1, 2]
    assert _siblings(tmp_path) == ["ds"]


def test_an_empty_existing_directory_is_filled(tmp_path):
    os.makedirs(tmp_path / "ds")
    write_dataset(str(tmp_path / "ds"), _blob_schema(), _blob_rows(3), workers_count=1, progress=False)
    assert _ids(str(tmp_path / "ds")) == [0, 1, 2]


def test_overwrite_replaces_the_dataset_once_the_new_one_is_complete(tmp_path):
    path = str(tmp_path / "ds")
    write_dataset(path, _blob_schema(), _blob_rows(3), workers_count=1, progress=False)
    with open(os.path.join(path, "stale.txt"), "w") as f:
        f.write("old")
    write_dataset(path, _blob_schema(), _blob_rows(4, start=10), workers_count=1, progress=False, overwrite=True)
    assert _ids(path) == [10, 11, 12, 13]
    assert "stale.txt" not in os.listdir(path)
    assert _siblings(tmp_path) == ["ds"]


def test_failed_overwrite_keeps_the_old_dataset(tmp_path):
    path = str(tmp_path / "ds")
    write_dataset(path, _blob_schema(), _blob_rows(3), workers_count=1, progress=False)

    def rows():
        yield from _blob_rows(5, start=10)
        yield {"id": 99, "part": 0, "blob": np.zeros((100, 99), np.uint8)}

    with pytest.raises(PetastormSchemaError, match="row 5 of the input: .*field 'blob'"):
        write_dataset(path, _blob_schema(), rows(), workers_count=1, progress=False, overwrite=True)
    assert _ids(path) == [0, 1, 2]
    assert _siblings(tmp_path) == ["ds"]


@pytest.mark.parametrize("workers_count", [1, 2])
def test_bad_row_in_the_middle_publishes_nothing_and_cleans_up(tmp_path, workers_count):
    def rows():
        yield from _blob_rows(37)
        yield {"id": 37, "part": 0, "blob": np.zeros((100, 100), np.float32)}
        yield from _blob_rows(20, start=38)

    with pytest.raises(PetastormSchemaError, match="row 37 of the input: .*field 'blob'"):
        write_dataset(str(tmp_path / "ds"), _blob_schema(), rows(), workers_count=workers_count, progress=False,
                      chunk_rows=8, row_group_size_mb=0.02)
    assert _siblings(tmp_path) == []


def test_keyboard_interrupt_from_the_input_publishes_nothing(tmp_path):
    def rows():
        yield from _blob_rows(20)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_dataset(str(tmp_path / "ds"), _blob_schema(), rows(), workers_count=2, progress=False, chunk_rows=4)
    assert _siblings(tmp_path) == []


def _crashing_schema() -> Unischema:
    class CrashingCodec(NdarrayCodec):
        def encode(self, unischema_field, value):
            if value[0, 0] == 13:
                os.kill(os.getpid(), 9)
            return super().encode(unischema_field, value)

    return Unischema("Crash", [UnischemaField("id", np.int32, (), None, False),
                               UnischemaField("part", np.int32, (), None, False),
                               UnischemaField("blob", np.uint8, (100, 100), CrashingCodec(), False)])


def test_a_worker_killed_mid_write_raises_instead_of_hanging(tmp_path):
    before = _psw_blocks()
    with pytest.raises(PetastormWorkerError, match="worker process died"):
        write_dataset(str(tmp_path / "ds"), _crashing_schema(), _blob_rows(40), workers_count=2, progress=False,
                      chunk_rows=4)
    assert _siblings(tmp_path) == []
    assert _psw_blocks() <= before


def test_a_chunk_sent_after_a_worker_died_raises_the_worker_error_too():
    """The executor may see the death before the dead worker's result is asked for: then at ``submit``."""
    import time

    from petastorm.etl.encode_pool import _EncoderPool

    pool = _EncoderPool(_blob_schema(), 1, 2)
    try:
        first = pool.submit(list(_blob_rows(4)), 0)
        assert first.result().num_rows == 4
        pool.release(first)
        for process in list(pool._executor._processes.values()):
            os.kill(process.pid, 9)
        deadline = time.monotonic() + 10
        with pytest.raises(PetastormWorkerError, match="worker process died before rows 4..7"):
            while time.monotonic() < deadline:  # until the executor has noticed
                entry = pool.submit(list(_blob_rows(4, 4)), 4)
                try:
                    entry.result()
                except PetastormWorkerError:
                    pool.release(entry)
                    time.sleep(0.05)
    finally:
        pool.shutdown(abort=True)


_PROGRESS_SCRIPT = """
import sys
import numpy as np
from petastorm.codecs import NdarrayCodec
from petastorm.etl.writer import write_dataset
from petastorm.unischema import Unischema, UnischemaField
schema = Unischema("P", [UnischemaField("blob", np.uint8, (10,), NdarrayCodec(), False)])
write_dataset(sys.argv[1], schema, [{"blob": np.zeros(10, np.uint8)}] * 6, workers_count=1,
              progress=sys.argv[2] == "on")
print("tqdm imported:", "tqdm" in sys.modules)
"""


@pytest.mark.parametrize("progress", ["on", "off"])
def test_progress_bar_reports_rows_and_is_silent_when_off(tmp_path, progress):
    # in a subprocess: tqdm keeps a process-wide multiprocessing lock once a bar was created
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _PROGRESS_SCRIPT, str(tmp_path / "ds"), progress],
                         capture_output=True, text=True, timeout=120, check=True)
    if progress == "on":
        assert "6/6" in out.stderr and "rows" in out.stderr
    else:
        assert out.stderr == "" and "tqdm imported: False" in out.stdout


def test_arguments_are_checked_up_front(tmp_path):
    schema, path = _blob_schema(), str(tmp_path / "ds")
    with pytest.raises(PetastormArgumentError, match="num_files.*rows_per_file"):
        write_dataset(path, schema, [], num_files=2, rows_per_file=3, progress=False)
    with pytest.raises(PetastormArgumentError, match="row_group_size_mb"):
        write_dataset(path, schema, [], row_group_size_mb=0, progress=False)
    with pytest.raises(PetastormArgumentError, match="workers_count"):
        write_dataset(path, schema, [], workers_count=0, progress=False)
    with pytest.raises(PetastormArgumentError, match="partition_by: 'nope'"):
        write_dataset(path, schema, [], partition_by=["nope"], progress=False)
    with pytest.raises(PetastormArgumentError, match="partition_by: field 'blob'"):
        write_dataset(path, schema, [], partition_by=["blob"], progress=False)
    assert _siblings(tmp_path) == []


# --- object store: publish by moving files, metadata last -----------------------------------------------------

def test_s3_round_trip_and_failed_write_leaves_nothing(s3_server):
    bucket = s3_server.make_bucket()
    fs = s3_server.pyarrow_filesystem()
    url = f"s3://{bucket}/ds"
    result = write_dataset(url, _blob_schema(), _blob_rows(10), num_files=2, workers_count=1, progress=False,
                           storage_options=s3_server.storage_options)
    listing = sorted(i.path for i in fs.get_file_info(pa.fs.FileSelector(bucket, recursive=True))
                     if i.type == pa.fs.FileType.File)
    assert listing == sorted([f"{bucket}/ds/_common_metadata"] + [f"{bucket}/ds/{f}" for f in result.files])
    table = pq.read_table(f"{bucket}/ds", filesystem=fs)
    assert sorted(table.column("id").to_pylist()) == list(range(10))
    assert get_schema_from_dataset_url(url, storage_options=s3_server.storage_options) == _blob_schema()

    def bad_rows():
        yield from _blob_rows(5)
        yield {"id": 5, "part": 0}

    with pytest.raises(PetastormSchemaError, match="row 5 of the input: field 'blob' is missing"):
        write_dataset(f"s3://{bucket}/other", _blob_schema(), bad_rows(), workers_count=1, progress=False,
                      storage_options=s3_server.storage_options)
    with pytest.raises(PetastormWriteError, match="overwrite=True"):
        write_dataset(url, _blob_schema(), _blob_rows(3), workers_count=1, progress=False,
                      storage_options=s3_server.storage_options)
    write_dataset(url, _blob_schema(), _blob_rows(3, start=50), workers_count=1, progress=False, overwrite=True,
                  storage_options=s3_server.storage_options)
    after = sorted(i.path for i in fs.get_file_info(pa.fs.FileSelector(bucket, recursive=True))
                   if i.type == pa.fs.FileType.File)
    assert all(p.startswith(f"{bucket}/ds/") for p in after)  # nothing of "other", no temporary files
    assert sorted(pq.read_table(f"{bucket}/ds", filesystem=fs).column("id").to_pylist()) == [50, 51, 52]


def test_hello_world_example_writes_its_dataset_without_spark(tmp_path):
    import importlib.util

    path = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "hello_world", "generate_petastorm_dataset.py")
    spec = importlib.util.spec_from_file_location("generate_petastorm_dataset", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    url = f"file://{tmp_path}/hello_world"
    result = example.generate_petastorm_dataset(url, rows_count=3, workers_count=1)
    assert result.num_rows == 3
    assert get_schema_from_dataset_url(url) == example.HelloWorldSchema
    decoded = _read_decoded(str(tmp_path / "hello_world"), example.HelloWorldSchema)
    assert decoded["image1"].shape == (3, 128, 256, 3)
    np.testing.assert_array_equal(decoded["array_4d"][1], example.row_generator(1)["array_4d"])
