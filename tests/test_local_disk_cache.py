"""LocalDiskCache on real directories: hits, value formats, size limit, cleanup, sharing across threads and
processes, and tampered cache directories (nothing planted there may run code)."""
import multiprocessing
import os
import pickle
import sqlite3
import struct
import threading

import diskcache
import numpy as np
import pyarrow as pa
import pytest

from petastorm import make_reader
from petastorm.cache import CacheBase, NullCache
from petastorm.errors import PetastormArgumentError, PetastormError
from petastorm.local_disk_cache import LocalDiskCache, SafeDisk, deserialize_value, serialize_value
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
    return {
        "id": np.arange(rows, dtype=np.int64) + seed,
        "image": rng.integers(0, 255, (rows, 16, 16, 3), dtype=np.uint8),
        "name": np.array([f"row{i}" for i in range(rows)]),  # fixed-width unicode, not objects
        "strided": np.arange(rows * 2, dtype=np.float32)[::2],
        "fortran": np.asfortranarray(np.arange(rows * 3, dtype=np.int16).reshape(rows, 3)),
        "empty": np.zeros((0, 4), dtype=np.float64),
        "scalar": np.array(3.5),
    }


def _table(seed, rows=40):
    rng = np.random.default_rng(seed)
    return pa.table({
        "id": pa.array(np.arange(rows, dtype=np.int64) + seed),
        "image": pa.array([rng.bytes(300) for _ in range(rows)], pa.binary()),
        "name": pa.array([None if i % 7 == 0 else f"row{i}" for i in range(rows)]),
        "tags": pa.array([[i, i + 1] for i in range(rows)], pa.list_(pa.int32())),
        "kind": pa.array(["a", "b"] * (rows // 2)).dictionary_encode(),
        "ts": pa.array(np.arange(rows).astype("datetime64[ms]")),
    }).replace_schema_metadata({b"source": b"test"})


def _assert_same(a, b):
    assert list(a) == list(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape
        np.testing.assert_array_equal(a[k], b[k])


def _buffer_addresses(table):
    return [buf.address for col in table.columns for chunk in col.chunks for buf in chunk.buffers()
            if buf is not None and buf.size]


# --- plain caching ------------------------------------------------------------------------------------------

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
    assert again["image"].flags.writeable and again["fortran"].flags.f_contiguous


def test_arrow_tables_round_trip_through_the_cache(tmp_path):
    cache = LocalDiskCache(str(tmp_path / "c"), 10 ** 8, 10 ** 4)
    for key, table in (("small", _table(1, rows=4)), ("large", _table(2, rows=400)),
                       ("no-rows", _table(3).slice(0, 0))):
        cache.get(key, lambda t=table: t)
        back, hit = cache.lookup(key, lambda: pytest.fail("must be a hit"))
        assert hit and back.equals(table) and back.schema.metadata == table.schema.metadata


def test_record_batches_and_none_round_trip(tmp_path):
    cache = LocalDiskCache(str(tmp_path / "c"), 10 ** 8, 10 ** 4)
    batch = _table(4).to_batches()[0]
    cache.get("batch", lambda: batch)
    back, hit = cache.lookup("batch", lambda: pytest.fail("must be a hit"))
    assert hit and isinstance(back, pa.RecordBatch) and back.equals(batch)
    assert cache.get("none", lambda: None) is None
    assert cache.lookup("none", lambda: pytest.fail("must be a hit")) == (None, True)


def test_tables_are_views_of_the_stored_blob():
    blob = pa.py_buffer(serialize_value(_table(5, rows=200)))
    back = deserialize_value(blob)
    assert back.equals(_table(5, rows=200))
    start, end = blob.address, blob.address + blob.size
    assert all(start <= a < end for a in _buffer_addresses(back))  # zero-copy: no column was copied


def test_arrays_are_aligned_in_the_blob():
    back = deserialize_value(serialize_value({"a": np.arange(1000, dtype=np.float64),
                                              "b": np.arange(7, dtype=np.int8)}))
    assert back["a"].ctypes.data % 64 == 0 and back["a"].sum() == 499500 and back["b"].tolist() == list(range(7))


@pytest.mark.parametrize("value, named", [
    ([1, "two", None], "builtins.list"),
    ({"x": np.array([object(), 1], dtype=object)}, "dtype object"),
    ({"x": np.zeros(2, dtype=[("a", "i4"), ("b", "f8")])}, "holds Python objects or fields"),
    ({"x": [1, 2]}, "entry 'x' is a list"),
    ({1: np.zeros(2)}, "key 1 is a int"),
    (ColumnBatch({"x": np.zeros(2)}, 2, WorkItem(0, 1, 2, 0, 2, 9), {}), "ColumnBatch"),
])
def test_other_value_types_are_refused_at_get(tmp_path, value, named):
    cache = LocalDiskCache(str(tmp_path / "c"), 10 ** 8, 10 ** 4)
    with pytest.raises(PetastormArgumentError, match=named) as info:
        cache.get("k", lambda: value)
    assert "pyarrow.Table" in str(info.value) and "dict of str to numpy.ndarray" in str(info.value)
    assert str(tmp_path / "c") in str(info.value) and "'k'" in str(info.value)
    assert cache.get("k", lambda: None) is None  # nothing was stored for the refused value


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


def test_a_foreign_disk_class_is_refused(tmp_path):
    with pytest.raises(PetastormArgumentError, match="'disk' setting"):
        LocalDiskCache(str(tmp_path / "c"), 10 ** 8, 10 ** 4, disk=diskcache.Disk)


def test_cleanup_removes_the_directory_and_the_cache_reopens(tmp_path):
    path = str(tmp_path / "c")
    cache = LocalDiskCache(path, 10 ** 8, 10 ** 4)
    cache.get("k", lambda: _batch(1))
    assert os.path.isdir(path)
    cache.cleanup()
    assert not os.path.exists(path)
    assert cache.lookup("k", lambda: None) == (None, False)
    cache.cleanup()


def test_cleanup_false_keeps_the_directory(tmp_path):
    path = str(tmp_path / "c")
    cache = LocalDiskCache(path, 10 ** 8, 10 ** 4, cleanup=False)
    cache.get("k", lambda: None)
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
    q.put(cache.get(key, lambda: {"from": np.array(["child"])})["from"].tolist())


def test_pickled_cache_is_shared_with_a_child_process(tmp_path):
    cache = LocalDiskCache(str(tmp_path / "c"), 10 ** 8, 10 ** 4)
    cache.get("k", lambda: {"from": np.array(["parent"])})
    clone = pickle.loads(pickle.dumps(cache))
    assert clone.get("k", lambda: None)["from"].tolist() == ["parent"]
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_child_get, args=(cache, "k", q))
    p.start()
    got = q.get(timeout=60)
    p.join(timeout=60)
    assert got == ["parent"] and p.exitcode == 0


# --- tampered cache directories ------------------------------------------------------------------------------

class _Plant:
    """Unpickling this creates ``marker``: proof that code from the cache directory ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def _plant_pickles(path, keys, marker, shards=6):
    """Store, with diskcache's own (pickling) Disk, a payload under each key: small ones in SQLite, large ones
    as value files."""
    foreign = diskcache.FanoutCache(path, shards)
    for i, key in enumerate(keys):
        foreign.set(key, [_Plant(marker), b"x" * (10 if i % 2 else 100_000)])
    foreign.close()


@pytest.mark.parametrize("large", [False, True])
def test_a_planted_pickle_is_refused_not_run(tmp_path, large):
    path, marker = str(tmp_path / "c"), tmp_path / "pwned"
    cache = LocalDiskCache(path, 10 ** 8, 10 ** 4, cleanup=False)
    cache.get("rg-0", lambda: _table(1))
    _plant_pickles(path, ["x", "rg-0"] if large else ["rg-0"], marker)
    assert not marker.exists()  # planting pickles does not run them
    with pytest.raises(PetastormError, match=f"{path}.*refusing to unpickle"):
        cache.get("rg-0", lambda: pytest.fail("a tampered entry is an error, not a miss"))
    assert not marker.exists()
    with pytest.raises(PetastormError, match="refusing to unpickle"):  # a fresh cache object refuses it too
        LocalDiskCache(path, 10 ** 8, 10 ** 4).get("rg-0", lambda: None)
    assert not marker.exists()


def test_planted_pickles_under_the_readers_keys_stop_the_reader(synthetic_dataset, tmp_path):
    path, marker = str(tmp_path / "c"), tmp_path / "pwned"
    options = dict(cache_type="local-disk", cache_location=path, cache_size_limit=10 ** 9,
                   cache_row_size_estimate=1000, workers_count=2, cache_extra_settings={"cleanup": False})
    with make_reader(synthetic_dataset, **options) as reader:
        assert sorted(int(r.id) for r in reader) == list(range(100))
    keys = []
    for shard in sorted(os.listdir(path)):
        with sqlite3.connect(os.path.join(path, shard, "cache.db")) as db:
            keys += [k for (k,) in db.execute("SELECT key FROM Cache")]
    assert len(keys) == 10
    _plant_pickles(path, keys, marker)
    with pytest.raises(PetastormError, match="refusing to unpickle"):
        with make_reader(synthetic_dataset, **options) as reader:
            list(reader)
    assert not marker.exists()


def test_a_planted_pickled_key_is_refused_when_keys_are_listed(tmp_path):
    path, marker = str(tmp_path / "c"), tmp_path / "pwned"
    foreign = diskcache.Cache(path)
    foreign.set(("tuple", _Plant(marker)), b"v")  # a non-str key: diskcache pickles it
    foreign.close()
    safe = diskcache.Cache(path, disk=SafeDisk)
    with pytest.raises(PetastormError, match="refusing to unpickle a key"):
        list(safe)
    safe.close()
    assert not marker.exists()


def test_safe_disk_never_pickles(tmp_path):
    safe = diskcache.Cache(str(tmp_path / "c"), disk=SafeDisk)
    with pytest.raises(PetastormArgumentError, match="keys must be str or bytes"):
        safe.set(("a", 1), b"v")
    with pytest.raises(PetastormArgumentError, match="values must be bytes"):
        safe.set("a", {"x": 1})
    safe.set(b"raw", b"v")
    assert safe.get(b"raw") == b"v"
    safe.close()


def _replace_value_file_name(path, new_name):
    for shard in sorted(os.listdir(path)):
        db_path = os.path.join(path, shard, "cache.db")
        with sqlite3.connect(db_path) as db:
            db.execute("UPDATE Cache SET filename = ? WHERE filename IS NOT NULL", (new_name,))


def test_value_file_names_outside_the_cache_are_neither_read_nor_removed(tmp_path):
    path = str(tmp_path / "c")
    victim = tmp_path / "victim.txt"
    victim.write_bytes(serialize_value({"secret": np.arange(10_000)}))
    cache = LocalDiskCache(path, 10 ** 8, 10 ** 4, cleanup=False)
    cache.get("k", lambda: {"x": np.zeros(100_000, np.uint8)})  # large: kept as a value file
    _replace_value_file_name(path, os.path.join("..", "..", "victim.txt"))
    with pytest.raises(PetastormError, match="outside the cache directory"):
        cache.get("k", lambda: None)
    cache._open().clear()  # removes every entry's value file...
    assert victim.exists()  # ...but not one outside the cache


def _blob(kind, body):
    head = struct.pack("<8sB7xQ", b"PSTCACH2", kind, len(body))
    return head + b"\0" * (64 - len(head)) + body


def _arrays_blob(name, npy):
    index_end = 64 + 8 + 32
    name_off = index_end
    npy_off = name_off + len(name) + (-(name_off + len(name)) % 64)
    body = struct.pack("<QQQQQ", 1, name_off, len(name), npy_off, len(npy))
    body += name + b"\0" * (npy_off - name_off - len(name)) + npy
    return _blob(3, body)


def _object_npy(marker):
    """.npy bytes of an object array: numpy's own loader (allow_pickle=True) would unpickle the data."""
    payload = pickle.dumps(np.array([_Plant(marker)], dtype=object), protocol=2)
    header = "{'descr': '|O', 'fortran_order': False, 'shape': (1,), }"
    header += " " * (-(10 + len(header) + 1) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("latin1") + payload


def _pickled_extension_ipc(marker):
    """An Arrow IPC stream whose field claims pyarrow's old pickle-based extension type, with a pickle as
    its metadata (CVE-2023-47248)."""
    field = pa.field("x", pa.int64(), metadata={b"ARROW:extension:name": b"arrow.py_extension_type",
                                               b"ARROW:extension:metadata": pickle.dumps(_Plant(marker))})
    table = pa.Table.from_arrays([pa.array([1, 2, 3])], schema=pa.schema([field]))
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def test_malicious_bodies_in_our_format_do_not_run_code(tmp_path):
    marker = tmp_path / "pwned"
    npy = _object_npy(marker)
    with pytest.raises(ValueError, match="refusing to unpickle"):
        deserialize_value(_arrays_blob(b"x", npy))
    table = deserialize_value(_blob(1, _pickled_extension_ipc(marker)))
    assert table.column("x").to_pylist() == [1, 2, 3] and table.schema.field("x").type == pa.int64()
    assert not marker.exists()


@pytest.mark.parametrize("forged", ["npy past the end", "name past the end", "huge count", "bad kind",
                                    "short", "bad magic", "body length"])
def test_forged_layouts_are_rejected(forged):
    good = serialize_value({"a": np.arange(10)})
    blob = bytearray(good)
    if forged == "npy past the end":
        struct.pack_into("<Q", blob, 64 + 8 + 24, 10 ** 9)
    elif forged == "name past the end":
        struct.pack_into("<Q", blob, 64 + 8, len(blob))
    elif forged == "huge count":
        struct.pack_into("<Q", blob, 64, 2 ** 60)
    elif forged == "bad kind":
        blob[8] = 9
    elif forged == "short":
        blob = blob[:40]
    elif forged == "bad magic":
        blob[:8] = b"PSTCACH1"
    else:
        struct.pack_into("<Q", blob, 16, 3)
    with pytest.raises(ValueError):
        deserialize_value(bytes(blob))


def test_corrupted_blobs_fail_cleanly():
    """Flipped bytes anywhere in a table or array entry: a clean ValueError or a value, never a crash."""
    rng = np.random.default_rng(0)
    for good in (serialize_value(_table(7, rows=20)), serialize_value(_batch(7, rows=5))):
        for _ in range(150):
            blob = bytearray(good)
            for pos in rng.integers(64, len(blob), 3):
                blob[pos] = int(rng.integers(0, 256))
            try:
                deserialize_value(bytes(blob))
            except ValueError:
                pass


def test_a_malicious_entry_in_our_format_is_recomputed_with_a_warning(tmp_path):
    path, marker = str(tmp_path / "c"), tmp_path / "pwned"
    cache = LocalDiskCache(path, 10 ** 8, 10 ** 4, cleanup=False)
    cache.get("small", lambda: None)
    cache.get("large", lambda: None)
    foreign = diskcache.FanoutCache(path, 6)
    foreign.set("small", _arrays_blob(b"x", _object_npy(marker)))                   # raw bytes in SQLite
    foreign.set("large", _arrays_blob(b"x", _object_npy(marker) + b" " * 100_000))  # a value file
    foreign.close()
    for key in ("small", "large"):
        with pytest.warns(UserWarning, match=f"entry '{key}' is unreadable.*recomputing"):
            assert cache.get(key, lambda: {"ok": np.ones(2)})["ok"].tolist() == [1, 1]
        assert cache.lookup(key, lambda: pytest.fail("recomputed value is stored"))[1]
    assert not marker.exists()
