"""S3 failures through the readers: a bucket that does not exist, a missing key, and missing credentials, on the
moto server (``s3_server``), through pyarrow's S3 and s3fs.

0.12.1 has no s3fs in its test environment: these are our own requirements (an error naming the URL).
"""
import pytest

from petastorm import make_batch_reader

_NO_CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")


def _options(s3_server, client, credentials=True):
    options = dict(s3_server.storage_options)
    if not credentials:
        options.pop("key")
        options.pop("secret")
    if client == "s3fs":
        options["skip_instance_cache"] = True  # an option pyarrow's S3 lacks: s3fs is used
    return options


@pytest.mark.parametrize("client", ["pyarrow", "s3fs"])
@pytest.mark.parametrize("where", ["no-such-bucket-anywhere/ds", "{bucket}/no/such/key"])
def test_missing_bucket_or_key_is_file_not_found_naming_the_url(s3_server, client, where):
    url = "s3://" + where.format(bucket=s3_server.make_bucket())
    with pytest.raises(FileNotFoundError) as info:
        make_batch_reader(url, storage_options=_options(s3_server, client), reader_pool_type="dummy")
    assert url in str(info.value)


def test_s3fs_without_credentials_names_the_url(s3_server, monkeypatch):
    for name in _NO_CREDENTIALS:
        monkeypatch.delenv(name, raising=False)
    url = f"s3://{s3_server.make_bucket()}/ds"
    with pytest.raises(Exception) as info:
        make_batch_reader(url, storage_options=_options(s3_server, "s3fs", credentials=False),
                          reader_pool_type="dummy")
    assert url in str(info.value)
    assert "credentials" in str(info.value)


@pytest.mark.parametrize("client", ["pyarrow", "s3fs"])
def test_double_slash_in_an_s3_url_reads_the_dataset(s3_server, client):
    """``f"{base}/{name}"`` with ``base`` ending in '/': pyarrow's S3 raised ``ArrowInvalid: Empty path component``
    (s3fs: not found); a local path with '//' reads the directory, and so does S3 now."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    bucket = s3_server.make_bucket()
    pq.write_table(pa.table({"id": np.arange(7, dtype=np.int64)}), f"{bucket}/ds/p.parquet",
                   filesystem=s3_server.pyarrow_filesystem())
    with make_batch_reader(f"s3://{bucket}//ds", storage_options=_options(s3_server, client),
                           reader_pool_type="dummy") as reader:
        assert sorted(int(x) for batch in reader for x in batch.id) == list(range(7))
