"""Shared fixtures. Spark (one session per test run) and the moto S3 server live in tests/_fixtures."""
import os
import sys

import pytest

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")

from _fixtures.datasets import SyntheticSchema, synthetic_row, write_synthetic_dataset  # noqa: E402,F401
from _fixtures.s3 import s3_server  # noqa: E402,F401
from _fixtures.spark import spark_session  # noqa: E402,F401
from _fixtures.threads import prefetch_threads_baseline  # noqa: E402,F401

pytest_plugins = ["_fixtures.spark_connect"]  # spark_connect_session; Connect tests in a run of their own
SHARED = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "shared"))
TESTDATA = os.environ.get("PETASTORM_TESTDATA", os.path.join(SHARED, "testdata"))


@pytest.fixture(scope="session")
def testdata_dir():
    """Path of ``../shared/testdata`` (datasets written by old versions of the original library)."""
    if not os.path.isdir(TESTDATA):
        pytest.fail(f"test data not found at {TESTDATA}; set PETASTORM_TESTDATA")
    return TESTDATA


@pytest.fixture(scope="session")
def synthetic_dataset(tmp_path_factory):
    """A 100-row Petastorm dataset: 10 row groups of 10 rows, 2 row groups per file, ids 0..99 in order."""
    path = str(tmp_path_factory.mktemp("synthetic") / "dataset")
    return write_synthetic_dataset(path)


def pytest_collection_modifyitems(config, items):
    """Every test that uses the Spark session is marked ``spark`` (``make test-spark4`` selects them)."""
    for item in items:
        if "spark_session" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.spark)
