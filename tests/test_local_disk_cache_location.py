"""``cache_location`` given as a URL.

Recorded from 0.12.1 (black box, a script run in an empty working directory):
``cache_location='file:///tmp/.../cache'`` made a directory ``file:`` under the working directory and failed with
``sqlite3.OperationalError: unable to open database file``; ``'s3://bucket/cache'`` silently made ``./s3:/bucket/cache``
and cached there. We did the same.
"""
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from petastorm import make_batch_reader
from petastorm.errors import PetastormArgumentError


@pytest.fixture()
def dataset_url(tmp_path):
    pq.write_table(pa.table({"id": np.arange(30, dtype=np.int64)}), str(tmp_path / "p.parquet"), row_group_size=10)
    return f"file://{tmp_path / 'p.parquet'}"


def _read(url, location):
    reader = make_batch_reader(url, cache_type="local-disk", cache_location=location, cache_size_limit=10 ** 8,
                               cache_row_size_estimate=100, reader_pool_type="thread", workers_count=1)
    try:
        return sorted(int(x) for batch in reader for x in batch.id)
    finally:
        reader.stop()
        reader.join()


@pytest.mark.parametrize("form", ["file:///{}", "file://localhost/{}"])
def test_file_url_cache_location_is_the_local_directory(dataset_url, tmp_path, monkeypatch, form):
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    cache_dir = tmp_path / "cache"
    location = form.format(str(cache_dir).lstrip("/"))
    assert _read(dataset_url, location) == list(range(30))
    assert _read(dataset_url, location) == list(range(30))  # served from the cache
    assert cache_dir.is_dir() and any(cache_dir.iterdir())
    assert list(workdir.iterdir()) == []  # no 'file:' directory under the working directory


@pytest.mark.parametrize("location", ["s3://bucket/cache", "hdfs://nn:8020/cache", "gs://b/c"])
def test_remote_url_cache_location_is_refused_naming_it(dataset_url, tmp_path, monkeypatch, location):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PetastormArgumentError, match="cache_location must be a local directory") as info:
        _read(dataset_url, location)
    assert location in str(info.value)
    assert not (tmp_path / location.split("://")[0]).exists() and not (tmp_path / (location.split("/")[0])).exists()
