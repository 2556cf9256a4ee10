"""Parquet round trips on a real S3-protocol server (moto on 127.0.0.1) through fs_utils' resolution."""
import multiprocessing
import pickle
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from petastorm.errors import PetastormFilesystemError
from petastorm.fs_utils import FilesystemResolver, get_filesystem_and_path_or_paths

TABLE = pa.table({"id": np.arange(20, dtype=np.int64), "value": np.linspace(0, 1, 20)})


def _write_dataset(s3_server, bucket, prefix, n_files=2):
    """Write ``n_files`` Parquet files splitting TABLE under ``bucket/prefix`` and return their keys."""
    fs = s3_server.pyarrow_filesystem()
    keys = []
    rows = TABLE.num_rows // n_files
    for i in range(n_files):
        key = f"{bucket}/{prefix}/part-{i}.parquet"
        pq.write_table(TABLE.slice(i * rows, rows), key, filesystem=fs)
        keys.append(key)
    return keys


def _read_sorted(path, fs):
    return pads.dataset(path, filesystem=fs, format="parquet").to_table().sort_by("id")


def _write_through(fs, path, s3_server, bucket):
    """Write TABLE through ``fs`` as ``path/part-0.parquet`` and check that it really is on the server in
    ``bucket/ds`` (read back through an independently built filesystem)."""
    pq.write_table(TABLE, f"{path}/part-0.parquet", filesystem=fs)
    assert _read_sorted(f"{bucket}/ds", s3_server.pyarrow_filesystem()).equals(TABLE)


def test_storage_options_round_trip_through_pyarrow_s3(s3_server):
    bucket = s3_server.make_bucket()
    fs, path = get_filesystem_and_path_or_paths(f"s3://{bucket}/ds/", storage_options=s3_server.storage_options)
    assert isinstance(fs, pafs.S3FileSystem)
    assert path == f"{bucket}/ds"
    _write_through(fs, path, s3_server, bucket)
    assert _read_sorted(path, fs).equals(TABLE)


def test_top_level_endpoint_url_and_region_keys_reach_the_server(s3_server):
    bucket = s3_server.make_bucket()
    _write_dataset(s3_server, bucket, "ds")
    fs, path = get_filesystem_and_path_or_paths(
        f"s3://{bucket}/ds", storage_options={"key": s3_server.access_key, "secret": s3_server.secret_key,
                                              "endpoint_url": s3_server.endpoint_url,
                                              "region": s3_server.region})
    assert _read_sorted(path, fs).equals(TABLE)


def test_s3fs_only_storage_options_round_trip_through_s3fs(s3_server):
    bucket = s3_server.make_bucket()
    options = dict(s3_server.storage_options, use_listings_cache=False)
    fs, path = get_filesystem_and_path_or_paths(f"s3://{bucket}/ds", storage_options=options)
    assert isinstance(fs, pafs.PyFileSystem) and isinstance(fs.handler, pafs.FSSpecHandler)
    _write_through(fs, path, s3_server, bucket)
    assert _read_sorted(path, fs).equals(TABLE)


def test_given_pyarrow_s3_filesystem_round_trip(s3_server):
    bucket = s3_server.make_bucket()
    _write_dataset(s3_server, bucket, "ds")
    given = s3_server.pyarrow_filesystem()
    fs, path = get_filesystem_and_path_or_paths(f"s3://{bucket}/ds", filesystem=given)
    assert fs is given and path == f"{bucket}/ds"
    assert _read_sorted(path, fs).equals(TABLE)


def test_given_s3fs_filesystem_round_trip(s3_server):
    import s3fs

    bucket = s3_server.make_bucket()
    given = s3fs.S3FileSystem(**s3_server.storage_options, skip_instance_cache=True)
    fs, path = get_filesystem_and_path_or_paths(f"s3://{bucket}/ds", filesystem=given)
    assert isinstance(fs, pafs.PyFileSystem) and fs.handler.fs is given
    assert path == f"{bucket}/ds"
    _write_through(fs, path, s3_server, bucket)
    given.invalidate_cache()
    assert _read_sorted(path, fs).equals(TABLE)


@pytest.mark.parametrize("scheme", ["s3a", "s3n"])
def test_hadoop_style_s3_schemes_read_the_same_objects(s3_server, scheme):
    bucket = s3_server.make_bucket()
    _write_dataset(s3_server, bucket, "ds")
    fs, path = get_filesystem_and_path_or_paths(f"{scheme}://{bucket}/ds", storage_options=s3_server.storage_options)
    assert _read_sorted(path, fs).equals(TABLE)


def test_list_of_s3_file_urls_reads_each_file(s3_server):
    bucket = s3_server.make_bucket()
    keys = _write_dataset(s3_server, bucket, "ds", n_files=4)
    urls = [f"s3://{key}" for key in reversed(keys)]
    fs, paths = get_filesystem_and_path_or_paths(urls, storage_options=s3_server.storage_options)
    assert paths == list(reversed(keys))
    first_ids = [pq.read_table(p, filesystem=fs)["id"][0].as_py() for p in paths]
    assert first_ids == [15, 10, 5, 0]


def test_list_of_urls_across_buckets_is_refused(s3_server):
    with pytest.raises(PetastormFilesystemError, match="same scheme and netloc"):
        get_filesystem_and_path_or_paths(["s3://one/a.parquet", "s3://two/b.parquet"],
                                         storage_options=s3_server.storage_options)


def _read_ids_in_child(factory_bytes, path):
    factory = pickle.loads(factory_bytes)
    return sorted(pads.dataset(path, filesystem=factory(), format="parquet").to_table()["id"].to_pylist())


@pytest.mark.parametrize("extra", [{}, {"use_listings_cache": False}], ids=["pyarrow-s3", "s3fs"])
def test_filesystem_factory_recreates_the_s3_filesystem_in_another_process(s3_server, extra):
    bucket = s3_server.make_bucket()
    _write_dataset(s3_server, bucket, "ds")
    resolver = FilesystemResolver(f"s3://{bucket}/ds", storage_options=dict(s3_server.storage_options, **extra))
    payload = pickle.dumps(resolver.filesystem_factory())
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        ids = pool.submit(_read_ids_in_child, payload, resolver.get_dataset_path()).result(timeout=120)
    assert ids == list(range(20))


# -- the reader on S3 (more in test_reader_s3.py) -------------------------------------------------------------

@pytest.mark.parametrize("how", ["storage_options", "filesystem"])
def test_make_batch_reader_reads_a_parquet_store_on_s3(s3_server, how):
    from petastorm import make_batch_reader

    bucket = s3_server.make_bucket()
    _write_dataset(s3_server, bucket, "ds")
    kwargs = ({"storage_options": s3_server.storage_options} if how == "storage_options"
              else {"filesystem": s3_server.pyarrow_filesystem()})
    with make_batch_reader(f"s3://{bucket}/ds", reader_pool_type="thread", workers_count=1,
                           num_epochs=1, **kwargs) as reader:
        batches = list(reader)
    ids = np.sort(np.concatenate([batch.id for batch in batches]))
    values = np.concatenate([batch.value for batch in batches])
    np.testing.assert_array_equal(ids, np.arange(20))
    np.testing.assert_allclose(np.sort(values), np.linspace(0, 1, 20))
