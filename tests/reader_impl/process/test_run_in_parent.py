"""The process pool's start-up lane: the parent runs the first items while the worker processes start."""
import collections
import multiprocessing
import os
import sys
import threading
import time

import cloudpickle
import numpy as np
import psutil
import pytest

from petastorm import TransformSpec, make_batch_reader, make_reader
from petastorm.errors import PetastormWorkerError
from petastorm.predicates import in_lambda
from petastorm.reader_impl.process import ProcessPool
from petastorm.reader_impl.process.fork_server import main_module_not_reimported
from petastorm.reader_impl.work_item import ColumnBatch, WorkItem

cloudpickle.register_pickle_by_value(sys.modules[__name__])

PARENT = os.getpid()


def _items(n):
    return [WorkItem(epoch=0, position=i, row_group=i, row_start=0, row_stop=4) for i in range(n)]


def slow_start_factory(worker_delay_s=1.0, parent_fails=False, fail_at=None, item_s=0.0):
    """Workers that take ``worker_delay_s`` to build in a worker process (none in the parent) and ``item_s``
    per item; each result says which process made it."""
    def factory():
        if os.getpid() != PARENT:
            time.sleep(worker_delay_s)
        elif parent_fails:
            raise RuntimeError("this worker cannot be built in the parent")

        def work(item):
            if fail_at is not None and item.position == fail_at:
                raise ValueError(f"item {item.position} is bad")
            time.sleep(item_s)
            return ColumnBatch({"pos": np.array([item.position])}, 1, item, {"from": os.getpid()})
        return work
    return factory


def _lane_threads():
    return [t for t in threading.enumerate() if t.name in ("petastorm-startup-lane", "petastorm-pool-start")]


def test_the_parent_serves_the_first_items_while_the_workers_start_in_order():
    pool = ProcessPool(2, 2, startup_lane=True)
    pool.start(slow_start_factory(worker_delay_s=1.0, item_s=0.05))
    try:
        t0 = time.perf_counter()
        gen = pool.imap(_items(40))
        first = next(gen)
        first_s = time.perf_counter() - t0
        out = [first] + list(gen)
    finally:
        pool.join()
    assert [b.columns["pos"][0] for b in out] == list(range(40))  # plan order, whoever ran it
    origins = [b.extra["from"] for b in out]
    assert origins[0] == PARENT and first_s < 0.9  # before any worker could have answered
    in_parent = origins.count(PARENT)
    assert pool.diagnostics["items_in_parent"] == in_parent >= 2
    # once a worker is up (~1 s, 20 items of 50 ms) the parent takes no new item: the workers end the pass
    assert in_parent < 36 and all(o != PARENT for o in origins[-4:]), origins
    assert not _lane_threads()


def test_without_the_lane_every_item_runs_in_a_worker_process():
    with ProcessPool(2, 2) as pool:
        pool.start(slow_start_factory(worker_delay_s=0.0))
        out = list(pool.imap(_items(10)))
        assert pool.diagnostics["items_in_parent"] == 0
    assert all(b.extra["from"] != PARENT for b in out)


def test_an_error_in_the_lane_is_raised_at_its_turn_with_the_traceback():
    pool = ProcessPool(2, 2, startup_lane=True)
    pool.start(slow_start_factory(worker_delay_s=1.0, fail_at=1))
    try:
        gen = pool.imap(_items(10))
        first = next(gen)
        assert first.extra["from"] == PARENT
        with pytest.raises(ValueError, match="item 1 is bad") as info:
            next(gen)
        assert "work" in info.value.worker_traceback
    finally:
        pool.join()
    assert not _lane_threads()


def test_a_factory_that_fails_in_the_parent_leaves_the_items_to_the_workers():
    with ProcessPool(2, 2, startup_lane=True) as pool:
        pool.start(slow_start_factory(worker_delay_s=0.2, parent_fails=True))
        out = list(pool.imap(_items(12)))
        assert pool.diagnostics["items_in_parent"] == 0
    assert [b.columns["pos"][0] for b in out] == list(range(12))
    assert all(b.extra["from"] != PARENT for b in out)


def test_an_error_starting_the_processes_is_raised_by_imap(monkeypatch):
    ctx = multiprocessing.get_context("forkserver")

    def refuse(process_obj):
        raise OSError("no more processes today")

    monkeypatch.setattr(type(ctx.Process()), "_Popen", staticmethod(refuse))
    pool = ProcessPool(2, 2, start_method="forkserver", startup_lane=True)
    pool.start(slow_start_factory(worker_delay_s=0.0))
    try:
        with pytest.raises(PetastormWorkerError,
                           match="could not start worker process 0.*no more processes today") as info:
            for _ in pool.imap(_items(500)):
                time.sleep(0.01)
        assert isinstance(info.value.__cause__, OSError)  # the start error keeps its cause
    finally:
        pool.join()
    assert not _lane_threads()


def test_join_right_after_start_leaves_no_process_or_thread():
    me = psutil.Process()
    from petastorm.reader_impl.process.fork_server import helper_process_pids

    before = {p.pid for p in me.children(recursive=True)}
    for _ in range(3):
        pool = ProcessPool(2, 2, startup_lane=True)
        pool.start(slow_start_factory(worker_delay_s=0.0))
        pool.join()
    deadline = time.monotonic() + 5
    left = None
    while time.monotonic() < deadline:
        infra = set(helper_process_pids())
        left = [p.pid for p in me.children(recursive=True)
                if p.pid not in before and p.pid not in infra and p.status() != psutil.STATUS_ZOMBIE]
        if not left:
            break
        time.sleep(0.05)
    assert not left, f"processes {left} outlived join()"
    assert not _lane_threads()


def test_preparation_data_lose_the_main_module_only_in_the_starting_thread():
    from multiprocessing import spawn

    main = sys.modules["__main__"]
    file_before, spec_before = getattr(main, "__file__", None), getattr(main, "__spec__", None)
    seen = {}

    def other_thread():
        seen["other"] = spawn.get_preparation_data("x")
        seen["other_file"] = getattr(main, "__file__", None)

    outside = spawn.get_preparation_data("x")
    with main_module_not_reimported():
        inside = spawn.get_preparation_data("x")
        t = threading.Thread(target=other_thread)
        t.start()
        t.join()
        assert getattr(main, "__file__", None) == file_before and getattr(main, "__spec__", None) is spec_before
    keys = ("init_main_from_name", "init_main_from_path")
    assert not any(k in inside for k in keys)
    assert {k: outside.get(k) for k in keys} == {k: seen["other"].get(k) for k in keys}
    assert seen["other_file"] == file_before
    assert spawn.get_preparation_data("x").keys() == outside.keys()


def _cold_fork_server(monkeypatch):
    """Make the running fork server count as cold, as in a fresh interpreter."""
    import petastorm.reader_impl.process.fork_server as preload

    monkeypatch.setattr(preload, "_FORKED_BY_SERVER", [None])


PLAIN_FIELDS = ["id", "value", "matrix", "var"]  # no image: decoding one would import OpenCV in the parent


@pytest.mark.parametrize("factory", [make_reader, make_batch_reader])
def test_readers_use_the_lane_only_without_user_functions(synthetic_dataset, factory, monkeypatch):
    def ids(reader):
        return [r.id for r in reader] if factory is make_reader else [b.id.tolist() for b in reader]

    _cold_fork_server(monkeypatch)
    with factory(synthetic_dataset, reader_pool_type="process", workers_count=2, seed=1,
                 shuffle_row_groups=True, schema_fields=PLAIN_FIELDS) as reader:
        lane_rows = ids(reader)
        diag = reader.diagnostics
        assert diag["pool_startup_lane"] is True and diag["pool_items_in_parent"] >= 1
    with factory(synthetic_dataset, reader_pool_type="thread", workers_count=2, seed=1,
                 shuffle_row_groups=True, schema_fields=PLAIN_FIELDS) as reader:
        thread_rows = ids(reader)
    assert lane_rows == thread_rows

    def where(row):
        row["id"] = row["id"] * 0 + os.getpid() if factory is make_batch_reader else os.getpid()
        return row

    _cold_fork_server(monkeypatch)
    with factory(synthetic_dataset, reader_pool_type="process", workers_count=2, schema_fields=PLAIN_FIELDS,
                 transform_spec=TransformSpec(where)) as reader:
        pids = {int(np.asarray(r.id).reshape(-1)[0]) for r in reader}
        assert reader.diagnostics["pool_startup_lane"] is False
        assert reader.diagnostics["pool_items_in_parent"] == 0
    assert PARENT not in pids
    for extra in ({"predicate": in_lambda(["id"], lambda i: True)}, {"schema_fields": PLAIN_FIELDS + ["image"]}):
        _cold_fork_server(monkeypatch)
        options = {"schema_fields": PLAIN_FIELDS, **extra}
        with factory(synthetic_dataset, reader_pool_type="process", workers_count=2, **options) as reader:
            list(reader)
            assert reader.diagnostics["pool_startup_lane"] is False, extra
            assert reader.diagnostics["pool_items_in_parent"] == 0


def test_the_lane_can_be_turned_off_by_environment(monkeypatch):
    monkeypatch.setenv("PETASTORM_STARTUP_LANE", "0")
    pool = ProcessPool(2, 2, startup_lane=True)
    assert pool.startup_lane is False
    pool.start(slow_start_factory(worker_delay_s=0.0))
    try:
        out = list(pool.imap(_items(6)))
    finally:
        pool.join()
    assert all(b.extra["from"] != PARENT for b in out) and pool.diagnostics["items_in_parent"] == 0


def test_no_lane_with_the_fork_start_method():
    # a fork while the lane's thread holds an allocator's lock would give the child that lock held
    assert ProcessPool(2, 2, start_method="fork", startup_lane=True).startup_lane is False
    assert ProcessPool(2, 2, start_method="spawn", startup_lane=True).startup_lane is True


# ---- regressions found in review ------------------------------------------------------------------------

class _StopOnCheck(collections.deque):
    """A pending queue whose truth test lets another thread's ``stop()`` run first (a GIL switch there)."""

    pool = None
    armed = False

    def __bool__(self):
        nonempty = len(self) > 0
        if _StopOnCheck.armed and nonempty:
            _StopOnCheck.armed = False
            t = threading.Thread(target=_StopOnCheck.pool.stop)
            t.start()
            t.join()
        return nonempty


def test_stop_from_another_thread_while_the_lane_takes_an_item():
    _StopOnCheck.pool, _StopOnCheck.armed = None, False
    pool = ProcessPool(2, 2, startup_lane=True)
    pool.start(slow_start_factory(worker_delay_s=0.0))
    try:
        _StopOnCheck.pool = pool
        pool._pending = _StopOnCheck()
        _StopOnCheck.armed = True
        assert list(pool.imap(_items(5))) == []  # stopped: the generator just ends
    finally:
        pool.join()


class _SlowLaneCheck(ProcessPool):
    """Pauses after one empty look at the lane inside ``_wait``: the lane answers meanwhile."""

    widen = True

    def _drain_lane(self, gen, results):
        got = super()._drain_lane(gen, results)
        if (_SlowLaneCheck.widen and not got and self._state.lane.running is not None
                and sys._getframe(1).f_code.co_name == "_wait"):
            _SlowLaneCheck.widen = False
            time.sleep(0.05)
        return got


def test_a_lane_result_posted_while_the_consumer_looks_elsewhere_wakes_it():
    with ProcessPool(1, 1) as warm:  # a warm fork server: the start thread's wake-up comes before the lane's result
        warm.start(slow_start_factory(worker_delay_s=0.0))
        list(warm.imap(_items(1)))
    # On a loaded machine the lane may answer before the consumer first looks, which does not exercise the
    # window: try a few times; every try must be timely, and at least one must hit the window.
    for _ in range(5):
        _SlowLaneCheck.widen = True
        pool = _SlowLaneCheck(2, 2, startup_lane=True)
        pool.start(slow_start_factory(worker_delay_s=3.0, item_s=0.03))
        try:
            t0 = time.perf_counter()
            first = next(pool.imap(_items(1)))
            assert first.extra["from"] == PARENT
            assert time.perf_counter() - t0 < 0.6  # not the 1 s poll timeout
        finally:
            pool.join()
        if _SlowLaneCheck.widen is False:
            break
    assert _SlowLaneCheck.widen is False, "the consumer never looked at the lane before its result came"


def test_a_start_thread_that_cannot_start_is_a_worker_error_and_leaks_nothing(monkeypatch):
    real_start = threading.Thread.start

    def start(self):
        if self.name == "petastorm-pool-start":
            raise RuntimeError("can't start new thread")
        return real_start(self)

    monkeypatch.setattr(threading.Thread, "start", start)
    pool = ProcessPool(2, 2, startup_lane=True)
    with pytest.raises(PetastormWorkerError, match="could not start worker process 0") as info:
        pool.start(slow_start_factory(worker_delay_s=0.0))
    assert isinstance(info.value.__cause__, RuntimeError)
    assert pool._state.closed and pool._state.wake_w == -1
    assert not _lane_threads()


def test_a_lane_stuck_in_an_item_is_warned_of_and_join_keeps_its_bound(monkeypatch, tmp_path):
    import petastorm.reader_impl.process.pool as process_pool

    monkeypatch.setattr(process_pool, "JOIN_TIMEOUT_S", 0.5)
    release = str(tmp_path / "release")

    def factory():
        def work(item):
            deadline = time.monotonic() + 10
            while os.getpid() == PARENT and not os.path.exists(release) and time.monotonic() < deadline:
                time.sleep(0.01)
            return ColumnBatch({"pos": np.array([item.position])}, 1, item, {})
        if os.getpid() != PARENT:
            time.sleep(0.3)
        return work

    pool = ProcessPool(1, 0, startup_lane=True)
    pool.start(factory)
    gen = pool.imap(_items(3))
    consumer = threading.Thread(target=lambda: list(gen))
    consumer.start()
    time.sleep(0.5)
    t0 = time.perf_counter()
    with pytest.warns(RuntimeWarning, match="start-up lane did not end"):
        pool.join()
    assert time.perf_counter() - t0 < 2.0
    open(release, "w").close()
    consumer.join(10)
    deadline = time.monotonic() + 5
    while _lane_threads() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _lane_threads()


def _runs_user_code(transform_spec, predicate, schema, fields):
    """Whether the lane is refused to a reader's factory of these (no image field among them)."""
    from types import SimpleNamespace

    from petastorm.reader_impl.process.run_in_parent import lane_allowed

    spec = SimpleNamespace(transform_spec=transform_spec, predicate=predicate, schema=schema, fields=fields)
    return not lane_allowed(SimpleNamespace(spec=spec))


def test_a_codec_class_of_the_user_keeps_every_item_in_the_workers():
    from petastorm.codecs import CompressedImageCodec, NdarrayCodec
    from petastorm.reader_impl.process.run_in_parent import lane_allowed
    from petastorm.unischema import Unischema, UnischemaField

    class MyCodec(NdarrayCodec):
        pass

    schema = Unischema("S", [UnischemaField("id", np.int64, (), None, False),
                             UnischemaField("a", np.float32, (2,), NdarrayCodec(), False),
                             UnischemaField("b", np.float32, (2,), MyCodec(), False)])
    assert not _runs_user_code(None, None, schema, ["id", "a"])
    assert _runs_user_code(None, None, schema, ["id", "b"])
    assert _runs_user_code(TransformSpec(lambda r: r), None, schema, ["id"])
    assert _runs_user_code(None, in_lambda(["id"], lambda i: True), schema, ["id"])
    images = Unischema("I", [UnischemaField("img", np.uint8, (4, 4, 3), CompressedImageCodec("png"), False)])
    assert _runs_user_code(None, None, images, ["img"])  # no user code, but decoding would load OpenCV here
    assert not lane_allowed(lambda: None)  # not a reader's factory

    class MyNumber(float):
        pass

    from decimal import Decimal

    from petastorm.codecs import ScalarCodec
    from petastorm.spark_types import spark_type

    odd = Unischema("O", [UnischemaField("x", MyNumber, (), ScalarCodec(spark_type("DoubleType")), False),
                          UnischemaField("d", Decimal, (), ScalarCodec(spark_type("DecimalType", 10, 2)), False),
                          UnischemaField("s", np.str_, (), ScalarCodec(spark_type("StringType")), False)])
    assert _runs_user_code(None, None, odd, ["x"])
    assert not _runs_user_code(None, None, odd, ["d", "s"])


def test_a_cold_lane_only_while_starting_a_worker_is_slow(monkeypatch):
    from petastorm.reader_impl.process import fork_server as preload

    with ProcessPool(1, 1, start_method="forkserver") as warm:  # the running fork server has forked for us
        warm.start(slow_start_factory(worker_delay_s=0.0))
        list(warm.imap(_items(2)))
    assert preload.fork_server_is_warm()
    with ProcessPool(1, 1, start_method="forkserver", startup_lane="cold") as pool:
        pool.start(slow_start_factory(worker_delay_s=0.0))
        list(pool.imap(_items(2)))
        assert pool.diagnostics["startup_lane"] is False and pool.diagnostics["items_in_parent"] == 0
    _cold_fork_server(monkeypatch)  # as in a fresh interpreter, or after the fork server was restarted
    assert not preload.fork_server_is_warm()
    with ProcessPool(1, 1, start_method="forkserver", startup_lane="cold") as pool:
        pool.start(slow_start_factory(worker_delay_s=0.5, item_s=0.01))
        out = list(pool.imap(_items(200)))
        assert pool.diagnostics["startup_lane"] is True and out[0].extra["from"] == PARENT
        assert any(b.extra["from"] != PARENT for b in out)
    assert preload.fork_server_is_warm()  # starting its worker proved the server warm again
    with ProcessPool(1, 1, start_method="spawn", startup_lane="cold") as pool:
        pool.start(slow_start_factory(worker_delay_s=0.0))
        assert pool.diagnostics["startup_lane"] is True
    with pytest.raises(Exception, match="startup_lane must be"):
        ProcessPool(1, 1, startup_lane="sometimes")


def test_a_restarted_fork_server_counts_as_cold(monkeypatch):
    from petastorm.reader_impl.process import fork_server as preload

    with ProcessPool(1, 1, start_method="forkserver") as warm:
        warm.start(slow_start_factory(worker_delay_s=0.0))
        list(warm.imap(_items(1)))
    assert preload.fork_server_is_warm()
    monkeypatch.setattr(preload, "_fork_server_pid", lambda: -1)  # another server than the one that forked
    assert not preload.fork_server_is_warm()
