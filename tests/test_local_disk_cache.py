"""LocalDiskCache on real directories: hits, size limit, cleanup, sharing across threads and processes."""
import multiprocessing
import os
import pickle
import threading

import numpy as np
import pytest

from petastorm.cache import CacheBase, NullCache
from petastorm.local_disk_cache import LocalDiskCache, deserialize_value, serialize_value
from petastorm.reader_impl.work_item import ColumnBatch, WorkItem


def _du(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except FileNotFoundError:
                pass
    return total


def _batch(seed, rows=50):
    rng = np.random.default_rng(seed)
    names = np.empty(rows, dtype=object)
    names[:] = [f"row{i}" for i in range(rows)]
    return {
        "id": np.arange(rows, dtype=np.int64) + seed,
        "image": rng.integers(0, 255, (rows, 16, 16, 3), dtype=np.uint8),
        "name": names,
        "strided": np.arange(rows * 2, dtype=np.float32)[::2],
    }


def _assert_same(a, b):
    assert list(a) == list(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape
        np.testing.assert_array_equal(a[k], b[k])


def test_null_cache_always_calls_the_function():
    calls = []
    cache = NullCache()
    assert isinstance(cache, CacheBase)
    assert cache.get("k", lambda: calls.append(1) or 5) == 5
    assert cache.get("k", lambda: calls.append(1) or 6) == 6
    assert len(calls) == 2


def test_second_get_is_served_from_disk(tmp_path):
    cache = LocalDiskCache(str(tmp_path / "c"), 10 ** 8, 10 ** 4)
    value = _batch(1)
    calls = []
    first = cache.get("rg-0", lambda: calls.append(1) or value)
    again, hit = cache.lookup("rg-0", lambda: pytest.fail("must be a hit"))
    assert hit and calls == [1] and (cache.hits, cache.misses) == (1, 1)
    _assert_same(first, value)
    _assert_same(again, value)
    again["image"][0, 0, 0, 0] = 7  # values read back are writable
    assert again["image"].flags.writeable


def test_small_and_large_values_round_trip(tmp_path):
    cache = LocalDiskCache(str(tmp_path / "c"), 10 ** 8, 100)
    small = {"x": np.arange(3, dtype=np.int16)}
    cache.get("small", lambda: small)
    _assert_same(cache.get("small", lambda: None), small)
    cache.get("other", lambda: [1, "two", None])
    assert cache.get("other", lambda: None) == [1, "two", None]


def test_column_batch_objects_round_trip():
    batch = ColumnBatch(_batch(3), 50, WorkItem(0, 1, 2, 0, 50, 9), {"cache": "miss"})
    back = deserialize_value(bytearray(serialize_value(batch)))
    assert back.item == batch.item and back.num_rows == 50
    _assert_same(back.columns, batch.columns)


def test_arrays_are_aligned_in_the_blob():
    blob = bytearray(serialize_value({"a": np.arange(1000, dtype=np.float64), "b": np.arange(7, dtype=np.int8)}))
    back = deserialize_value(blob)
    assert back["a"].ctypes.data % 8 == 0 and back["a"].sum() == 499500


def test_values_persist_for_a_new_cache_object(tmp_path):
    path = str(tmp_path / "c")
    LocalDiskCache(path, 10 ** 8, 10 ** 4, cleanup=False).get("k", lambda: _batch(5))
    reopened = LocalDiskCache(path, 10 ** 8, 10 ** 4)
    _assert_same(reopened.get("k", lambda: pytest.fail("must be a hit")), _batch(5))


def test_size_limit_is_honoured(tmp_path):
    path = str(tmp_path / "c")
    limit = 8 * 1024 * 1024
    cache = LocalDiskCache(path, limit, 100 * 1024, shards=2)
    entry = 200 * 1024
    for i in range(120):  # 24 MB written, three times the limit
        cache.get(f"k{i}", lambda i=i: {"x": np.full(entry, i % 251, np.uint8)})
    assert cache.volume() <= limit * 1.05
    # on disk: entries + SQLite files, write-ahead logs included
    assert _du(path) <= limit * 1.5
    # the cache still holds most of what fits, the latest entries (least recently stored go first)
    hits = [cache.lookup(f"k{i}", lambda: None)[1] for i in range(119, 79, -1)]
    assert all(hits[:30]), hits
    assert not cache.lookup("k0", lambda: {"x": np.zeros(1, np.uint8)})[1]


def test_too_small_limit_is_refused_with_the_original_message(tmp_path):
    with pytest.raises(ValueError, match="Condition 'size_limit_bytes / shards < 5 \\* expected_row_size_bytes'"):
        LocalDiskCache(str(tmp_path / "c"), 6000, 1000)


def test_cleanup_removes_the_directory_and_the_cache_reopens(tmp_path):
    path = str(tmp_path / "c")
    cache = LocalDiskCache(path, 10 ** 8, 10 ** 4)
    cache.get("k", lambda: _batch(1))
    assert os.path.isdir(path)
    cache.cleanup()
    assert not os.path.exists(path)
    assert cache.lookup("k", lambda: 1) == (1, False)
    cache.cleanup()


def test_cleanup_false_keeps_the_directory(tmp_path):
    path = str(tmp_path / "c")
    cache = LocalDiskCache(path, 10 ** 8, 10 ** 4, cleanup=False)
    cache.get("k", lambda: 1)
    cache.cleanup()
    assert os.path.isdir(path)


def test_extra_settings_reach_diskcache(tmp_path):
    cache = LocalDiskCache(str(tmp_path / "c"), 10 ** 8, 10 ** 4, shards=3, eviction_policy="least-recently-used")
    assert cache._open().eviction_policy == "least-recently-used"
    assert len(os.listdir(tmp_path / "c")) >= 3


def test_threads_share_one_cache(tmp_path):
    cache = LocalDiskCache(str(tmp_path / "c"), 10 ** 8, 10 ** 4)
    errors = []

    def work(t):
        try:
            for i in range(20):
                _assert_same(cache.get(f"k{i}", lambda i=i: _batch(i)), _batch(i))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def _child_get(cache, key, q):
    q.put(cache.get(key, lambda: {"from": "child"}))


def test_pickled_cache_is_shared_with_a_child_process(tmp_path):
    cache = LocalDiskCache(str(tmp_path / "c"), 10 ** 8, 10 ** 4)
    cache.get("k", lambda: {"from": "parent"})
    clone = pickle.loads(pickle.dumps(cache))
    assert clone.get("k", lambda: None) == {"from": "parent"}
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_child_get, args=(cache, "k", q))
    p.start()
    got = q.get(timeout=60)
    p.join(timeout=60)
    assert got == {"from": "parent"} and p.exitcode == 0
