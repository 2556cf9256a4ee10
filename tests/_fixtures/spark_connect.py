"""A local Spark Connect server and a Connect client session for the tests marked ``spark_connect``.

Registered as a pytest plugin by ``tests/conftest.py`` (``pytest_plugins``): the fixture, and a collection
hook keeping the Connect tests out of runs that hold classic Spark tests.

Why a run of their own: once a Connect client session exists in a process, pyspark dispatches
``pyspark.sql.functions`` to Connect for the whole process (``SPARK_CONNECT_MODE_ENABLED``), which breaks
the classic session of the other tests; and ``SparkSession.builder.remote('local[...]')`` refuses to start
next to an existing classic session. ``make test-spark4`` therefore runs ``-m spark`` (classic, pyspark 4.3)
and ``-m spark_connect`` as two pytest runs. ``make test`` (pyspark 3.5, which has no Connect server)
deselects them; a run that collects both kinds deselects the Connect ones and says so in its summary.

The server is what ``SparkSession.builder.remote('local[2]')`` starts (the pyspark 4.3.0 package bundles
``spark-connect_2.13-4.3.0.jar``, so it starts offline: a classic session with the Connect plugin, in this
process's JVM), with one difference: it listens on a free port picked by the OS, not the fixed 15002, so
several test runs on one machine do not meet on one server.
"""
import os

import pytest
from _fixtures.spark import local_builder, use_this_python

_MARK = "spark_connect"


@pytest.hookimpl(trylast=True)  # after -m / -k have chosen the tests of the run
def pytest_collection_modifyitems(config, items):
    """Deselect the ``spark_connect`` tests from a run that also holds other tests needing Spark."""
    connect = [item for item in items if item.get_closest_marker(_MARK) is not None]
    if not connect or len(connect) == len(items):
        return
    classic = any(item.get_closest_marker("spark") is not None
                  or "spark_session" in getattr(item, "fixturenames", ()) for item in items)
    if not classic:
        return
    config.hook.pytest_deselected(items=connect)
    items[:] = [item for item in items if item.get_closest_marker(_MARK) is None]
    config._spark_connect_deselected = len(connect)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    count = getattr(config, "_spark_connect_deselected", 0)
    if count:
        terminalreporter.write_line(
            f"{count} Spark Connect tests deselected: they run in a pytest run of their own on pyspark>=4 "
            f"(make test-spark4, or pytest -m {_MARK})")


def _pyspark_major() -> int:
    import pyspark

    return int(pyspark.__version__.split(".")[0])


def _start_local_connect_server(warehouse: str) -> int:
    """Start a classic local session with the Spark Connect plugin (as ``remote('local[2]')`` does) on an
    OS-picked port; return the port."""
    classic = (
        local_builder("petastorm-tests-connect", warehouse)
        .config("spark.plugins", "org.apache.spark.sql.connect.SparkConnectPlugin")
        .config("spark.connect.grpc.binding.address", "127.0.0.1")
        .config("spark.connect.grpc.binding.port", "0")
        .config("spark.sql.artifact.isolation.enabled", "true")
        .config("spark.sql.artifact.isolation.alwaysApplyClassloader", "true")
        .getOrCreate()
    )
    classic.sparkContext.setLogLevel("ERROR")
    service = getattr(classic._jvm, "org.apache.spark.sql.connect.service.SparkConnectService$")
    return int(getattr(service, "MODULE$").localPort())


@pytest.fixture(scope="session")
def spark_connect_session(tmp_path_factory):
    """A Spark Connect client session (``pyspark.sql.connect.session.SparkSession``) on a local server.

    Fails (never skips) where it cannot run: pyspark older than 4, or a classic session already in this
    process.
    """
    if _pyspark_major() < 4:
        pytest.fail("the spark_connect tests need pyspark>=4 with the connect extras: run make test-spark4")
    use_this_python()
    from pyspark import SparkContext

    if SparkContext._active_spark_context is not None:
        pytest.fail("a classic SparkContext is already running in this process: run the spark_connect tests "
                    "in a pytest run of their own (pytest -m spark_connect)")
    from pyspark.sql.connect.session import SparkSession as ConnectSession

    port = _start_local_connect_server(str(tmp_path_factory.mktemp("spark-connect-warehouse")))
    # What SparkSession.builder.remote() does besides connecting: pyspark.sql.functions and friends go to
    # Connect from now on in this process.
    os.environ["SPARK_CONNECT_MODE_ENABLED"] = "1"
    session = ConnectSession.builder.remote(f"sc://127.0.0.1:{port}").getOrCreate()
    yield session
    session.stop()
    os.environ.pop("SPARK_CONNECT_MODE_ENABLED", None)
    from pyspark.sql import SparkSession

    classic = SparkSession._instantiatedSession
    if classic is not None:
        classic.stop()
