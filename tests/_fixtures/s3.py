"""A real S3-protocol server for the tests: moto's server mode on 127.0.0.1, one per test session.

Dummy AWS credentials are put in the environment while the server runs (and the previous values are
restored at the end), so neither pyarrow nor boto ever reaches real AWS or an instance metadata service.
"""
from __future__ import annotations

import itertools
import logging
import os

import pytest

_REGION = "us-east-1"
_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_DEFAULT_REGION": _REGION,
    "AWS_REGION": _REGION,
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}


class S3Server:
    """Handle on a running moto server.

    Attributes
    ----------
    endpoint_url : str
        ``http://127.0.0.1:<port>``.
    storage_options : dict
        s3fs-style options that reach this server (``key``, ``secret``, ``client_kwargs``).
    """

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.endpoint_url = f"http://{host}:{port}"
        self.access_key = _ENV["AWS_ACCESS_KEY_ID"]
        self.secret_key = _ENV["AWS_SECRET_ACCESS_KEY"]
        self.region = _REGION
        self.storage_options = {
            "key": self.access_key,
            "secret": self.secret_key,
            "client_kwargs": {"endpoint_url": self.endpoint_url, "region_name": self.region},
        }
        self._names = itertools.count()

    def pyarrow_filesystem(self):
        """A ``pyarrow.fs.S3FileSystem`` talking to this server (bucket creation allowed)."""
        import pyarrow.fs as pafs

        return pafs.S3FileSystem(
            access_key=self.access_key, secret_key=self.secret_key, region=self.region,
            endpoint_override=f"{self.host}:{self.port}", scheme="http", allow_bucket_creation=True)

    def make_bucket(self, name: str | None = None) -> str:
        """Create a bucket (a fresh unique name when ``name`` is None) and return its name."""
        if name is None:
            name = f"bucket-{os.getpid()}-{next(self._names)}"
        self.pyarrow_filesystem().create_dir(name)
        return name


@pytest.fixture(scope="session")
def s3_server():
    """A moto S3 server on 127.0.0.1 (a free port), shared by the whole session; stopped at the end."""
    from moto.server import ThreadedMotoServer

    saved = {key: os.environ.get(key) for key in _ENV}
    os.environ.update(_ENV)
    werkzeug_log = logging.getLogger("werkzeug")  # one line per request otherwise
    saved_level = werkzeug_log.level
    werkzeug_log.setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield S3Server(host, port)
    finally:
        server.stop()
        werkzeug_log.setLevel(saved_level)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
