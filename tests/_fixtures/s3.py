"""Placeholder: the moto S3 server fixture is written with fs_utils (issue 3)."""
import pytest


@pytest.fixture(scope="session")
def s3_server():
    pytest.fail("the S3 fixture is not written yet")
