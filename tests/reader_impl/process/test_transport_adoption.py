"""Segments a worker adopts from the parent's cache: kept cold (unmapped), mapped whole when first written,
and handed back when the pool stops even if never used (:meth:`ShmWriter.adopt`, :meth:`ShmWriter._acquire`)."""
import gc
import os
import socket

import numpy as np
import pytest
from _fixtures.shm import ShmPair

from petastorm.reader_impl.process.segment_mapping import SegmentMapping
from petastorm.reader_impl.process.transport import shm_supported

pytestmark = pytest.mark.skipif(not shm_supported(), reason="memfd segments need Linux")

MB = 1024 * 1024


def _resident_kb(addr: int) -> int:
    """Resident kB of this process's mapping that starts at ``addr`` (``/proc/self/smaps``)."""
    start = f"{addr:x}-"
    with open("/proc/self/smaps") as f:
        lines = f.read().splitlines()
    for i, line in enumerate(lines):
        if line.startswith(start):
            for field in lines[i + 1:]:
                if field.startswith("Rss:"):
                    return int(field.split()[1])
    raise AssertionError(f"no mapping at {addr:#x}")


class _Pool(ShmPair):
    """A worker's writer and the parent's reader over a real unix socket, and cached segments to give."""

    def gift(self, sizes, fill: int) -> list:
        """Cached segments (the parent's mappings written with ``fill``) handed to the worker; their ids."""
        segments = []
        for size in sizes:
            fd = os.memfd_create("petastorm-test", os.MFD_CLOEXEC)
            os.ftruncate(fd, size)
            mapping = SegmentMapping(fd, size, populate=True)
            np.frombuffer(mapping.exporter(), np.uint8)[:] = fill
            segments.append((fd, size, mapping))
        to_worker: list = []
        self.reader.give(to_worker.append, segments)
        (kind, entries), = to_worker
        assert kind == "gift"
        self.writer.adopt(entries)
        return [sid for sid, _size in entries]


@pytest.fixture
def pool():
    p = _Pool()
    yield p
    p.close()


def test_a_result_written_into_an_adopted_segment_reads_back_intact(pool):
    pool.gift([2 * MB, 2 * MB], fill=0xAB)
    sent = np.arange(3 * MB // 16, dtype=np.float64)  # 1.5 MB: copied into the smaller free segment that fits
    payload, got = pool.roundtrip({"x": sent})
    assert payload[0] == "shm" and pool.reader.segments_received == 0  # a gift served it, no fresh segment
    np.testing.assert_array_equal(got["x"], sent)
    x = pool.writer.allocate((2 * MB,), np.uint8)  # an array decoded straight into the other gift
    x[:] = 7
    _payload, got2 = pool.roundtrip(x)
    assert (got2 == 7).all() and pool.reader.segments_received == 0
    np.testing.assert_array_equal(got["x"], sent)  # the first result is untouched


def test_an_adopted_segment_maps_its_pages_only_once_written(pool):
    used, unused = pool.gift([2 * MB, 4 * MB], fill=1)
    segments = pool.writer._segments
    assert segments[used].cold and segments[unused].cold  # not mapped by the worker yet
    _payload, got = pool.roundtrip(np.full(MB, 5, np.uint8))
    assert (got == 5).all()
    assert _resident_kb(segments[used].mapping.addr) == 2 * 1024  # every page, in one call
    assert segments[unused].cold


def test_an_adopted_segment_never_used_goes_back_to_the_parent_when_the_pool_stops():
    pool = _Pool(max_free=1)  # the worker keeps one free segment it has written into
    try:
        used, unused = pool.gift([2 * MB, 4 * MB], fill=0)
        for i in range(3):
            _payload, got = pool.roundtrip(np.full(MB, i, np.uint8))
            assert (got == i).all()
            del got, _payload
            gc.collect()
            pool.writer.release([used])
        assert pool.writer._segments[unused].cold  # never needed: no page of it mapped by the worker
        assert pool.reader.segments_received == 0
        pool.writer.bequeath()
        (_kind, entries), = [m for m in pool.msgs if m[0] == "bequest"]
        assert sorted(sid for sid, _size in entries) == sorted([used, unused])
        _msg, fds, _flags, _addr = socket.recv_fds(pool.b, 1, 4)
        assert len(fds) == 2
        for fd in fds:
            os.close(fd)
    finally:
        pool.close()


def test_an_adopted_segment_that_cannot_be_mapped_is_let_go_and_the_result_still_arrives(pool):
    (gift,) = pool.gift([2 * MB], fill=0)
    seg = pool.writer._segments[gift]
    os.close(seg.fd)
    seg.fd = os.open(os.devnull, os.O_RDWR)  # mmap of it fails (ENODEV), as a segment the worker cannot map
    _payload, got = pool.roundtrip(np.full(MB, 3, np.uint8))
    assert (got == 3).all()
    assert gift not in pool.writer._segments and pool.reader.segments_received == 1  # a fresh one served it
    assert gift not in pool.reader._maps  # the worker told the parent to drop it
