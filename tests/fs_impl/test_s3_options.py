"""s3fs-style storage_options -> pyarrow.fs.S3FileSystem arguments (no network: the translation only)."""
from petastorm.fs_impl.s3_options import s3_options


def test_s3fs_keys_become_pyarrow_arguments():
    got = s3_options({"key": "AK", "secret": "SK", "token": "T", "anon": 1, "region": "eu-west-1"})
    assert got == {"access_key": "AK", "secret_key": "SK", "session_token": "T", "anonymous": True,
                   "region": "eu-west-1"}


def test_an_endpoint_url_gives_the_scheme_and_the_endpoint_override():
    assert s3_options({"endpoint_url": "http://127.0.0.1:9000/"}) == {
        "scheme": "http", "endpoint_override": "127.0.0.1:9000"}
    assert s3_options({"client_kwargs": {"endpoint_url": "https://minio:9000", "region_name": "r1"}}) == {
        "scheme": "https", "endpoint_override": "minio:9000", "region": "r1"}
    assert s3_options({"endpoint_url": "minio:9000", "use_ssl": False}) == {
        "scheme": "http", "endpoint_override": "minio:9000"}


def test_an_option_pyarrow_does_not_have_means_s3fs_is_needed():
    assert s3_options({"key": "AK", "requester_pays": True}) is None
    assert s3_options({"client_kwargs": {"verify": False}}) is None


def test_none_values_are_left_out():
    assert s3_options({"key": None, "region": None}) == {}
