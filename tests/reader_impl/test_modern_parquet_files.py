"""make_batch_reader on Parquet files that today's writers produce and petastorm did not write: every encoding,
page layout and compression pyarrow 26 writes, the newer Arrow types (string/binary views, list views, the
``arrow.uuid`` extension, decimal256, INT96 timestamps), row groups of 0 and 1 rows, pandas' index column and a
Hive directory with ``__HIVE_DEFAULT_PARTITION__``. Values are compared with what was written, on the thread and
the dummy pool (the process pool runs the same worker: ``tests/test_arrow_types.py`` covers it).

The scalar types of every width, with and without nulls, are in ``tests/test_arrow_types.py``; files whose
schemas disagree in ``test_parquet_files_that_disagree.py``; the framework loaders in
``tests/adapters/test_modern_parquet_files_loaders.py``.
"""
import datetime
import uuid
import warnings
from decimal import Decimal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from _fixtures.batches import concat_batches, read_batches

from petastorm import make_batch_reader
from petastorm.errors import PetastormSchemaError

_N = 12
_POOLS = ["thread", "dummy"]


def _read(path, pool, **kwargs):
    """Columns of a whole pass in dataset order, and the reader's schema."""
    batches, schema = read_batches("file://" + str(path), reader_pool_type=pool, shuffle_row_groups=False, **kwargs)
    return (concat_batches(batches) if batches else {}), schema


def _plain_table():
    return pa.table({
        "id": pa.array(np.arange(_N, dtype=np.int64) * 1_000_003),
        "f": pa.array(np.linspace(-3.5, 7.25, _N), pa.float64()),
        "h": pa.array(np.arange(_N, dtype=np.float32) / 8, pa.float32()),
        "s": pa.array([f"row-{i}-" + "x" * (i % 5) for i in range(_N)]),
        "b": pa.array([bytes([i, 255 - i]) * (i % 3 + 1) for i in range(_N)]),
        "n": pa.array([None if i % 4 == 1 else i - 5 for i in range(_N)], pa.int32()),
    })


_WRITE_OPTIONS = {
    "byte_stream_split": dict(use_byte_stream_split=["f", "h"], use_dictionary=False),
    "delta_binary_packed": dict(column_encoding={"id": "DELTA_BINARY_PACKED", "n": "DELTA_BINARY_PACKED"},
                                use_dictionary=False),
    "delta_byte_array": dict(column_encoding={"s": "DELTA_BYTE_ARRAY", "b": "DELTA_BYTE_ARRAY"}, use_dictionary=False),
    "delta_length_byte_array": dict(column_encoding={"s": "DELTA_LENGTH_BYTE_ARRAY"}, use_dictionary=False),
    "data_page_v2": dict(data_page_version="2.0"),
    "page_index": dict(write_page_index=True),
    "bloom_filters": dict(bloom_filter_options={"s": {"ndv": 16}}),
    "no_dictionary": dict(use_dictionary=False),
    "no_stored_arrow_schema": dict(store_schema=False),
    "zstd": dict(compression="zstd", compression_level=9),
    "lz4_raw": dict(compression="lz4"),
    "brotli": dict(compression="brotli"),
    "gzip": dict(compression="gzip"),
    "uncompressed": dict(compression="none"),
    "per_column_compression": dict(compression={"id": "zstd", "f": "snappy", "h": "gzip", "s": "brotli",
                                                "b": "lz4", "n": "none"}),
    "one_value_pages": dict(data_page_size=1, write_batch_size=1, dictionary_pagesize_limit=1),
    "row_groups_of_one_row": dict(row_group_size=1),
    "statistics_off": dict(write_statistics=False),
}


@pytest.mark.parametrize("pool", _POOLS)
@pytest.mark.parametrize("option", sorted(_WRITE_OPTIONS))
def test_every_encoding_layout_and_compression_reads_the_values_written(tmp_path, option, pool):
    table = _plain_table()
    pq.write_table(table, tmp_path / "part.parquet", **_WRITE_OPTIONS[option])
    cols, schema = _read(tmp_path, pool)
    assert list(schema.fields) == table.column_names
    for name in ["id", "f", "h"]:
        assert cols[name].dtype == table.schema.field(name).type.to_pandas_dtype(), name
        np.testing.assert_array_equal(cols[name], table.column(name).to_numpy(), err_msg=name)
    assert cols["s"].tolist() == table.column("s").to_pylist()
    assert cols["b"].tolist() == table.column("b").to_pylist()
    assert cols["n"].tolist() == table.column("n").to_pylist()


def _modern_columns():
    """name -> (pyarrow array, expected values as Python objects, numpy dtype or None for object arrays)."""
    strs = [f"é{i}" * (i % 3 + 1) for i in range(_N)]
    bins = [bytes([i]) * (i % 4) for i in range(_N)]
    uuids = [uuid.UUID(int=i * 2**100 + i) for i in range(_N)]
    lists = [list(range(i % 3)) for i in range(_N)]
    decs = [Decimal(i * 7919) / Decimal(1000) for i in range(_N)]
    return {
        "string_view": (pa.array(strs, pa.string_view()), strs, np.dtype("U9")),
        "binary_view": (pa.array(bins, pa.binary_view()), bins, None),
        "large_binary": (pa.array(bins, pa.large_binary()), bins, None),
        "uuid": (pa.array([u.bytes for u in uuids], pa.uuid()), [u.bytes for u in uuids], None),
        "fixed_size_binary": (pa.array([u.bytes[:5] for u in uuids], pa.binary(5)), [u.bytes[:5] for u in uuids],
                              None),
        "decimal256": (pa.array(decs, pa.decimal256(60, 3)), decs, None),
        "date64": (pa.array([datetime.date(1999, 12, 31 - i) for i in range(_N)], pa.date64()),
                   [datetime.date(1999, 12, 31 - i) for i in range(_N)], None),
        "float16": (pa.array(np.arange(_N, dtype=np.float16) / 4), (np.arange(_N) / 4).tolist(), np.dtype("float16")),
        "list_view": (pa.array(lists, pa.list_view(pa.int16())), lists, None),
        "large_list_of_view": (pa.array(lists, pa.large_list(pa.int16())), lists, None),
    }


_MODERN = _modern_columns()


@pytest.mark.parametrize("pool", _POOLS)
@pytest.mark.parametrize("name", sorted(_MODERN))
def test_newer_arrow_types_read_the_values_written(tmp_path, name, pool):
    """View types, list views and the uuid extension were dropped with an 'unsupported' warning."""
    arr, expected, dtype = _MODERN[name]
    pq.write_table(pa.table({"id": pa.array(range(_N)), name: arr}), tmp_path / "part.parquet", row_group_size=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no column dropped
        cols, schema = _read(tmp_path, pool)
    got = cols[name]
    if dtype is not None:
        assert got.dtype == dtype
    assert [v.tolist() if isinstance(v, np.ndarray) else v for v in got.tolist()] == expected
    assert schema.fields[name].codec is None


@pytest.mark.parametrize("pool", _POOLS)
def test_a_list_view_column_with_null_lists_and_null_values(tmp_path, pool):
    values = [[1, None], None, [], [3, 4, 5]]
    pq.write_table(pa.table({"l": pa.array(values, pa.list_view(pa.int64()))}), tmp_path / "p.parquet")
    cols, schema = _read(tmp_path, pool)
    assert schema.fields["l"].shape == (None,)
    assert [None if v is None else list(v) for v in cols["l"]] == values


@pytest.mark.parametrize("pool", _POOLS)
@pytest.mark.parametrize("unit,tz", [("ms", None), ("us", "UTC"), ("ns", "America/New_York"), ("s", "Asia/Tokyo")])
def test_timestamps_of_every_unit_and_zone_read_as_their_utc_instant(tmp_path, unit, tz, pool):
    instants = np.array(["1900-01-01T00:00:00", "1970-01-01T00:00:01", "2038-01-19T03:14:08"], "datetime64[s]")
    pq.write_table(pa.table({"t": pa.array(instants, pa.timestamp("s")).cast(pa.timestamp(unit, tz=tz))}),
                   tmp_path / "p.parquet")
    cols, _ = _read(tmp_path, pool)
    assert cols["t"].dtype.kind == "M"
    np.testing.assert_array_equal(cols["t"].astype("datetime64[s]"), instants)


@pytest.mark.parametrize("pool", _POOLS)
def test_int96_timestamps_as_spark_and_impala_wrote_them_read_in_nanoseconds(tmp_path, pool):
    ts = np.array(["1816-03-29T05:56:08.066277376", "2021-03-04T05:06:07.123456789"], "datetime64[ns]")
    pq.write_table(pa.table({"t": pa.array(ts)}), tmp_path / "p.parquet", use_deprecated_int96_timestamps=True)
    assert pq.ParquetFile(tmp_path / "p.parquet").schema.column(0).physical_type == "INT96"
    cols, _ = _read(tmp_path, pool)
    np.testing.assert_array_equal(cols["t"], ts)


@pytest.mark.parametrize("pool", _POOLS)
@pytest.mark.parametrize("arrow_type,values", [(pa.time32("s"), [1, 2]), (pa.time64("ns"), [1, 2]),
                                               (pa.struct([("a", pa.int8())]), [{"a": 1}, {"a": 2}]),
                                               (pa.map_(pa.string(), pa.int8()), [[("k", 1)], []])],
                         ids=["time32", "time64", "struct", "map"])
def test_a_column_of_a_type_without_numpy_equivalent_is_left_out_with_a_warning_naming_it(tmp_path, arrow_type,
                                                                                             values, pool):
    pq.write_table(pa.table({"id": [1, 2], "odd": pa.array(values, arrow_type)}), tmp_path / "p.parquet")
    with pytest.warns(UserWarning, match="'odd'"):
        cols, schema = _read(tmp_path, pool)
    assert list(schema.fields) == ["id"] and cols["id"].tolist() == [1, 2]
    with pytest.raises(PetastormSchemaError, match="'odd'.*not supported"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        make_batch_reader("file://" + str(tmp_path), schema_fields=["id", "odd"], reader_pool_type=pool)


@pytest.mark.parametrize("pool", _POOLS)
def test_an_empty_row_group_between_others_gives_no_batch_and_loses_no_row(tmp_path, pool):
    with pq.ParquetWriter(tmp_path / "p.parquet", pa.schema([("id", pa.int64()), ("s", pa.string_view())])) as w:
        w.write_table(pa.table({"id": [0, 1], "s": pa.array(["a", "b"], pa.string_view())}))
        w.write_table(pa.table({"id": pa.array([], pa.int64()), "s": pa.array([], pa.string_view())}))
        w.write_table(pa.table({"id": [2], "s": pa.array(["c"], pa.string_view())}))
    assert pq.ParquetFile(tmp_path / "p.parquet").metadata.row_group(1).num_rows == 0
    batches, _ = read_batches("file://" + str(tmp_path), reader_pool_type=pool, shuffle_row_groups=False)
    assert [b.id.tolist() for b in batches] == [[0, 1], [2]]
    assert concat_batches(batches)["s"].tolist() == ["a", "b", "c"]


@pytest.mark.parametrize("pool", _POOLS)
def test_a_file_of_zero_rows_among_others_adds_no_row(tmp_path, pool):
    empty = {"id": pa.array([], pa.int64()), "u": pa.array([], pa.uuid()), "l": pa.array([], pa.list_view(pa.int8()))}
    pq.write_table(pa.table(empty), tmp_path / "a.parquet")
    pq.write_table(pa.table({"id": [7], "u": pa.array([b"u" * 16], pa.uuid()),
                             "l": pa.array([[1, 2]], pa.list_view(pa.int8()))}), tmp_path / "b.parquet")
    cols, _ = _read(tmp_path, pool)
    assert cols["id"].tolist() == [7] and cols["u"].tolist() == [b"u" * 16] and cols["l"].tolist() == [[1, 2]]


@pytest.mark.parametrize("pool", _POOLS)
def test_a_store_of_only_zero_row_files_reads_no_batch(tmp_path, pool):
    pq.write_table(pa.table({"id": pa.array([], pa.int64()), "s": pa.array([], pa.binary_view())}),
                   tmp_path / "a.parquet")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no matching data": there is none
        batches, schema = read_batches("file://" + str(tmp_path), reader_pool_type=pool)
    assert batches == [] and list(schema.fields) == ["id", "s"]


@pytest.mark.parametrize("pool", _POOLS)
def test_a_pandas_file_with_a_named_index_reads_the_index_as_a_column(tmp_path, pool):
    """As 0.12.1 read it (recorded): the named index is a column; an unnamed or range index is not."""
    df = pd.DataFrame({"x": [1.5, 2.5, 3.5]}, index=pd.Index([10, 11, 12], name="key"))
    df.to_parquet(tmp_path / "named.parquet")
    cols, _ = _read(tmp_path, pool)
    assert cols["key"].tolist() == [10, 11, 12] and cols["x"].tolist() == [1.5, 2.5, 3.5]


@pytest.mark.parametrize("pool", _POOLS)
def test_a_pandas_file_with_an_unnamed_index_reads_only_the_columns(tmp_path, pool):
    pd.DataFrame({"x": [1.5, 2.5, 3.5]}, index=[7, 8, 9]).to_parquet(tmp_path / "unnamed.parquet")
    pd.DataFrame({"x": [4.5, 5.5]}).to_parquet(tmp_path / "range.parquet")
    cols, schema = _read(tmp_path, pool)
    assert list(schema.fields) == ["x"] and sorted(cols["x"].tolist()) == [1.5, 2.5, 3.5, 4.5, 5.5]


@pytest.mark.parametrize("pool", _POOLS)
@pytest.mark.parametrize("values,arrow_type", [(["a", None, "b", None, "a"], pa.string()),
                                               ([3, None, 4, None, 3], pa.int32())], ids=["string", "int"])
def test_a_hive_directory_with_a_default_partition_reads_its_rows_with_none(tmp_path, values, arrow_type, pool):
    table = pa.table({"id": range(5), "p": pa.array(values, arrow_type)})
    ds.write_dataset(table, tmp_path, format="parquet",
                     partitioning=ds.partitioning(pa.schema([("p", arrow_type)]), flavor="hive"))
    assert (tmp_path / "p=__HIVE_DEFAULT_PARTITION__").is_dir()
    cols, _ = _read(tmp_path, pool)
    assert sorted(zip(cols["id"].tolist(), cols["p"].tolist())) == list(enumerate(values))
