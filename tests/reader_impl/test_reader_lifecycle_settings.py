"""``PETASTORM_*`` settings (docs/settings.md) set to odd values, with each pool type: a clear error naming the
variable when the reader is made, or the documented behaviour; never a bare error from inside the read, a hang or
a process left behind."""
import os

import numpy as np
import pytest
from _fixtures.datasets import write_synthetic_dataset

from petastorm import make_batch_reader, make_reader
from petastorm.codecs import NdarrayCodec, ScalarCodec
from petastorm.errors import PetastormArgumentError
from petastorm.reader_impl.pool_factory import make_pool
from petastorm.settings import Settings
from petastorm.spark_types import spark_type
from petastorm.unischema import Unischema, UnischemaField

from .process._child_script import run_script


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    """400 rows: 20 row groups of 20 rows, 4 per file (5 files)."""
    return write_synthetic_dataset(str(tmp_path_factory.mktemp("lifecycle") / "dataset"), rows=400,
                                   rows_per_group=20, groups_per_file=4)


@pytest.mark.parametrize("name, value", [
    ("PETASTORM_MP_START", "threads"), ("PETASTORM_MP_START", "fork server"), ("PETASTORM_STARTUP_LANE", "2"),
    ("PETASTORM_POOL_TRANSPORT", "zmq"), ("PETASTORM_SHM_CACHE_MB", "-1"), ("PETASTORM_SHM_CACHE_MB", "nan"),
    ("PETASTORM_SHM_CACHE_MB", "inf"), ("PETASTORM_SHM_CACHE_MB", "1e400"), ("PETASTORM_RESULTS_BUDGET_MB", "64MB"),
    ("PETASTORM_DIRECT_READ", "enabled"), ("PETASTORM_MMAP_READ", "y"), ("PETASTORM_ARROW_POOL", "tcmalloc"),
])
@pytest.mark.parametrize("pool", ["thread", "process", "dummy"])
def test_bad_value_is_an_error_naming_the_variable_when_the_reader_is_made(url, monkeypatch, pool, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(PetastormArgumentError, match=f"{name}={value!r}"):
        make_reader(url, reader_pool_type=pool, workers_count=2)


@pytest.mark.parametrize("pool", ["thread", "process", "dummy"])
@pytest.mark.parametrize("maker", [make_reader, make_batch_reader])
def test_huge_results_budget_reads_every_row(url, monkeypatch, pool, maker):
    """``PETASTORM_RESULTS_BUDGET_MB=1e308`` (a finite number of megabytes, "no limit"): every row. The
    bytes overflowed to ``inf`` and the first result raised a bare ``OverflowError: cannot convert float
    infinity to integer`` from inside ``imap``."""
    monkeypatch.setenv("PETASTORM_RESULTS_BUDGET_MB", "1e308")
    with maker(url, schema_fields=["id"], reader_pool_type=pool, workers_count=2) as reader:
        ids = sorted(int(i) for x in reader for i in ([x.id] if maker is make_reader else x.id))
    assert ids == list(range(400))


def test_huge_sizes_are_the_largest_byte_counts():
    config = Settings.from_environ({"PETASTORM_SHM_CACHE_MB": "1e308", "PETASTORM_RESULTS_BUDGET_MB": "1e300"})
    assert config.shm_cache_bytes == config.results_budget_bytes == (1 << 63) - 1


BigSchema = Unischema("BigSchema", [
    UnischemaField("id", np.int64, (), ScalarCodec(spark_type("LongType")), False),
    UnischemaField("big", np.float32, (256, 256), NdarrayCodec(), False),
])


@pytest.fixture(scope="module")
def big_url(tmp_path_factory):
    """40 rows of 256 KiB arrays, 10 per row group: 2.5 MiB results, which travel in shared memory."""
    return write_synthetic_dataset(str(tmp_path_factory.mktemp("lifecycle") / "big"), rows=40, rows_per_group=10,
                                   groups_per_file=2, schema=BigSchema,
                                   row_fn=lambda i: {"id": i, "big": np.full((256, 256), i, np.float32)})


def test_huge_segment_cache_keeps_segments_and_reports_nothing(big_url):
    """``PETASTORM_SHM_CACHE_MB=1e308``: a stopped process pool's segments are kept for the next one (the
    cache's limit raised ``OverflowError`` inside the pool's finalizer: ignored with a traceback on stderr, and
    the bequeathed segments' descriptors were never closed)."""
    out = run_script(r'''
from petastorm import make_reader
from petastorm.reader_impl.process.segment_cache import SEGMENT_CACHE
counts = []
for _ in range(2):
    with make_reader(URL, reader_pool_type="process", workers_count=2) as r:
        counts.append(sum(1 for _ in r))
done(counts=counts, cached=len(SEGMENT_CACHE))
''', big_url, timeout=90, env={"PETASTORM_SHM_CACHE_MB": "1e308"})
    assert out["counts"] == [40, 40]
    assert out["cached"] > 0
    assert "Traceback" not in out["stderr"] and "Exception ignored" not in out["stderr"]
    assert out["left"] == []


def test_results_budget_is_taken_when_the_pool_is_made(monkeypatch):
    """docs/settings.md: each pool takes the environment of the moment it starts. The budget was read again
    at each larger result: a value set mid-pass applied mid-pass, a bad one raised from inside ``imap``."""
    monkeypatch.setenv("PETASTORM_RESULTS_BUDGET_MB", "16")
    pool = make_pool("thread", 2, 20)
    monkeypatch.setenv("PETASTORM_RESULTS_BUDGET_MB", "lots")
    assert pool.in_flight_limit(8 << 20) == 3  # 16 MB / 8 MB = 2, the floor: workers + 1
    assert pool.in_flight_limit(1000) == 22
    monkeypatch.delenv("PETASTORM_RESULTS_BUDGET_MB")
    assert os.environ.get("PETASTORM_RESULTS_BUDGET_MB") is None
