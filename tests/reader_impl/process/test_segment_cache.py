"""Shared-memory segments outlive their process pool: a stopped pool's free segments serve the next one."""
import os
import sys

import cloudpickle
import numpy as np
import pytest

from petastorm.reader_impl.process import ProcessPool, clear_segment_cache
from petastorm.reader_impl.process.segment_cache import SEGMENT_CACHE
from petastorm.reader_impl.process.transport import shm_supported
from petastorm.reader_impl.work_item import ColumnBatch, WorkItem

cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.skipif(not shm_supported(), reason="memfd segments need Linux")

MB = 1024 * 1024


def _items(n):
    return [WorkItem(epoch=0, position=i, row_group=i, row_start=0, row_stop=1) for i in range(n)]


def filled_factory(nbytes, offset):
    """Each result: ``nbytes`` of float32 equal to ``offset + position`` (so overwrites are visible)."""
    def factory():
        def work(item):
            return ColumnBatch({"big": np.full(nbytes // 4, offset + item.position, np.float32)}, 1, item)
        return work
    return factory


def _open_fds():
    return len(os.listdir(f"/proc/{os.getpid()}/fd"))


@pytest.fixture(autouse=True)
def empty_cache(monkeypatch):
    monkeypatch.delenv("PETASTORM_SHM_CACHE_MB", raising=False)
    clear_segment_cache()
    yield
    clear_segment_cache()


def _run(n, nbytes, offset, keep=False):
    """Run a pool over ``n`` items; (values seen, diagnostics, results kept when ``keep``)."""
    pool = ProcessPool(2, 2, transport="shm")
    pool.start(filled_factory(nbytes, offset))
    kept, seen = [], []
    try:
        for batch in pool.imap(_items(n)):
            a = batch.columns["big"]
            seen.append((float(a[0]), float(a[-1])))
            if keep:
                kept.append(a)
        diag = pool.diagnostics
    finally:
        pool.join()
    return seen, diag, kept


def test_a_second_pool_reuses_the_first_pools_segments_and_its_results_are_right():
    seen, first, _ = _run(12, 2 * MB, 0)
    assert seen == [(float(i), float(i)) for i in range(12)]
    assert first["segments_received"] >= 2 and len(SEGMENT_CACHE) >= 2
    cached = len(SEGMENT_CACHE)
    seen, second, _ = _run(12, 2 * MB, 1000)
    assert seen == [(1000.0 + i, 1000.0 + i) for i in range(12)]
    assert second["segments_received"] < first["segments_received"], (first, second, cached)


def test_results_still_held_are_never_handed_to_the_next_pool():
    _seen, _diag, kept = _run(8, MB, 0, keep=True)  # every result of the first pool is still alive
    _run(16, MB, 5000)  # the next pool writes into whatever it was given
    for i, a in enumerate(kept):
        assert a[0] == i and a[-1] == i, f"result {i} was overwritten by a later pool"


def test_the_cache_is_bounded_and_can_be_disabled(monkeypatch):
    _run(12, 2 * MB, 0)
    assert 0 < SEGMENT_CACHE.nbytes <= SEGMENT_CACHE.limit_bytes()
    clear_segment_cache()
    monkeypatch.setenv("PETASTORM_SHM_CACHE_MB", "0")
    _run(12, 2 * MB, 0)
    assert len(SEGMENT_CACHE) == 0 and SEGMENT_CACHE.nbytes == 0


def test_clearing_the_cache_closes_its_file_descriptors():
    before = _open_fds()
    _run(12, 2 * MB, 0)
    held = len(SEGMENT_CACHE)
    assert held > 0 and _open_fds() <= before + held
    clear_segment_cache()
    assert _open_fds() <= before


def test_a_forked_child_does_not_inherit_the_cache():
    # the cached memory is shared with this process: a forked child (a DataLoader worker, say) starting a
    # pool of its own must not hand it out as well
    _run(12, 2 * MB, 0)
    held = len(SEGMENT_CACHE)
    assert held > 0
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        os.close(r)
        os.write(w, str(len(SEGMENT_CACHE)).encode())
        os._exit(0)
    os.close(w)
    child_sees = int(os.read(r, 16).decode())
    os.close(r)
    os.waitpid(pid, 0)
    assert child_sees == 0 and len(SEGMENT_CACHE) == held


def test_putting_a_segment_never_waits_for_the_lock():
    # a pool's finalizer may run inside a garbage collection in a thread that holds the cache's lock
    from petastorm.reader_impl.process.segment_mapping import SegmentMapping

    fd = os.memfd_create("petastorm-test", os.MFD_CLOEXEC)
    os.ftruncate(fd, MB)
    mapping = SegmentMapping(fd, MB)
    with SEGMENT_CACHE._lock:
        assert SEGMENT_CACHE.put(fd, MB, mapping) is False  # let go at once, not a deadlock
    with pytest.raises(OSError):
        os.fstat(fd)  # and its descriptor is closed


def test_released_results_are_bequeathed_when_the_pool_stops():
    seen, diag, _ = _run(20, MB, 0)  # every result dropped by the consumer before stop
    assert seen == [(float(i), float(i)) for i in range(20)]
    assert len(SEGMENT_CACHE) >= min(diag["segments_received"], 16) - 2


def npy_column_factory():
    """Decodes a 1 MB column of (64, 64) float32 npy cells with NdarrayCodec, as the reader's worker does."""
    def factory():
        import pyarrow as pa

        from petastorm.codecs import NdarrayCodec
        from petastorm.unischema import UnischemaField

        field = UnischemaField("arr", np.float32, (64, 64), NdarrayCodec(), False)
        cells = [bytes(field.codec.encode(field, np.full((64, 64), i, np.float32))) for i in range(64)]
        column = pa.array(cells, pa.binary())

        def work(item):
            return ColumnBatch({"arr": field.codec.decode_column(field, column)}, 64, item)
        return work
    return factory


@pytest.mark.slow
@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_workers_decode_ndarray_cells_straight_into_shared_memory(method):
    # a 'spawn' worker starts without petastorm.codecs imported: the shared-memory allocator must be
    # installed all the same, or decoded arrays would be pickled through the pipe. The cells are copied into
    # shared memory in one piece, npy headers included: the array views them, rows a cell apart
    pool = ProcessPool(1, 2, start_method=method, transport="shm")
    pool.start(npy_column_factory())
    try:
        for batch in pool.imap(_items(3)):
            arr = batch.columns["arr"]
            assert arr.shape == (64, 64, 64) and arr[5, 0, 0] == 5 and arr[63, 63, 63] == 63
            assert arr.strides[1:] == (256, 4) and arr.strides[0] > 64 * 64 * 4 and arr[7].flags.c_contiguous
        d = pool.diagnostics
    finally:
        pool.join()
    assert d["bytes_shm"] >= 3 * 64 * 64 * 64 * 4 and d["bytes_inband"] < 64 * 1024


def test_join_from_another_thread_while_the_consumer_reads_ends_both_cleanly(monkeypatch):
    import threading
    import time

    pool = ProcessPool(2, 2, transport="shm")
    pool.start(filled_factory(MB, 0))
    seen = []
    joiner = threading.Thread(target=lambda: (time.sleep(0.05), pool.join()))
    t0 = time.monotonic()
    for batch in pool.imap(_items(100000)):
        seen.append(float(batch.columns["big"][0]))
        if len(seen) == 1:  # workers are up: join from another thread while this one keeps reading
            joiner.start()
    joiner.join(10)
    assert not joiner.is_alive() and time.monotonic() - t0 < 10
    assert 0 < len(seen) < 100000 and seen == [float(i) for i in range(len(seen))]
    assert all(not p.is_alive() for p in [w.process for w in pool._state.workers])


def test_every_segment_of_a_stopped_pool_reaches_the_cache_once_its_last_results_are_dropped():
    import gc

    pool = ProcessPool(2, 2, transport="shm")
    pool.start(filled_factory(2 * MB, 0))
    try:
        last = [b.columns["big"] for b in pool.imap(_items(12))][-3:]  # held past stop, like a last row
        created = pool.diagnostics["segments_received"]
    finally:
        pool.join()
    cached_at_stop = len(SEGMENT_CACHE)
    del last
    gc.collect()
    # the held segments arrive once released (none is lost; a worker may have dropped surplus free ones)
    assert cached_at_stop < len(SEGMENT_CACHE) <= created


def _memfds():
    """This process's fds on petastorm's memfd segments."""
    out = []
    for name in os.listdir(f"/proc/{os.getpid()}/fd"):
        try:
            if "memfd:petastorm" in os.readlink(f"/proc/{os.getpid()}/fd/{name}"):
                out.append(int(name))
        except OSError:
            pass
    return out


def test_segments_promised_to_the_cache_stay_within_its_bounds_and_are_not_inheritable():
    # every pool's results are kept: each stop bequeaths segments that results still use; the fds the
    # parent keeps for them (until the results go) must not grow with the number of pools
    kept = []
    counts = []
    for _ in range(5):
        _seen, _diag, held = _run(20, MB, 0, keep=True)
        kept.append(held)
        counts.append(len(_memfds()))
    from petastorm.reader_impl.process.segment_cache import CACHE_MAX_SEGMENTS

    assert max(counts) <= CACHE_MAX_SEGMENTS, counts
    assert all(not os.get_inheritable(fd) for fd in _memfds())  # os.system & co. do not inherit them
    assert [float(a[0]) for a in kept[0]] == [float(i) for i in range(20)]  # and nothing was overwritten


def test_clearing_the_cache_also_cancels_the_segments_promised_to_it():
    import gc

    _seen, _diag, kept = _run(8, MB, 0, keep=True)
    clear_segment_cache()
    del kept, _seen, _diag
    gc.collect()
    assert len(SEGMENT_CACHE) == 0 and SEGMENT_CACHE.nbytes == 0
    assert _memfds() == []  # their fds were closed when the results went


def test_workers_of_a_pool_get_even_shares_of_the_cached_segments():
    # the first worker used to take the 5 largest: a second one made fresh segments every pass (each a
    # page fault per 4 KiB) while others stayed in the cache
    from petastorm.reader_impl.process.segment_cache import SegmentCache
    from petastorm.reader_impl.process.segment_mapping import SegmentMapping

    cache = SegmentCache()
    sizes = [MB, 3 * MB, 2 * MB, 3 * MB, MB, 2 * MB, MB]
    for size in sizes:
        fd = os.memfd_create("petastorm-test", os.MFD_CLOEXEC)
        os.ftruncate(fd, size)
        assert cache.put(fd, size, SegmentMapping(fd, size))
    first, second = cache.take_share(2), cache.take_share(1)
    assert len(cache) == 0 and len(first) == 4 and len(second) == 3
    assert [s for _fd, s, _m in first] == [3 * MB, 2 * MB, MB, MB]  # largest first, every other one
    assert [s for _fd, s, _m in second] == [3 * MB, 2 * MB, MB]
    for fd, _size, _mapping in first + second:
        os.close(fd)
