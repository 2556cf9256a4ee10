"""make_batch_reader on Parquet columns of every native type (the Arrow -> numpy / Unischema mapping of
petastorm.arrow_types): every scalar type with and without nulls, nested lists, unsupported types named
with their column; values compared with what was written.

Order: every read here uses ``shuffle_row_groups=False`` where order is checked (dataset order: sorted
relative paths, then row-group index), otherwise rows are sorted by an ``id`` column before comparing.
"""
import datetime
import warnings
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _fixtures.batches import concat_batches, read_batches

from petastorm import make_batch_reader
from petastorm.errors import PetastormSchemaError

# --- every scalar type, nulls, dictionaries ------------------------------------------------------------------

_N = 8
_TS = np.array(["2021-03-04T05:06:07.123456789", "1969-12-31T23:59:59", "2000-02-29T00:00:00.5"] +
               ["2024-01-01T00:00:%02d" % i for i in range(_N - 3)], dtype="datetime64[ns]")
_DATES = [datetime.date(2020, 1, 1) + datetime.timedelta(days=37 * i) for i in range(_N)]


def _with_nulls(values, every=3):
    """Every ``every``-th value (from index 1) replaced by None."""
    return [None if i % every == 1 else v for i, v in enumerate(values)]


def _typed_columns():
    """name -> (pyarrow array, expected numpy dtype or 'object', expected values as Python objects)."""
    ints = list(range(-3, _N - 3))
    cols = {}
    for t in ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"]:
        vals = [abs(v) if t.startswith("u") else v for v in ints]
        cols[t] = (pa.array(vals, getattr(pa, t)()), np.dtype(t), vals)
    for t in ["float16", "float32", "float64"]:
        vals = [v / 4 for v in ints]
        cols[t] = (pa.array(np.array(vals, dtype=t), getattr(pa, t)()), np.dtype(t), vals)
    bools = [i % 2 == 0 for i in range(_N)]
    cols["bool"] = (pa.array(bools), np.dtype(bool), bools)
    strs = [f"s{i}é" for i in range(_N)]
    # as the original: string columns without nulls are numpy unicode arrays, dates datetime.date objects
    cols["string"] = (pa.array(strs, pa.string()), "unicode", strs)
    cols["large_string"] = (pa.array(strs, pa.large_string()), "unicode", strs)
    bins = [bytes([i, 0, 255]) for i in range(_N)]
    cols["binary"] = (pa.array(bins, pa.binary()), "object", bins)
    cols["large_binary"] = (pa.array(bins, pa.large_binary()), "object", bins)
    decs = [Decimal(i) / Decimal(100) - Decimal("1.5") for i in range(_N)]
    cols["decimal"] = (pa.array(decs, pa.decimal128(9, 2)), "object", decs)
    cols["date32"] = (pa.array(_DATES, pa.date32()), "object", _DATES)
    for unit in ["ns", "us", "ms"]:
        expected = _TS.astype(f"datetime64[{unit}]")
        cols[f"ts_{unit}"] = (pa.array(expected, pa.timestamp(unit)), np.dtype(f"datetime64[{unit}]"), expected)
        cols[f"ts_{unit}_tz"] = (pa.array(expected, pa.timestamp(unit, tz="Europe/Paris")),
                                 np.dtype(f"datetime64[{unit}]"), expected)  # the UTC instant
    cats = ["red", "green", "red", "blue", "green", "red", "red", "blue"]
    cols["dict_string"] = (pa.array(cats).dictionary_encode(), "unicode", cats)
    cols["dict_int"] = (pa.array([7, 8, 7, 7, 9, 8, 7, 9], pa.int32()).dictionary_encode(), np.dtype("int32"),
                        [7, 8, 7, 7, 9, 8, 7, 9])
    return cols


_TYPED = _typed_columns()


@pytest.fixture(scope="module")
def typed_store(tmp_path_factory):
    """One file, 2 row groups of 4 rows: every scalar type, once without nulls and once with nulls."""
    root = tmp_path_factory.mktemp("typed_store")
    arrays = {"id": pa.array(range(_N), pa.int64())}
    for name, (arr, _, values) in _TYPED.items():
        arrays[name] = arr
        py = arr.to_pylist()
        arrays[name + "_null"] = pa.array(_with_nulls(py), type=arr.type)
    table = pa.table(arrays)
    pq.write_table(table, root / "typed.parquet", row_group_size=4)
    return root


def _check_scalar_column(name, got, dtype, expected):
    assert len(got) == _N, name
    if dtype == "unicode":
        assert got.dtype.kind == "U", name
        assert got.tolist() == list(expected), name
    elif dtype == "object":
        assert got.dtype == object, name
        assert got.tolist() == list(expected), name
        assert all(type(v) is type(e) for v, e in zip(got, expected)), name
    else:
        assert got.dtype == dtype, f"{name}: {got.dtype} != {dtype}"
        np.testing.assert_array_equal(got, np.asarray(expected, dtype=dtype), err_msg=name)


def _check_nullable_column(name, got, dtype, expected):
    want = _with_nulls(list(expected))
    if dtype not in ("object", "unicode") and dtype.kind == "M":
        # timestamps and dates stay datetime64 in their unit; nulls are NaT
        assert got.dtype == dtype, name
        assert np.isnat(got).tolist() == [w is None for w in want], name
        np.testing.assert_array_equal(got[~np.isnat(got)], np.asarray([w for w in want if w is not None], dtype),
                                      err_msg=name)
    elif dtype not in ("object", "unicode") and dtype.kind == "f":
        # floats stay floats, NaN for the nulls (recorded from 0.12.1: float32 [1.5, nan, 2.5])
        assert got.dtype == dtype, name
        assert np.isnan(got).tolist() == [w is None for w in want], name
        np.testing.assert_array_equal(got[~np.isnan(got)], np.asarray([w for w in want if w is not None], dtype),
                                      err_msg=name)
    else:
        assert got.dtype == object, name
        assert [v is None for v in got] == [w is None for w in want], name
        assert [v for v in got if v is not None] == [w for w in want if w is not None], name


@pytest.mark.parametrize("pool", ["dummy", "thread", "process"])
def test_every_scalar_type_round_trips_with_and_without_nulls(typed_store, pool):
    batches, schema = read_batches("file://" + str(typed_store), shuffle_row_groups=False, reader_pool_type=pool)
    cols = concat_batches(batches)
    np.testing.assert_array_equal(cols["id"], np.arange(_N))
    for name, (_, dtype, expected) in _TYPED.items():
        _check_scalar_column(name, cols[name], dtype, expected)
        _check_nullable_column(name + "_null", cols[name + "_null"], dtype, expected)
        assert schema.fields[name].shape == () and schema.fields[name].codec is None
        assert schema.fields[name + "_null"].nullable


@pytest.mark.parametrize("name", ["int32", "string", "ts_ms_tz", "date32", "decimal", "dict_string"])
def test_a_typed_column_selected_alone_round_trips(typed_store, name):
    _, dtype, expected = _TYPED[name]
    batches, _ = read_batches("file://" + str(typed_store), schema_fields=[name, name + "_null"], shuffle_row_groups=False)
    assert batches[0]._fields == (name, name + "_null")
    cols = concat_batches(batches)
    _check_scalar_column(name, cols[name], dtype, expected)
    _check_nullable_column(name + "_null", cols[name + "_null"], dtype, expected)


def test_reader_schema_types_of_the_scalar_columns(typed_store):
    _, schema = read_batches("file://" + str(typed_store), workers_count=1)
    f = schema.fields
    assert f["int8"].numpy_dtype == np.int8 and f["uint64"].numpy_dtype == np.uint64
    assert f["float16"].numpy_dtype == np.float16 and f["float64"].numpy_dtype == np.float64
    assert f["bool"].numpy_dtype == np.bool_
    assert f["string"].numpy_dtype == np.str_ and f["large_string"].numpy_dtype == np.str_
    assert f["dict_string"].numpy_dtype == np.str_ and f["dict_int"].numpy_dtype == np.int32
    assert f["binary"].numpy_dtype == np.bytes_ and f["large_binary"].numpy_dtype == np.bytes_
    assert f["decimal"].numpy_dtype == Decimal
    assert f["date32"].numpy_dtype == np.datetime64 and f["ts_ns_tz"].numpy_dtype == np.datetime64


def test_an_all_null_column_reads_as_none(tmp_path):
    pq.write_table(pa.table({"id": [1, 2, 3], "nothing": pa.nulls(3)}), tmp_path / "n.parquet")
    cols = concat_batches(read_batches("file://" + str(tmp_path))[0])
    assert cols["nothing"].tolist() == [None, None, None]


def test_durations_read_as_timedelta64(tmp_path):
    values = np.array([1, 2_000_000, -5], dtype="timedelta64[us]")
    pq.write_table(pa.table({"d": pa.array(values), "dn": pa.array([1, None, 3], pa.duration("ms"))}),
                   tmp_path / "d.parquet")
    cols = concat_batches(read_batches("file://" + str(tmp_path))[0])
    np.testing.assert_array_equal(cols["d"], values)
    assert cols["dn"].dtype == np.dtype("timedelta64[ms]") and np.isnat(cols["dn"]).tolist() == [False, True, False]


# --- nested lists --------------------------------------------------------------------------------------------

def test_lists_of_equal_length_read_as_2d_arrays(tmp_path):
    li = [[i, i + 1, i + 2] for i in range(6)]
    lf = [[i / 2, -i / 2] for i in range(6)]
    lli = [[[i, 1], [2, 3]] for i in range(6)]
    fixed = pa.array(lf, pa.list_(pa.float32(), 2))
    pq.write_table(pa.table({"li": li, "lf": lf, "lli": lli, "fixed": fixed}), tmp_path / "l.parquet",
                   row_group_size=3)
    batches, schema = read_batches("file://" + str(tmp_path), shuffle_row_groups=False)
    assert batches[0].li.shape == (3, 3) and batches[0].li.dtype == np.int64
    cols = concat_batches(batches)
    np.testing.assert_array_equal(cols["li"], np.array(li))
    assert cols["lf"].dtype == np.float64
    np.testing.assert_array_equal(cols["lf"], np.array(lf))
    assert cols["lli"].shape == (6, 2, 2)
    np.testing.assert_array_equal(cols["lli"], np.array(lli))
    assert cols["fixed"].dtype == np.float32
    np.testing.assert_array_equal(cols["fixed"], np.array(lf, dtype=np.float32))
    assert schema.fields["li"].shape == (None,) and schema.fields["li"].numpy_dtype == np.int64
    assert schema.fields["lli"].shape == (None, None)
    assert schema.fields["fixed"].numpy_dtype == np.float32


def test_ragged_lists_with_nulls_and_empty_lists_read_as_object_arrays_of_arrays(tmp_path):
    li = [[1, 2], [], None, [3], [4, None, 6], [7, 8, 9]]
    lf = [[0.5], [1.5, 2.5], [], [3.5], None, []]
    lli = [[[1], [2, 3]], [], [[4]], None, [[5, 6], None, []], [[7]]]
    table = pa.table({"id": range(6), "li": pa.array(li, pa.list_(pa.int32())), "lf": pa.array(lf, pa.list_(pa.float32())),
                      "lli": pa.array(lli, pa.list_(pa.list_(pa.int64()))),
                      "ls": pa.array([["a"], ["b", None], [], None, ["c"], ["d", "e"]], pa.list_(pa.string()))})
    pq.write_table(table, tmp_path / "l.parquet", row_group_size=4)
    cols = concat_batches(read_batches("file://" + str(tmp_path), shuffle_row_groups=False)[0])
    for name, written in [("li", li), ("lf", lf)]:
        got = cols[name]
        assert got.dtype == object and got.shape == (6,)
        for row, (g, w) in enumerate(zip(got, written)):
            if w is None:
                assert g is None, (name, row)
            else:
                assert isinstance(g, np.ndarray) and g.ndim == 1, (name, row)
                assert g.tolist() == w, (name, row)
    assert cols["li"][0].dtype == np.int32 and cols["lf"][0].dtype == np.float32
    assert cols["li"][1].dtype == np.int32 and len(cols["li"][1]) == 0  # an empty list keeps its dtype
    for row, w in enumerate(lli):
        g = cols["lli"][row]
        if w is None:
            assert g is None
            continue
        # a row of a list of lists: a 1-D object array holding one 1-D array (or None) per inner list
        assert g.dtype == object and g.shape == (len(w),), row
        assert [None if x is None else x.tolist() for x in g] == w
    assert [None if x is None else x.tolist() for x in cols["ls"]] == [["a"], ["b", None], [], None, ["c"], ["d", "e"]]


def test_list_values_of_a_sliced_row_group_are_the_rows_own(tmp_path):
    """Drop partitions slice row groups: each row keeps its own list."""
    li = [list(range(i)) for i in range(10)]
    pq.write_table(pa.table({"id": range(10), "li": li}), tmp_path / "l.parquet", row_group_size=10)
    batches, _ = read_batches("file://" + str(tmp_path), shuffle_row_groups=False, shuffle_row_drop_partitions=3)
    assert len(batches) == 3
    cols = concat_batches(batches)
    assert [x.tolist() for x in cols["li"]] == li


# --- unsupported types ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def store_with_struct_and_map(tmp_path_factory):
    root = tmp_path_factory.mktemp("struct_map")
    table = pa.table({"id": pa.array(range(4), pa.int64()),
                      "st": pa.array([{"a": i, "b": str(i)} for i in range(4)]),
                      "mp": pa.array([[("k", i)] for i in range(4)], pa.map_(pa.string(), pa.int64())),
                      "lst": pa.array([[{"a": 1}]] * 4)})
    pq.write_table(table, root / "s.parquet")
    return root


def test_unselected_unsupported_columns_are_omitted_with_a_warning_naming_column_and_type(store_with_struct_and_map):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        batches, schema = read_batches("file://" + str(store_with_struct_and_map))
    messages = [str(w.message) for w in caught]
    assert list(schema.fields) == ["id"]
    assert batches[0]._fields == ("id",)
    np.testing.assert_array_equal(concat_batches(batches)["id"], np.arange(4))
    for column, type_text in [("st", "struct<a: int64, b: string>"), ("mp", "map<string, int64"),
                              ("lst", "struct<a: int64>>")]:
        assert any(repr(column) in m and type_text in m for m in messages), (column, messages)


@pytest.mark.parametrize("column, type_text", [("st", "struct<a: int64, b: string>"),
                                               ("mp", "map<string, int64")])
def test_selecting_an_unsupported_column_raises_an_error_naming_column_and_type(store_with_struct_and_map,
                                                                               column, type_text):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(PetastormSchemaError) as info:
            make_batch_reader("file://" + str(store_with_struct_and_map), schema_fields=["id", column])
    assert repr(column) in str(info.value) and type_text in str(info.value) and "not supported" in str(info.value)


def test_arrow_field_mapping_names_column_and_type_of_unsupported_fields():
    from petastorm.arrow_types import arrow_field_to_unischema_field

    for field in [pa.field("st", pa.struct([("a", pa.int64())])), pa.field("mp", pa.map_(pa.string(), pa.int8())),
                  pa.field("deep", pa.list_(pa.struct([("a", pa.int64())]))), pa.field("t", pa.time64("us"))]:
        with pytest.raises(PetastormSchemaError, match=f"'{field.name}'.*{str(field.type)[:6]}.*not supported"):
            arrow_field_to_unischema_field(field)
