"""The local disk cache shared by two readers at once.

Two readers given the same ``cache_location``: the first to leave its ``with`` block removes the directory (as
0.13 does); the second, still reading, used to fail with a bare ``sqlite3.OperationalError: unable to open
database file`` from a worker thread's first connection. 0.12.1 (which kept the directory) read every row:
recorded from 0.12.1, ``b 400`` for the script of ``test_second_reader_survives_the_first_removing_the_cache``.
"""
import threading
import warnings

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from petastorm import make_batch_reader

_ROWS = 400


@pytest.fixture(scope="module")
def dataset_url(tmp_path_factory):
    root = tmp_path_factory.mktemp("cache_shared_ds")
    for i in range(4):
        ids = np.arange(i * 100, i * 100 + 100, dtype=np.int64)
        pq.write_table(pa.table({"id": ids, "x": ids.astype(np.float32) / 2}), str(root / f"p{i}.parquet"),
                       row_group_size=25)
    return f"file://{root}"


def _reader(url, cache_dir, pool, **kwargs):
    return make_batch_reader(url, cache_type="local-disk", cache_location=str(cache_dir), cache_size_limit=10 ** 8,
                             cache_row_size_estimate=100, reader_pool_type=pool, workers_count=2,
                             shuffle_row_groups=False, **kwargs)


def _ids(reader):
    return sorted(int(x) for batch in reader for x in batch.id)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("pool", ["thread", "process"])
def test_second_reader_survives_the_first_removing_the_cache(dataset_url, tmp_path, pool):
    cache_dir = tmp_path / "cache"
    second = _reader(dataset_url, cache_dir, pool)
    try:
        with _reader(dataset_url, cache_dir, pool) as first:
            assert _ids(first) == list(range(_ROWS))
        assert not cache_dir.exists()  # removed on exit of the with block, as in 0.13
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert _ids(second) == list(range(_ROWS))
    finally:
        second.stop()
        second.join()
    if pool == "thread":  # process-pool workers warn in their own process
        assert any("removed while in use" in str(w.message) and str(cache_dir) in str(w.message) for w in caught)


@pytest.mark.timeout(120)
def test_three_readers_at_once_in_threads_read_every_row(dataset_url, tmp_path):
    cache_dir = tmp_path / "cache"
    results, errors = [], []

    def read(delay_batches):
        try:
            with _reader(dataset_url, cache_dir, "thread", num_epochs=1 + delay_batches) as reader:
                results.append(_ids(reader))
        except Exception as e:  # reported below with the failing reader's error
            errors.append(e)

    threads = [threading.Thread(target=read, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(100)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert sorted(results, key=len) == [sorted(list(range(_ROWS)) * n) for n in (1, 2, 3)]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("pool", ["dummy", "thread"])
def test_cache_dir_deleted_mid_pass_keeps_every_row(dataset_url, tmp_path, pool):
    import shutil

    cache_dir = tmp_path / "cache"
    seen = []
    with _reader(dataset_url, cache_dir, pool, num_epochs=2) as reader:
        for i, batch in enumerate(reader):
            seen.extend(int(x) for x in batch.id)
            if i == 3:
                shutil.rmtree(cache_dir)
    assert sorted(seen) == sorted(list(range(_ROWS)) * 2)


@pytest.mark.timeout(120)
def test_batched_data_loader_with_a_cache_removed_by_another_reader(dataset_url, tmp_path):
    from petastorm.pytorch import BatchedDataLoader

    cache_dir = tmp_path / "cache"
    second = _reader(dataset_url, cache_dir, "thread")
    with _reader(dataset_url, cache_dir, "thread") as first:
        _ids(first)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with BatchedDataLoader(second, batch_size=64) as loader:
            ids = sorted(int(x) for batch in loader for x in batch["id"])
    assert ids == list(range(_ROWS))
