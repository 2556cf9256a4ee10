"""make_spark_converter: the cache-dir conf, the plan-keyed cache, conversions, delete, pickling, paths.

Expected values marked "recorded" were observed on petastorm 0.12.1 with pyspark 3.5.9 (black-box runs).
"""
import logging
import os
import pickle
import re
import subprocess
import sys
import textwrap

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _fixtures.spark import mixed_types_dataframe

from petastorm.spark import SparkDatasetConverter, make_spark_converter
from petastorm.spark import spark_dataset_converter as sdc
from petastorm.spark.cache_dir import new_cache_dir_url, normalize_cache_dir_url

CONF = "petastorm.spark.converter.parentCacheDirUrl"
LOGGER = "petastorm.spark.spark_dataset_converter"


def _path(url):
    assert url.startswith("file://")
    return url[len("file://"):]


@pytest.fixture(scope="module", autouse=True)
def parent_dir(spark_session, tmp_path_factory):
    parent = tmp_path_factory.mktemp("converter-cache")
    spark_session.conf.set(CONF, "file://" + str(parent))
    yield str(parent)
    spark_session.conf.unset(CONF)


@pytest.fixture()
def conf(spark_session, parent_dir):
    """Restore the module's conf after a test that changes it."""
    yield spark_session.conf
    spark_session.conf.set(CONF, "file://" + parent_dir)


@pytest.fixture(scope="module")
def mixed_df(spark_session, parent_dir):
    return mixed_types_dataframe(spark_session, 50, "s")


# ---- the cache-dir conf ------------------------------------------------------------------------------------

def test_conf_name_is_the_originals():
    assert SparkDatasetConverter.PARENT_CACHE_DIR_URL_CONF == CONF  # recorded


def test_without_the_conf_the_original_message(spark_session, conf):
    conf.unset(CONF)
    with pytest.raises(ValueError, match=r"^Please set the spark config "
                                         r"petastorm\.spark\.converter\.parentCacheDirUrl\.$"):  # recorded
        make_spark_converter(spark_session.range(3))


@pytest.mark.parametrize("url", ["/tmp/x", "relative/dir"])
def test_scheme_less_url_the_original_message(spark_session, conf, url):
    conf.set(CONF, url)
    expected = (f'ERROR! A scheme-less directory url ({url}) is no longer supported. '
                f'Please prepend "file://" for local filesystem.')  # recorded
    with pytest.raises(ValueError) as info:
        make_spark_converter(spark_session.range(3))
    assert str(info.value) == expected


def test_relative_file_url_refused(spark_session, conf):
    conf.set(CONF, "file:tmp")  # 0.12.1 silently cached under file:///tmp
    with pytest.raises(ValueError, match="file:tmp is not an absolute local path"):
        make_spark_converter(spark_session.range(3))


def test_cache_dir_url_forms_normalised():
    assert normalize_cache_dir_url("dbfs:/tmp/cache") == "file:///dbfs/tmp/cache"
    assert normalize_cache_dir_url("dbfs:///tmp/cache/") == "file:///dbfs/tmp/cache"
    assert normalize_cache_dir_url("file:/tmp/cache") == "file:///tmp/cache"  # recorded: file:/ accepted
    assert normalize_cache_dir_url("file:///tmp/cache/") == "file:///tmp/cache"
    assert normalize_cache_dir_url("hdfs://nn:8020/cache/") == "hdfs://nn:8020/cache"
    # recorded: a root parent (file:///) is accepted, the cache dir sits right under it
    assert re.fullmatch(r"file:///\d{14}-appid-app-1-[0-9a-f-]{36}",
                        new_cache_dir_url(normalize_cache_dir_url("file:///"), "app-1"))


def test_single_slash_file_url_is_accepted(spark_session, conf, parent_dir):
    conf.set(CONF, "file:" + parent_dir)
    converter = make_spark_converter(spark_session.range(4).selectExpr("id * 7 as x"))
    assert converter.cache_dir_url.startswith("file://" + parent_dir + "/")  # recorded: file:///... form


# ---- what a converter holds ------------------------------------------------------------------------------

@pytest.mark.slow  # several Spark writes
def test_cache_dir_naming_len_and_files(spark_session, mixed_df, parent_dir):
    converter = make_spark_converter(mixed_df)
    app_id = spark_session.sparkContext.applicationId
    # recorded: <parent>/<YYYYmmddHHMMSS>-appid-<application id>-<uuid4>
    assert re.fullmatch(re.escape("file://" + parent_dir) + r"/\d{14}-appid-" + re.escape(app_id)
                        + r"-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", converter.cache_dir_url)
    assert len(converter) == converter.dataset_size == 50  # recorded
    assert len(converter.file_urls) == 2
    for url in converter.file_urls:  # recorded: only the part files, as file:/// URLs
        assert url.startswith(converter.cache_dir_url + "/part-") and url.endswith(".parquet")
        assert os.path.isfile(_path(url))
    assert pq.read_table(_path(converter.cache_dir_url)).num_rows == 50


def test_cached_schema_floats_to_float32_and_vectors_to_arrays(mixed_df):
    converter = make_spark_converter(mixed_df)
    schema = pq.read_schema(_path(converter.file_urls[0]))
    # recorded from 0.12.1
    assert schema.field("id").type == pa.int64()
    assert schema.field("d").type == pa.float32()
    assert schema.field("f").type == pa.float32()
    assert schema.field("arr").type.value_type == pa.float32()
    assert schema.field("iarr").type.value_type == pa.int32()
    assert schema.field("vec").type.value_type == pa.float32()
    assert schema.field("svec").type.value_type == pa.float32()
    assert schema.field("s").type == pa.string()
    vec = pq.read_table(_path(converter.cache_dir_url)).sort_by("id").column("svec").to_pylist()
    assert vec[3] == [3.0, 0.0, 0.0]  # a sparse vector becomes its dense array


@pytest.mark.slow  # several Spark writes
def test_dtype_float64_and_none(mixed_df):
    wide = pq.read_schema(_path(make_spark_converter(mixed_df, dtype="float64").file_urls[0]))
    assert wide.field("f").type == pa.float64()  # recorded: float -> double
    assert wide.field("vec").type.value_type == pa.float64()
    kept = pq.read_schema(_path(make_spark_converter(mixed_df, dtype=None).file_urls[0]))
    assert kept.field("d").type == pa.float64() and kept.field("f").type == pa.float32()  # recorded
    assert kept.field("vec").type.value_type == pa.float64()  # 0.12.1 failed on vectors with dtype=None


def test_bad_dtype_named(mixed_df):
    with pytest.raises(ValueError, match=r"dtype must be 'float32', 'float64' or None, got 'int32'"):
        make_spark_converter(mixed_df, dtype="int32")


def test_compression_codec(mixed_df):
    plain = make_spark_converter(mixed_df)
    first_column = pq.ParquetFile(_path(plain.file_urls[0])).metadata.row_group(0).column(0)
    assert first_column.compression == "UNCOMPRESSED"  # recorded: None writes uncompressed files
    snappy = make_spark_converter(mixed_df, compression_codec="snappy")
    assert snappy.cache_dir_url != plain.cache_dir_url  # recorded
    assert pq.ParquetFile(_path(snappy.file_urls[0])).metadata.row_group(0).column(0).compression == "SNAPPY"
    # recorded: RuntimeError "compression_codec should be None or one of the following values: ..."
    with pytest.raises(RuntimeError, match=r"compression_codec should be None or one of the following values: "
                                           r".*'snappy'.*got 'nope'"):
        make_spark_converter(mixed_df, compression_codec="nope")


def test_row_group_size_reaches_the_writer(spark_session):
    df = spark_session.range(20000).coalesce(1).selectExpr("id", "id * 3 as y")
    small = make_spark_converter(df, parquet_row_group_size_bytes=16 * 1024)
    assert pq.ParquetFile(_path(small.file_urls[0])).metadata.num_row_groups > 1
    default = make_spark_converter(df)
    assert pq.ParquetFile(_path(default.file_urls[0])).metadata.num_row_groups == 1
    with pytest.raises(ValueError, match="parquet_row_group_size_bytes must be a positive integer"):
        make_spark_converter(df, parquet_row_group_size_bytes=0)


@pytest.mark.parametrize("ddl, column_type", [
    ("id long, m map<string,int>", "map<string,int>"),
    ("id long, m struct<x:int>", "struct<x:int>"),
    ("id long, m array<struct<x:int>>", "array<struct<x:int>>"),
])
def test_unsupported_column_type_named(spark_session, ddl, column_type):
    df = spark_session.createDataFrame([], ddl)
    with pytest.raises(TypeError, match=re.escape(f"column 'm' has the unsupported type {column_type}")):
        make_spark_converter(df)


def test_other_column_types_are_cached(spark_session):
    import datetime
    import decimal

    df = spark_session.createDataFrame(
        [(1, datetime.date(2020, 1, 2), decimal.Decimal("1.50"), bytearray(b"ab"), [[1.0, 2.0]], ["a"])],
        "id long, day date, price decimal(10,2), raw binary, nested array<array<double>>, tags array<string>")
    schema = pq.read_schema(_path(make_spark_converter(df).file_urls[0]))  # recorded: all accepted
    assert schema.field("day").type == pa.date32()
    assert schema.field("price").type == pa.decimal128(10, 2)
    assert schema.field("nested").type.value_type.value_type == pa.float32()


def test_not_a_dataframe(parent_dir):
    with pytest.raises(TypeError, match="df must be a pyspark DataFrame or the URL of a saved Parquet store, got int"):
        make_spark_converter(42)


# ---- the cache ---------------------------------------------------------------------------------------------

@pytest.mark.slow  # several Spark writes
def test_same_dataframe_cached_once_changed_one_again(spark_session, mixed_df):
    first = make_spark_converter(mixed_df)
    assert make_spark_converter(mixed_df).cache_dir_url == first.cache_dir_url  # recorded
    filtered = make_spark_converter(mixed_df.filter("id > 3"))
    assert filtered.cache_dir_url != first.cache_dir_url and len(filtered) == 46  # recorded
    # the same plan built twice is the same DataFrame (recorded: reused)
    a = make_spark_converter(spark_session.range(10).filter("id > 2"))
    b = make_spark_converter(spark_session.range(10).filter("id > 2"))
    assert a.cache_dir_url == b.cache_dir_url and len(a) == 7
    # every setting is part of the key (recorded)
    urls = {first.cache_dir_url, make_spark_converter(mixed_df, parquet_row_group_size_bytes=1 << 20).cache_dir_url,
            make_spark_converter(mixed_df, dtype="float64").cache_dir_url}
    assert len(urls) == 3


def test_removed_cache_dir_is_written_again(spark_session):
    import shutil

    df = spark_session.range(5).selectExpr("id * 11 as z")
    first = make_spark_converter(df)
    shutil.rmtree(_path(first.cache_dir_url))
    again = make_spark_converter(df)
    assert again.cache_dir_url != first.cache_dir_url and os.path.isdir(_path(again.cache_dir_url))


def test_delete_removes_the_files_and_the_cache_entry(spark_session):
    df = spark_session.range(6).selectExpr("id * 13 as z")
    converter = make_spark_converter(df)
    assert os.path.isdir(_path(converter.cache_dir_url))
    converter.delete()
    assert not os.path.exists(_path(converter.cache_dir_url))  # recorded
    converter.delete()  # recorded: a second delete() is not an error
    again = make_spark_converter(df)
    assert again.cache_dir_url != converter.cache_dir_url  # recorded: written again after delete()
    assert os.path.isdir(_path(again.cache_dir_url))


def test_register_delete_dir_handler(spark_session):
    converter = make_spark_converter(spark_session.range(7).selectExpr("id * 17 as z"))
    calls = []
    sdc.register_delete_dir_handler(calls.append)
    try:
        converter.delete()
    finally:
        sdc.register_delete_dir_handler(None)
    assert calls == [converter.cache_dir_url]  # recorded: the handler gets the URL, instead of removing it
    assert os.path.isdir(_path(converter.cache_dir_url))
    with pytest.raises(TypeError, match="handler must be callable or None, got 42"):
        sdc.register_delete_dir_handler(42)  # 0.12.1 accepted it and failed at exit
    converter.delete()
    assert not os.path.exists(_path(converter.cache_dir_url))


def test_cache_dirs_are_removed_at_interpreter_exit(tmp_path):
    """The exit clean-up, in a child interpreter (no Spark there: it removes what was remembered)."""
    cache = tmp_path / "made-by-child"
    code = textwrap.dedent(f"""
        import os
        from petastorm.spark.cache_dir import remember_for_exit
        os.makedirs({str(cache)!r} + "/part")
        remember_for_exit("file://" + {str(cache)!r})
        assert os.path.isdir({str(cache)!r})
    """)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    assert not cache.exists()  # recorded: 0.12.1 removed its cache dirs at exit


def test_converter_pickles(mixed_df):
    converter = make_spark_converter(mixed_df)
    copy = pickle.loads(pickle.dumps(converter))
    assert (copy.cache_dir_url, copy.file_urls, copy.dataset_size, len(copy)) == (
        converter.cache_dir_url, converter.file_urls, converter.dataset_size, 50)  # recorded


def test_small_files_warning(spark_session, caplog):
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        converter = make_spark_converter(spark_session.range(8).selectExpr("id * 19 as z"))
    messages = [r.getMessage() for r in caplog.records if "too small" in r.getMessage()]
    # recorded wording from 0.12.1
    assert len(messages) == 1 and re.fullmatch(
        r"The median size \d+ B \(< 50 MB\) of the parquet files is too small\. Total size: \d+ B\. Increase the "
        r"median file size by calling df\.repartition\(n\) or df\.coalesce\(n\), which might help improve the "
        r"performance\. Parquet files: " + re.escape(converter.file_urls[0]) + r", \.\.\.", messages[0])


# ---- a converter from a saved Parquet store ---------------------------------------------------------------

def test_converter_from_a_saved_path_in_place(spark_session, parent_dir, tmp_path):
    url = "file://" + str(tmp_path / "saved")
    spark_session.range(30).selectExpr("id", "cast(id as float) as f").coalesce(2).write.parquet(url)
    converter = make_spark_converter(url)  # (0.12.1 accepted only DataFrames)
    assert converter.cache_dir_url == url and len(converter) == 30
    assert all(u.startswith(url + "/part-") for u in converter.file_urls)
    converter.delete()  # the user's store is read in place: delete() keeps it
    assert os.path.isdir(str(tmp_path / "saved"))


def test_converter_from_a_saved_path_needing_conversion(spark_session, parent_dir, tmp_path):
    url = "file://" + str(tmp_path / "saved-doubles")
    spark_session.range(12).selectExpr("id", "cast(id as double) as d").write.parquet(url)
    converter = make_spark_converter(url)
    assert converter.cache_dir_url.startswith("file://" + parent_dir + "/") and len(converter) == 12
    assert pq.read_schema(_path(converter.file_urls[0])).field("d").type == pa.float32()
    converter.delete()
    assert os.path.isdir(str(tmp_path / "saved-doubles"))


def test_converter_from_a_missing_path_names_it(spark_session, parent_dir, tmp_path):
    url = "file://" + str(tmp_path / "never-written")
    with pytest.raises(Exception, match="never-written"):
        make_spark_converter(url)


def test_empty_dataframe(spark_session):
    converter = make_spark_converter(spark_session.range(10).filter("id > 100").selectExpr("id * 23 as z"))
    assert len(converter) == 0 and converter.file_urls  # recorded: 0 rows, one (empty) Parquet file
    with converter.make_torch_dataloader(batch_size=4, num_epochs=1) as loader:
        assert list(loader) == []


def test_column_names_with_dots_and_spaces(spark_session):
    df = spark_session.range(3).selectExpr("id", "cast(id as double) as `a.b`", "cast(id as double) as `c d`")
    schema = pq.read_schema(_path(make_spark_converter(df).file_urls[0]))
    assert schema.field("a.b").type == pa.float32() and schema.field("c d").type == pa.float32()


def test_concurrent_conversions_of_one_dataframe_share_one_cache(spark_session):
    from concurrent.futures import ThreadPoolExecutor

    df = spark_session.range(9).selectExpr("id * 29 as z")
    with ThreadPoolExecutor(2) as pool:
        urls = list(pool.map(lambda _: make_spark_converter(df).cache_dir_url, range(2)))
    assert urls[0] == urls[1]
