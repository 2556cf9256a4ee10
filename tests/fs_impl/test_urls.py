"""URL forms through the readers: ``#`` and ``?`` in local and S3 paths, prefixes of other keys, lists of URLs, and
the errors for schemes whose package or cluster is missing.

Recorded from 0.12.1 (black box): ``make_batch_reader('gs://bucket/ds')`` without gcsfs raised
``ImportError: Please install gcsfs to access Google Storage`` (abfs: ``ImportError: Install adlfs ...``);
``hdfs://nn:8020/...`` without Hadoop raised ``FileNotFoundError`` (an ``OSError``); ``file:///.../hash#x`` raised
``OSError: Passed non-file path: .../hash`` (the URL cut at ``#``), and read ``.../hash`` when that existed.
"""
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from petastorm import make_batch_reader, make_reader
from petastorm.errors import PetastormFilesystemError


def _write(path_or_key, start, filesystem=None, files=2):
    for i in range(files):
        ids = np.arange(start + 5 * i, start + 5 * i + 5, dtype=np.int64)
        pq.write_table(pa.table({"id": ids}), f"{path_or_key}/part-{i}.parquet", filesystem=filesystem)


def _ids(url, **kwargs):
    with make_batch_reader(url, reader_pool_type="dummy", shuffle_row_groups=False, **kwargs) as reader:
        return sorted(int(x) for batch in reader for x in batch.id)


@pytest.mark.parametrize("name", ["run#2", "q?x=1", "both?a#b"])
def test_file_url_keeps_hash_and_question_mark_of_the_path(tmp_path, name):
    (tmp_path / name).mkdir()
    _write(str(tmp_path / name), 100)
    # the sibling the URL used to be cut to must not be read instead
    cut = name.split("#")[0].split("?")[0]
    (tmp_path / cut).mkdir()
    _write(str(tmp_path / cut), 0)
    assert _ids(f"file://{tmp_path}/{name}") == list(range(100, 110))
    assert _ids(str(tmp_path / name)) == list(range(100, 110))


def test_file_url_list_with_hash_in_a_file_name(tmp_path):
    _write(str(tmp_path), 0)
    (tmp_path / "part-1.parquet").rename(tmp_path / "part#1.parquet")
    urls = [f"file://{tmp_path}/part-0.parquet", f"file://{tmp_path}/part#1.parquet"]
    assert _ids(urls) == list(range(10))


@pytest.fixture(scope="module")
def s3_keys(s3_server):
    bucket = s3_server.make_bucket()
    fs = s3_server.pyarrow_filesystem()
    for key, start in (("ds", 0), ("ds2", 100), ("h#x", 200), ("q?y", 300), ("sp ace", 400)):
        _write(f"{bucket}/{key}", start, filesystem=fs)
    return bucket


@pytest.mark.parametrize("key, start", [("h#x", 200), ("q?y", 300), ("sp ace", 400)])
@pytest.mark.parametrize("client", ["pyarrow", "s3fs"])
def test_s3_keys_with_hash_question_mark_and_space(s3_server, s3_keys, key, start, client):
    options = dict(s3_server.storage_options)
    if client == "s3fs":
        options["skip_instance_cache"] = True  # an option pyarrow's S3 lacks: s3fs is used
    assert _ids(f"s3://{s3_keys}/{key}", storage_options=options) == list(range(start, start + 10))


def test_s3_key_that_is_a_prefix_of_another_reads_only_its_own_rows(s3_server, s3_keys):
    assert _ids(f"s3://{s3_keys}/ds", storage_options=s3_server.storage_options) == list(range(10))
    assert _ids(f"s3://{s3_keys}/ds/", storage_options=s3_server.storage_options) == list(range(10))
    assert _ids(f"s3://{s3_keys}/ds2", storage_options=s3_server.storage_options) == list(range(100, 110))
    with pytest.raises(FileNotFoundError, match=f"s3://{s3_keys}/d'"):
        _ids(f"s3://{s3_keys}/d", storage_options=s3_server.storage_options)


def test_s3_list_of_urls_across_prefixes(s3_server, s3_keys):
    urls = [f"s3://{s3_keys}/ds/part-0.parquet", f"s3://{s3_keys}/ds2/part-1.parquet",
            f"s3://{s3_keys}/h#x/part-0.parquet"]
    assert _ids(urls, storage_options=s3_server.storage_options) == (
        list(range(5)) + list(range(105, 110)) + list(range(200, 205)))


@pytest.mark.parametrize("url, package", [
    ("gs://bucket/ds", "gcsfs"), ("gcs://bucket/ds", "gcsfs"),
    ("abfs://c@acct.dfs.core.windows.net/ds", "adlfs"), ("abfss://c@acct.dfs.core.windows.net/ds", "adlfs"),
    ("az://c/ds", "adlfs")])
@pytest.mark.parametrize("factory", [make_batch_reader, make_reader])
def test_missing_driver_is_an_import_error_naming_the_package_and_url(url, package, factory):
    with pytest.raises(ImportError, match=f"pip install {package}") as info:
        factory(url, reader_pool_type="dummy")
    assert url in str(info.value)
    assert isinstance(info.value, PetastormFilesystemError)  # and a ValueError, as before


@pytest.mark.parametrize("url", ["hdfs://nn:8020/data/ds", "hdfs:///data/ds"])
def test_hdfs_without_a_cluster_is_an_os_error_naming_the_url(url):
    with pytest.raises(OSError, match="cannot open HDFS") as info:
        make_batch_reader(url, reader_pool_type="dummy")
    assert url in str(info.value)
    assert "HADOOP_HOME" in str(info.value)


def test_list_mixing_plain_paths_and_file_urls_reads_every_file(tmp_path, monkeypatch):
    """All local: a plain path (absolute or relative), ``file:///`` and ``file://localhost/`` in one list. 0.12.1
    refused plain paths altogether; we used to refuse the mix ('same scheme and netloc')."""
    _write(str(tmp_path), 0, files=4)
    monkeypatch.chdir(tmp_path)
    urls = [f"file://{tmp_path}/part-0.parquet", str(tmp_path / "part-1.parquet"), "part-2.parquet",
            f"file://localhost{tmp_path}/part-3.parquet"]
    assert _ids(urls) == list(range(20))


def test_list_mixing_local_and_s3_is_refused_naming_both():
    with pytest.raises(PetastormFilesystemError, match="same scheme and netloc.*'/data/a.parquet'.*s3://b/x"):
        make_batch_reader(["/data/a.parquet", "s3://b/x.parquet"], reader_pool_type="dummy")


def test_hdfs_second_attempt_still_says_why_libhdfs_did_not_load():
    """pyarrow loads libhdfs once per process and later says only 'Prior attempt to load libhdfs failed'."""
    messages = []
    for _ in range(2):
        with pytest.raises(OSError) as info:
            make_batch_reader("hdfs://nn:8020/data/ds", reader_pool_type="dummy")
        messages.append(str(info.value))
    assert "Unable to load" in messages[1] and "Prior attempt" not in messages[1]
