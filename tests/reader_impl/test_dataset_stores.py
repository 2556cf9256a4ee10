"""make_batch_reader reads any Parquet store (opening it is reader_impl.dataset's job): files written by
pyarrow, pandas and Spark, lists of file URLs, Hive-partitioned directories, stores whose files disagree;
values compared with what was written.

Order: every read here uses ``shuffle_row_groups=False`` where order is checked (dataset order: sorted
relative paths, then row-group index), otherwise rows are sorted by an ``id`` column before comparing.
"""
import datetime
import os
from decimal import Decimal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _fixtures.batches import concat_batches, read_batches

from petastorm import make_batch_reader
from petastorm.errors import PetastormArgumentError, PetastormSchemaError
from petastorm.predicates import in_lambda, in_set
from petastorm.unischema import Unischema


def _sorted_by(columns, key="id"):
    order = np.argsort(columns[key], kind="stable")
    return {name: values[order] for name, values in columns.items()}


# --- pyarrow-written stores ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pyarrow_store(tmp_path_factory):
    """3 files x 4 row groups x 5 rows; ids 0..59 in file-name and row-group order."""
    root = tmp_path_factory.mktemp("pyarrow_store")
    for file_no in range(3):
        ids = np.arange(file_no * 20, file_no * 20 + 20, dtype=np.int64)
        table = pa.table({"id": ids, "x": ids.astype(np.float32) / 2, "name": [f"n{i}" for i in ids]})
        pq.write_table(table, root / f"part-{file_no}.parquet", row_group_size=5)
    return root


@pytest.mark.parametrize("pool", [("dummy", 1), ("thread", 2), ("process", 2)])
def test_pyarrow_files_with_several_row_groups_read_in_file_and_row_group_order(pyarrow_store, pool):
    batches, _ = read_batches("file://" + str(pyarrow_store), shuffle_row_groups=False, reader_pool_type=pool[0],
                       workers_count=pool[1])
    assert [len(b.id) for b in batches] == [5] * 12  # one batch per row group
    cols = concat_batches(batches)
    np.testing.assert_array_equal(cols["id"], np.arange(60))
    assert cols["x"].dtype == np.float32
    np.testing.assert_array_equal(cols["x"], np.arange(60, dtype=np.float32) / 2)
    assert cols["name"].tolist() == [f"n{i}" for i in range(60)]


def test_plain_path_and_file_url_read_the_same_rows(pyarrow_store):
    plain = concat_batches(read_batches(str(pyarrow_store), shuffle_row_groups=False)[0])
    url = concat_batches(read_batches("file://" + str(pyarrow_store), shuffle_row_groups=False)[0])
    np.testing.assert_array_equal(plain["id"], url["id"])
    assert plain["name"].tolist() == url["name"].tolist()


def test_a_single_file_url_reads_that_file_only(pyarrow_store):
    cols = concat_batches(read_batches("file://" + str(pyarrow_store / "part-1.parquet"), shuffle_row_groups=False)[0])
    np.testing.assert_array_equal(cols["id"], np.arange(20, 40))


def test_a_list_of_file_urls_reads_exactly_those_files(pyarrow_store):
    urls = ["file://" + str(pyarrow_store / "part-2.parquet"), "file://" + str(pyarrow_store / "part-0.parquet")]
    cols = _sorted_by(concat_batches(read_batches(urls)[0]))
    np.testing.assert_array_equal(cols["id"], np.concatenate([np.arange(0, 20), np.arange(40, 60)]))
    assert cols["name"].tolist() == [f"n{i}" for i in cols["id"]]


def test_a_list_of_file_urls_is_read_in_the_given_order_without_shuffling(pyarrow_store):
    urls = [str(pyarrow_store / f"part-{i}.parquet") for i in (2, 0, 1)]
    ids = concat_batches(read_batches(urls, shuffle_row_groups=False)[0])["id"]
    np.testing.assert_array_equal(ids, np.concatenate([np.arange(40, 60), np.arange(0, 20), np.arange(20, 40)]))


def test_a_list_of_plain_paths_reads_exactly_those_files(pyarrow_store):
    paths = [str(pyarrow_store / "part-1.parquet")]
    cols = concat_batches(read_batches(paths, shuffle_row_groups=False)[0])
    np.testing.assert_array_equal(cols["id"], np.arange(20, 40))


def test_shuffled_row_groups_still_deliver_every_row_once(pyarrow_store):
    batches, _ = read_batches("file://" + str(pyarrow_store), shuffle_row_groups=True, seed=3)
    ids = concat_batches(batches)["id"]
    assert sorted(ids.tolist()) == list(range(60))
    assert ids.tolist() != list(range(60))  # 12 row groups: the identity permutation is 1 in 479001600


def test_reader_schema_is_the_unischema_inferred_from_the_arrow_schema(pyarrow_store):
    with make_batch_reader("file://" + str(pyarrow_store), workers_count=1) as reader:
        schema = reader.schema
        assert reader.is_batched_reader and reader.batched_output
    assert isinstance(schema, Unischema)
    assert list(schema.fields) == ["id", "x", "name"]
    assert schema.fields["id"].numpy_dtype == np.int64 and schema.fields["id"].shape == ()
    assert schema.fields["x"].numpy_dtype == np.float32
    assert schema.fields["name"].numpy_dtype == np.str_
    assert all(f.codec is None for f in schema.fields.values())


def test_schema_fields_regex_and_unischema_fields_select_columns(pyarrow_store):
    url = "file://" + str(pyarrow_store)
    batches, schema = read_batches(url, schema_fields=["i.", "nam.*"], shuffle_row_groups=False)
    assert batches[0]._fields == ("id", "name")
    assert list(schema.fields) == ["id", "name"]
    full_schema = read_batches(url, workers_count=1)[1]
    batches, _ = read_batches(url, schema_fields=[full_schema.fields["x"]], shuffle_row_groups=False)
    assert batches[0]._fields == ("x",)
    np.testing.assert_array_equal(concat_batches(batches)["x"], np.arange(60, dtype=np.float32) / 2)


def test_schema_fields_matching_nothing_is_refused(pyarrow_store):
    with pytest.raises(PetastormSchemaError, match="nope"):
        make_batch_reader("file://" + str(pyarrow_store), schema_fields=["nope"])


def test_predicate_on_a_plain_store_keeps_matching_rows(pyarrow_store):
    batches, _ = read_batches("file://" + str(pyarrow_store), predicate=in_lambda(["id"], lambda i: i % 7 == 0),
                       shuffle_row_groups=False)
    cols = concat_batches(batches)
    np.testing.assert_array_equal(cols["id"], np.arange(0, 60, 7))
    assert cols["name"].tolist() == [f"n{i}" for i in range(0, 60, 7)]


def test_predicate_field_need_not_be_selected(pyarrow_store):
    batches, _ = read_batches("file://" + str(pyarrow_store), schema_fields=["name"], shuffle_row_groups=False,
                       predicate=in_set([3, 33], "id"))
    assert batches[0]._fields == ("name",)
    assert concat_batches(batches)["name"].tolist() == ["n3", "n33"]


@pytest.mark.parametrize("filters, expected", [
    ([("id", ">=", 55)], list(range(55, 60))),
    ([("id", "<", 3), ("name", "!=", "n1")], [0, 2]),
    ([[("id", "<", 2)], [("x", ">", 29.0)]], [0, 1, 59]),
    ([("name", "in", {"n4", "n44"})], [4, 44]),
])
def test_column_filters_on_a_plain_store(pyarrow_store, filters, expected):
    batches, _ = read_batches("file://" + str(pyarrow_store), filters=filters, shuffle_row_groups=False)
    assert concat_batches(batches)["id"].tolist() == expected


# --- pandas --------------------------------------------------------------------------------------------------

def _pandas_frame(start=0, n=6):
    ids = np.arange(start, start + n)
    return pd.DataFrame({
        "id": ids,
        "f": ids * 1.5,
        "s": [f"v{i}" for i in ids],
        "flag": ids % 2 == 0,
        "when": pd.to_datetime(ids, unit="s"),
        "cat": pd.Categorical(["lo" if i % 3 else "hi" for i in ids]),
        "maybe": pd.array([None if i % 4 == 0 else i for i in ids], dtype="Int32"),
    })


def _check_pandas_columns(cols, df):
    np.testing.assert_array_equal(cols["id"], df["id"].to_numpy())
    np.testing.assert_array_equal(cols["f"], df["f"].to_numpy())
    assert cols["s"].tolist() == df["s"].tolist()
    np.testing.assert_array_equal(cols["flag"], df["flag"].to_numpy())
    np.testing.assert_array_equal(cols["when"].astype("datetime64[ns]"), df["when"].to_numpy().astype("datetime64[ns]"))
    assert cols["cat"].tolist() == df["cat"].astype(str).tolist()
    assert [None if v is None else int(v) for v in cols["maybe"]] == \
        [None if pd.isna(v) else int(v) for v in df["maybe"]]


@pytest.mark.parametrize("index", [False, None], ids=["index=False", "default-range-index"])
def test_pandas_files_without_a_stored_index(tmp_path, index):
    frames = [_pandas_frame(0), _pandas_frame(6)]
    for i, df in enumerate(frames):
        df.to_parquet(tmp_path / f"p{i}.parquet", index=index)
    batches, schema = read_batches("file://" + str(tmp_path), shuffle_row_groups=False)
    assert list(schema.fields) == ["id", "f", "s", "flag", "when", "cat", "maybe"]
    _check_pandas_columns(concat_batches(batches), pd.concat(frames, ignore_index=True))


def test_pandas_file_with_a_named_index_reads_the_index_as_a_column(tmp_path):
    df = _pandas_frame().set_index(pd.Index([105, 100, 103, 101, 104, 102], name="row_key"))
    df.to_parquet(tmp_path / "p.parquet")
    batches, schema = read_batches("file://" + str(tmp_path))
    cols = concat_batches(batches)
    assert "row_key" in schema.fields
    np.testing.assert_array_equal(cols["row_key"], [105, 100, 103, 101, 104, 102])
    _check_pandas_columns(cols, df.reset_index(drop=True))


def test_pandas_file_with_an_unnamed_stored_index_reads(tmp_path):
    df = _pandas_frame()
    df.index = [55, 50, 53, 51, 54, 52]
    df.to_parquet(tmp_path / "p.parquet", index=True)
    batches, schema = read_batches("file://" + str(tmp_path))
    _check_pandas_columns(concat_batches(batches), df.reset_index(drop=True))


# --- Hive-partitioned directories (pyarrow writer) -------------------------------------------------------------

@pytest.fixture(scope="module")
def hive_store(tmp_path_factory):
    """year=<int>/city=<str>/ directories, 2 rows per leaf; ids 0..15."""
    root = tmp_path_factory.mktemp("hive")
    ids = np.arange(16)
    table = pa.table({"id": ids, "value": ids * 10.0,
                      "year": [2020 + (i % 2) for i in ids],
                      "city": [["paris", "new york", "a/b", "100%"][i // 2 % 4] for i in ids]})
    pq.write_to_dataset(table, str(root), partition_cols=["year", "city"])
    return root


def test_hive_partition_columns_appear_as_typed_columns(hive_store):
    batches, schema = read_batches("file://" + str(hive_store))
    assert set(schema.fields) == {"id", "value", "year", "city"}
    assert schema.fields["year"].numpy_dtype == np.int64  # int-looking values: an integer column
    assert schema.fields["city"].numpy_dtype == np.str_
    cols = _sorted_by(concat_batches(batches))
    np.testing.assert_array_equal(cols["id"], np.arange(16))
    np.testing.assert_array_equal(cols["value"], np.arange(16) * 10.0)
    assert cols["year"].dtype.kind == "i"
    np.testing.assert_array_equal(cols["year"], 2020 + np.arange(16) % 2)
    # escaped directory names ('new%20york', 'a%2Fb', '100%25') come back as written
    assert cols["city"].tolist() == [["paris", "new york", "a/b", "100%"][i // 2 % 4] for i in range(16)]


def test_hive_partition_column_alone_can_be_selected(hive_store):
    batches, _ = read_batches("file://" + str(hive_store), schema_fields=["city"])
    assert batches[0]._fields == ("city",)
    assert sorted(concat_batches(batches)["city"].tolist()) == sorted(["paris", "new york", "a/b", "100%"] * 4)


def test_hive_partitions_are_read_in_sorted_directory_order(hive_store):
    batches, _ = read_batches("file://" + str(hive_store), shuffle_row_groups=False)
    keys = [(int(b.year[0]), str(b.city[0])) for b in batches]
    # directory names sort as written: '100%25' < 'a%2Fb' < 'new%20york' < 'paris'
    cities = ["100%", "a/b", "new york", "paris"]
    assert keys == [(2020, c) for c in cities] + [(2021, c) for c in cities]


@pytest.mark.parametrize("filters, expected_ids", [
    ([("year", "=", 2021)], list(range(1, 16, 2))),
    ([("city", "=", "new york")], [2, 3, 10, 11]),
    ([("year", "=", 2020), ("city", "in", {"a/b", "100%"})], [4, 6, 12, 14]),
    ([[("city", "=", "paris")], [("year", ">", 2020), ("city", "=", "100%")]], [0, 1, 7, 8, 9, 15]),
    ([("year", "=", 2021), ("id", "<", 5)], [1, 3]),  # partition and column terms in one conjunction
    ([[("city", "=", "a/b")], [("value", ">=", 140.0)]], [4, 5, 12, 13, 14, 15]),
])
def test_filters_on_partition_and_data_columns(hive_store, filters, expected_ids):
    batches, _ = read_batches("file://" + str(hive_store), filters=filters)
    assert sorted(concat_batches(batches)["id"].tolist()) == expected_ids


@pytest.mark.parametrize("pool", ["thread", "process"])
def test_filters_as_a_pyarrow_expression_on_columns_outside_schema_fields(hive_store, pool):
    # pyarrow.parquet accepts an Expression as well as DNF; the columns it reads are found by binding it,
    # so a filter on a data column ('value') and a partition column ('year') that are not selected works
    import pyarrow.compute as pc

    expr = (pc.field("year") == 2021) | (pc.field("value") >= 140.0)
    dnf = [[("year", "=", 2021)], [("value", ">=", 140.0)]]
    got, schema = read_batches("file://" + str(hive_store), filters=expr, schema_fields=["id"], reader_pool_type=pool)
    want, _ = read_batches("file://" + str(hive_store), filters=dnf, schema_fields=["id"])
    assert list(schema.fields) == ["id"]
    assert sorted(concat_batches(got)["id"].tolist()) == sorted(concat_batches(want)["id"].tolist())
    assert sorted(concat_batches(got)["id"].tolist()) == [1, 3, 5, 7, 9, 11, 13, 14, 15]


def test_partition_only_expression_prunes_row_groups_and_a_bad_expression_names_the_columns(hive_store):
    import pyarrow.compute as pc

    batches, _ = read_batches("file://" + str(hive_store), filters=pc.field("city") == "new york")
    assert sorted(concat_batches(batches)["id"].tolist()) == [2, 3, 10, 11]
    with pytest.raises(PetastormArgumentError, match=r"(?s)filters expression.*no_such_column"):
        read_batches("file://" + str(hive_store), filters=pc.field("no_such_column") > 1)


def test_predicate_on_a_partition_column(hive_store):
    batches, _ = read_batches("file://" + str(hive_store), predicate=in_lambda(["year", "city"],
                                                                       lambda y, c: y == 2020 and c == "paris"))
    cols = _sorted_by(concat_batches(batches))
    assert cols["id"].tolist() == [0, 8]
    assert cols["city"].tolist() == ["paris", "paris"]


def test_hive_string_values_that_look_like_ints_in_only_some_directories_are_strings(tmp_path):
    table = pa.table({"id": [0, 1, 2], "part": ["7", "x", "8"]})
    pq.write_to_dataset(table, str(tmp_path), partition_cols=["part"])
    batches, schema = read_batches("file://" + str(tmp_path))
    assert schema.fields["part"].numpy_dtype == np.str_
    cols = _sorted_by(concat_batches(batches))
    assert cols["part"].tolist() == ["7", "x", "8"]


@pytest.mark.parametrize("value", ["1_000", "+7", " 7"])
def test_hive_values_that_python_int_parses_but_are_not_plain_digits_stay_strings(tmp_path, value):
    for i, v in enumerate([value, "2"]):
        os.makedirs(tmp_path / f"p={v}")
        pq.write_table(pa.table({"id": [i]}), tmp_path / f"p={v}" / "a.parquet")
    batches, schema = read_batches("file://" + str(tmp_path))
    cols = _sorted_by(concat_batches(batches))
    assert schema.fields["p"].numpy_dtype == np.str_
    assert cols["p"].tolist() == [value, "2"]


def test_negative_int_partition_values_are_ints(tmp_path):
    for i, v in enumerate(["-3", "4"]):
        os.makedirs(tmp_path / f"p={v}")
        pq.write_table(pa.table({"id": [i]}), tmp_path / f"p={v}" / "a.parquet")
    cols = _sorted_by(concat_batches(read_batches("file://" + str(tmp_path))[0]))
    assert cols["p"].tolist() == [-3, 4]


def test_hive_default_partition_is_a_null_value(tmp_path):
    table = pa.table({"id": [0, 1, 2, 3], "k": pa.array([1, None, 3, None], pa.int64())})
    pq.write_to_dataset(table, str(tmp_path), partition_cols=["k"])
    assert "k=__HIVE_DEFAULT_PARTITION__" in os.listdir(tmp_path)
    batches, schema = read_batches("file://" + str(tmp_path))
    cols = _sorted_by(concat_batches(batches))
    assert schema.fields["k"].numpy_dtype == np.int64
    assert [None if v is None else int(v) for v in cols["k"]] == [1, None, 3, None]


# --- stores whose files disagree -------------------------------------------------------------------------------

@pytest.mark.parametrize("pool", ["thread", "process"])
def test_a_file_missing_a_column_of_the_first_file_is_an_error_naming_file_and_column(tmp_path, pool):
    from petastorm.errors import PetastormError

    pq.write_table(pa.table({"id": [1, 2], "x": [1.0, 2.0]}), tmp_path / "a.parquet")
    pq.write_table(pa.table({"id": [3], "y": ["q"]}), tmp_path / "b.parquet")
    with pytest.raises(PetastormError) as info:
        read_batches("file://" + str(tmp_path), reader_pool_type=pool)
    assert "b.parquet" in str(info.value) and "'x'" in str(info.value)


def test_files_with_reordered_columns_read_by_name(tmp_path):
    pq.write_table(pa.table({"x": [1, 2], "id": [5, 6]}), tmp_path / "a.parquet")
    pq.write_table(pa.table({"id": [7], "x": [3]}), tmp_path / "b.parquet")
    cols = concat_batches(read_batches("file://" + str(tmp_path), shuffle_row_groups=False)[0])
    assert cols["id"].tolist() == [5, 6, 7] and cols["x"].tolist() == [1, 2, 3]


def test_a_non_parquet_file_in_the_store_is_an_error_naming_it(tmp_path):
    from petastorm.errors import PetastormDatasetError

    pq.write_table(pa.table({"id": [1, 2]}), tmp_path / "a.parquet")
    (tmp_path / "notes.txt").write_text("not parquet")
    with pytest.raises(PetastormDatasetError, match="notes.txt"):
        make_batch_reader("file://" + str(tmp_path))


def test_spark_and_hidden_side_files_are_ignored(tmp_path):
    pq.write_table(pa.table({"id": [1, 2]}), tmp_path / "part-0.parquet")
    for name in ["_SUCCESS", "._SUCCESS.crc", ".part-0.parquet.crc", "_common_metadata_not", ".hidden.parquet"]:
        (tmp_path / name).write_bytes(b"junk")
    (tmp_path / "_temporary").mkdir()
    (tmp_path / "_temporary" / "part-9.parquet").write_bytes(b"junk")
    cols = concat_batches(read_batches("file://" + str(tmp_path))[0])
    assert cols["id"].tolist() == [1, 2]


# --- Spark-written stores ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def spark_store(spark_session, tmp_path_factory):
    """A Spark DataFrame written with df.write.parquet (3 files), and the rows as Python values."""
    from pyspark.sql import Row
    from pyspark.sql import types as T

    schema = T.StructType([
        T.StructField("id", T.LongType(), False),
        T.StructField("small", T.ShortType(), True),
        T.StructField("i", T.IntegerType(), True),
        T.StructField("f", T.FloatType(), True),
        T.StructField("d", T.DoubleType(), True),
        T.StructField("s", T.StringType(), True),
        T.StructField("b", T.BooleanType(), True),
        T.StructField("bin", T.BinaryType(), True),
        T.StructField("dec", T.DecimalType(10, 3), True),
        T.StructField("day", T.DateType(), True),
        T.StructField("ts", T.TimestampType(), True),
        T.StructField("arr", T.ArrayType(T.IntegerType()), True),
        T.StructField("arr2", T.ArrayType(T.ArrayType(T.DoubleType())), True),
    ])
    rows = []
    for i in range(12):
        null = i % 5 == 4
        rows.append(Row(
            id=i, small=None if null else i - 6, i=None if null else i * 1000, f=None if null else i / 4,
            d=None if null else i / 3, s=None if null else f"str{i}", b=None if null else i % 2 == 0,
            bin=None if null else bytes([i, 1]), dec=None if null else Decimal(i) / Decimal(8),
            day=None if null else datetime.date(2021, 1, 1 + i),
            ts=None if null else datetime.datetime(2021, 1, 1, 12, i, 30, 250000, tzinfo=datetime.timezone.utc),
            arr=None if null else list(range(i % 3)), arr2=None if null else [[float(i)], [], [1.0, 2.0]]))
    path = str(tmp_path_factory.mktemp("spark") / "plain")
    spark_session.conf.set("spark.sql.session.timeZone", "UTC")
    spark_session.createDataFrame(rows, schema).repartition(3).write.parquet("file://" + path)
    return path, rows


def test_spark_written_store_round_trips_every_column(spark_store):
    path, rows = spark_store
    assert any(name.startswith("_SUCCESS") for name in os.listdir(path))
    batches, schema = read_batches("file://" + path)
    cols = _sorted_by(concat_batches(batches))
    assert set(schema.fields) == set(rows[0].asDict())
    assert cols["id"].tolist() == list(range(12))
    for name in ["small", "i", "s", "b", "bin", "dec"]:
        assert [None if v is None else v for v in cols[name].tolist()] == [getattr(r, name) for r in rows], name
    for name in ["f", "d"]:  # floats with NaN for the nulls, as 0.12.1 gave them
        expected = [getattr(r, name) for r in rows]
        assert cols[name].dtype.kind == "f", name
        assert np.isnan(cols[name]).tolist() == [e is None for e in expected], name
        np.testing.assert_allclose(cols[name][~np.isnan(cols[name])], [e for e in expected if e is not None],
                                   rtol=1e-6)
    assert cols["day"].dtype == object  # datetime.date objects (None for nulls), as the original gives
    assert cols["day"].tolist() == [r.day for r in rows]
    assert cols["ts"].dtype.kind == "M"
    expected_ts = [None if r.ts is None else np.datetime64(r.ts.replace(tzinfo=None), "us") for r in rows]
    assert [None if np.isnat(v) else v.astype("datetime64[us]") for v in cols["ts"]] == expected_ts
    assert [None if v is None else v.tolist() for v in cols["arr"]] == [r.arr for r in rows]
    assert [None if v is None else [x.tolist() for x in v] for v in cols["arr2"]] == [r.arr2 for r in rows]
    assert schema.fields["arr"].shape == (None,) and schema.fields["arr2"].shape == (None, None)
    assert schema.fields["dec"].numpy_dtype == Decimal and schema.fields["small"].numpy_dtype == np.int16


def test_spark_partition_by_directories_read_with_partition_columns(spark_session, tmp_path):
    df = spark_session.createDataFrame([(i, i % 3, ["x", "y z"][i % 2], i * 0.5) for i in range(12)],
                                       "id long, bucket int, tag string, v double")
    path = str(tmp_path / "parts")
    df.write.partitionBy("bucket", "tag").parquet("file://" + path)
    assert "_SUCCESS" in os.listdir(path) and "bucket=0" in os.listdir(path)
    batches, schema = read_batches("file://" + path)
    assert set(schema.fields) == {"id", "v", "bucket", "tag"}
    cols = _sorted_by(concat_batches(batches))
    assert cols["id"].tolist() == list(range(12))
    np.testing.assert_array_equal(cols["bucket"], np.arange(12) % 3)
    assert cols["tag"].tolist() == [["x", "y z"][i % 2] for i in range(12)]
    np.testing.assert_array_equal(cols["v"], np.arange(12) * 0.5)
    batches, _ = read_batches("file://" + path, filters=[("bucket", "=", 1), ("tag", "=", "y z")])
    assert sorted(concat_batches(batches)["id"].tolist()) == [1, 7]


def test_spark_partition_by_a_column_with_nulls(spark_session, tmp_path):
    df = spark_session.createDataFrame([(0, 1), (1, None), (2, 2)], "id long, grp int")
    path = str(tmp_path / "nullparts")
    df.write.partitionBy("grp").parquet("file://" + path)
    cols = _sorted_by(concat_batches(read_batches("file://" + path)[0]))
    assert [None if v is None else int(v) for v in cols["grp"]] == [1, None, 2]
