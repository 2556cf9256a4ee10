"""Shared-memory transport: zero-copy results from arrays allocated in segments, segment reuse rules, and the
fork server's preload list read from the worker factory."""
import gc
import io
import sys

import cloudpickle
import numpy as np
import pytest
from _fixtures.shm import ShmPair

from petastorm.reader_impl.process import ProcessPool
from petastorm.reader_impl.process.fork_server import modules_for_factory
from petastorm.reader_impl.process.transport import ShmWriter, shm_supported
from petastorm.reader_impl.process.worker_main import worker_batch_allocator
from petastorm.reader_impl.work_item import ColumnBatch, WorkItem

cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.skipif(not shm_supported(), reason="memfd segments need Linux")

MB = 1024 * 1024


@pytest.fixture
def pair():
    p = ShmPair()
    yield p
    p.close()


def test_an_allocated_array_crosses_without_a_copy_and_others_are_copied(pair):
    x = pair.writer.allocate((64, 128, 128), np.float32)
    x[...] = np.arange(64, dtype=np.float32)[:, None, None]
    small_big = np.ones(300_000)  # not allocated by the writer: copied into a segment
    payload, out = pair.roundtrip({"x": x, "y": small_big})
    assert payload[0] == "shm"
    assert pair.writer.bytes_zero_copy == x.nbytes
    assert pair.writer.bytes_copied == small_big.nbytes
    assert {d[0] for d in payload[2]} == {0, 1}  # two segments: the lent one and the copy
    np.testing.assert_array_equal(out["x"][:, 0, 0], np.arange(64, dtype=np.float32))
    assert out["y"].sum() == 300_000


def test_a_lent_segment_is_not_reused_while_the_parent_holds_its_result(pair):
    x = pair.writer.allocate((4 * MB,), np.uint8)
    x[:] = 7
    _payload, held = pair.roundtrip(x)
    del x
    gc.collect()  # the worker's array is gone, the parent's is not
    for i in range(5):
        y = pair.writer.allocate((4 * MB,), np.uint8)
        y[:] = i
        _p, out = pair.roundtrip(y)
        del y, out, _p
        pair.release_collected()
    assert (held == 7).all()
    assert pair.reader.segments_received == 2  # the held one, and one reused for the five others


def test_a_lent_segment_is_not_reused_while_the_worker_keeps_the_array(pair):
    kept = pair.writer.allocate((2 * MB,), np.uint8)
    kept[:] = 9
    _p, out = pair.roundtrip(np.zeros(10))  # in band, unrelated
    for i in range(3):
        y = pair.writer.allocate((2 * MB,), np.uint8)
        y[:] = i
        assert not np.shares_memory(y, kept)
        _p, out = pair.roundtrip(y)
        del y, out, _p
        pair.release_collected()
    assert (kept == 9).all()


def test_every_segment_of_a_result_is_released_when_its_last_array_dies(pair):
    x = pair.writer.allocate((MB,), np.uint8)
    z = pair.writer.allocate((MB,), np.uint8)
    payload, out = pair.roundtrip({"x": x, "z": z, "copied": np.ones(MB, np.uint8)})
    del x, z, payload
    keep = out["z"][10:20]  # a view keeps its segment alive, the others go
    del out
    released = pair.release_collected()
    assert len(released) == 2
    del keep
    assert len(pair.release_collected()) == 1
    assert all(seg.free for seg in pair.writer._segments.values())


def test_an_abandoned_payload_releases_all_its_segments(pair):
    x = pair.writer.allocate((MB,), np.uint8)
    payload = pair.writer.encode({"x": x, "c": np.ones(MB, np.uint8)})
    for m in pair.msgs:
        if m[0] == "seg":
            pair.reader.add_segment(m[1], m[2])
    pair.msgs.clear()
    pair.reader.discard(payload)
    assert sorted(sid for _k, sid in pair.releases) == [0, 1]


def test_the_pipe_transport_allocates_nothing():
    writer = ShmWriter(lambda m: None, None, "pipe")
    assert writer.allocate((10, 10), np.float32) is None


def shm_alloc_factory():
    def factory():
        alloc = worker_batch_allocator()

        def work(item):
            arr = alloc((256, 64, 64), np.float32) if alloc is not None else np.empty((256, 64, 64), np.float32)
            arr[...] = item.position
            return ColumnBatch({"arr": arr, "lent": np.array([alloc is not None])}, 256, item)
        return work
    return factory


def test_process_pool_results_decoded_into_shared_memory_stay_intact_while_held():
    items = [WorkItem(epoch=0, position=i, row_group=i, row_start=0, row_stop=256) for i in range(24)]
    pool = ProcessPool(2, 4)
    pool.start(shm_alloc_factory())
    try:
        held = []
        for i, batch in enumerate(pool.imap(items)):
            assert batch.columns["lent"][0]  # the worker got the shared-memory allocator
            assert batch.columns["arr"][0, 0, 0] == i
            if i % 5 == 0:
                held.append((i, batch.columns["arr"]))
        for i, arr in held:
            assert (arr == i).all()
        assert worker_batch_allocator() is None  # the parent has none
    finally:
        pool.stop()
        pool.join()


def _factory_with(obj):
    def factory():
        return lambda item: obj
    return factory


def test_modules_for_factory_names_what_unpickling_imports_and_lazy_codec_imports():
    from petastorm.codecs import CompressedImageCodec, NdarrayCodec

    plain = modules_for_factory(cloudpickle.dumps(_factory_with(NdarrayCodec())))
    assert "petastorm.codecs" in plain
    assert "cv2" not in plain
    images = modules_for_factory(cloudpickle.dumps(_factory_with(CompressedImageCodec("png"))))
    assert "cv2" in images and "petastorm.image_io" in images


def test_modules_for_factory_leaves_out_main_and_unreadable_pickles():
    class Local:  # defined here, pickled by value
        pass

    names = modules_for_factory(cloudpickle.dumps(_factory_with(Local())))
    assert "__main__" not in names
    assert all(name in sys.modules for name in names)
    assert modules_for_factory(b"not a pickle") == []


def test_modules_for_factory_preloads_no_user_module(tmp_path, monkeypatch):
    (tmp_path / "user_transform_mod.py").write_text("def f(x):\n    return x\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import user_transform_mod

    try:
        names = modules_for_factory(cloudpickle.dumps(_factory_with(user_transform_mod.f)))
        assert "user_transform_mod" not in names  # imported by each worker, never by the fork server
    finally:
        sys.modules.pop("user_transform_mod", None)


# ---- strided arrays travel as their base plus the view ------------------------------------------------

def test_a_strided_view_of_most_of_its_base_travels_out_of_band_and_is_rebuilt():
    import pickle

    from petastorm.reader_impl.process.result_pickle import ResultPickler, strided_reduce

    base = np.arange(10 * 40, dtype=np.float32).reshape(10, 40)
    view = base[:, 4:36].reshape(10, 4, 8)[:, :, :]  # rows 160 bytes apart, 128 bytes each
    assert not view.flags.c_contiguous
    buffers = []
    sink = io.BytesIO()
    ResultPickler(sink, protocol=5, buffer_callback=buffers.append).dump(view)
    assert len(buffers) == 1 and buffers[0].raw().nbytes == base.nbytes  # the base, out of band
    back = pickle.loads(sink.getvalue(), buffers=buffers)
    np.testing.assert_array_equal(back, view)
    assert back.strides == view.strides and back.dtype == view.dtype
    # what numpy pickles in band stays as it was
    assert strided_reduce(base) is None  # contiguous
    assert strided_reduce(base[::-1]) is None  # negative stride
    assert strided_reduce(np.arange(1000)[::10]) is None  # a small part of a big base: numpy copies it
    assert strided_reduce(np.empty((4, 4), dtype=object)[:, :2]) is None


def test_process_pool_ndarray_batches_have_the_thread_pools_layout(tmp_path, monkeypatch):
    from petastorm import make_batch_reader, write_dataset
    from petastorm.codecs import NdarrayCodec
    from petastorm.unischema import Unischema, UnischemaField

    schema = Unischema("S", [UnischemaField("id", np.int64, (), None, False),
                             UnischemaField("matrix", np.float32, (64, 64), NdarrayCodec(), False)])
    rng = np.random.default_rng(0)
    url = "file://" + str(tmp_path / "ds")
    write_dataset(url, schema, ({"id": i, "matrix": rng.random((64, 64), dtype=np.float32)} for i in range(256)),
                  row_group_size_mb=2, progress=False, workers_count=1)  # batches of ~2 MB: copied as a span
    monkeypatch.setenv("PETASTORM_STARTUP_LANE", "0")  # every batch made by a worker process

    def read(pool):
        with make_batch_reader(url, reader_pool_type=pool, workers_count=2, seed=4) as reader:
            batches = list(reader)
            return batches, reader.diagnostics
    threads, _ = read("thread")
    processes, diag = read("process")
    for t, p in zip(threads, processes):
        np.testing.assert_array_equal(t.matrix, p.matrix)
        if p.matrix.nbytes >= 1 << 20:  # (a small batch is a compact copy)
            assert t.matrix.strides == p.matrix.strides != (16384, 256, 4)  # the stored cells, headers between
        assert p.matrix.flags.writeable and all(row.flags.c_contiguous for row in p.matrix)
    assert sum(b.matrix.nbytes >= 1 << 20 for b in processes) >= 2
    assert diag["pool_items_in_parent"] == 0 and diag["pool_bytes_shm"] >= sum(b.matrix.nbytes for b in processes
                                                                          if b.matrix.nbytes >= 1 << 20)
    assert diag["pool_bytes_inband"] < 64 * 1024
