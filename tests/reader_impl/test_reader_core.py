"""The Reader (reader_impl.reader_core) seen from make_reader / make_batch_reader: no thread or process
outlives it, several threads may read one reader, and its ``diagnostics`` and batched flags."""
import gc
import threading
import time

import psutil
import pytest

from petastorm import make_batch_reader, make_reader


def _infrastructure_pids():
    """multiprocessing's forkserver and resource tracker: one each per interpreter, shared by every
    reader and started once; they are not a reader's processes."""
    import multiprocessing.forkserver as fs
    import multiprocessing.resource_tracker as rt

    pids = {getattr(fs._forkserver, "_forkserver_pid", None), getattr(rt._resource_tracker, "_pid", None)}
    return {p for p in pids if p}


def _children():
    infra = _infrastructure_pids()
    out = []
    for p in psutil.Process().children(recursive=True):
        try:
            if p.status() == psutil.STATUS_ZOMBIE or p.pid in infra:
                continue
        except psutil.NoSuchProcess:
            continue
        out.append(p)
    return out


@pytest.mark.parametrize("pool", ["thread", "process"])
def test_no_thread_or_process_outlives_the_context_manager(synthetic_dataset, pool):
    threads_before = set(threading.enumerate())
    children_before = {p.pid for p in _children()}
    with make_reader(synthetic_dataset, reader_pool_type=pool, workers_count=2, num_epochs=None) as reader:
        for _ in range(30):
            next(reader)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        extra_threads = [t for t in threading.enumerate() if t not in threads_before and t.is_alive()]
        extra_children = [p for p in _children() if p.pid not in children_before]
        if not extra_threads and not extra_children:
            break
        time.sleep(0.05)
    assert not extra_threads and not extra_children


@pytest.mark.parametrize("pool", ["thread", "process"])
def test_an_abandoned_reader_is_cleaned_up_by_garbage_collection(synthetic_dataset, pool):
    threads_before = set(threading.enumerate())
    children_before = {p.pid for p in _children()}
    reader = make_reader(synthetic_dataset, reader_pool_type=pool, workers_count=2, num_epochs=None)
    next(reader)
    del reader
    gc.collect()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        extra_threads = [t for t in threading.enumerate() if t not in threads_before and t.is_alive()]
        extra_children = [p for p in _children() if p.pid not in children_before]
        if not extra_threads and not extra_children:
            break
        gc.collect()
        time.sleep(0.1)
    assert not extra_threads, extra_threads
    assert not extra_children


def test_one_reader_read_from_several_threads_yields_every_row_once(synthetic_dataset):
    from concurrent.futures import ThreadPoolExecutor

    with make_reader(synthetic_dataset, workers_count=2, num_epochs=3) as reader:
        def drain():
            out = []
            for row in reader:
                out.append(int(row.id))
            return out

        with ThreadPoolExecutor(4) as ex:
            parts = list(ex.map(lambda _: drain(), range(4)))
    assert sorted(sum(parts, [])) == sorted(list(range(100)) * 3)


def test_a_deleted_reader_stops_its_threads_without_gc(synthetic_dataset):
    import gc

    gc.disable()
    try:
        before = set(threading.enumerate())
        reader = make_reader(synthetic_dataset, workers_count=3, num_epochs=None)
        next(reader)
        del reader
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and [t for t in threading.enumerate() if t not in before and t.is_alive()]:
            time.sleep(0.05)
        assert not [t for t in threading.enumerate() if t not in before and t.is_alive()]
    finally:
        gc.enable()


# --- diagnostics and the batched flags --------------------------------------------------------------------


@pytest.mark.parametrize("pool", ["thread", "process"])
def test_diagnostics_count_rows_and_items_after_a_full_read(synthetic_dataset, pool):
    with make_reader(synthetic_dataset, reader_pool_type=pool, workers_count=2) as reader:
        before = reader.diagnostics
        assert isinstance(before, dict)
        assert before["rows_yielded"] == 0 and before["items_done"] == 0
        first = [next(reader) for _ in range(25)]
        middle = reader.diagnostics
        rest = list(reader)
        diag = reader.diagnostics

    assert len(first) + len(rest) == 100
    assert middle["rows_yielded"] == 25
    assert 3 <= middle["items_done"] <= 10
    assert diag["rows_yielded"] == 100
    assert diag["items_done"] == 10
    assert diag["epoch"] == 0 and diag["position"] == 10
    assert diag["pool_pool_type"] == pool
    assert diag["pool_workers_count"] == 2
    assert diag["pool_items_submitted"] == diag["pool_items_completed"] == diag["pool_items_yielded"] == 10
    assert diag["pool_items_failed"] == 0
    assert diag["pool_in_flight"] == 0
    if pool == "process":
        assert len(diag["pool_worker_pids"]) == 2
    else:
        assert diag["pool_threads_alive"] == 2


def test_diagnostics_of_a_batch_reader_count_batches(synthetic_dataset):
    with make_batch_reader(synthetic_dataset, reader_pool_type="thread", workers_count=2) as reader:
        batches = list(reader)
        diag = reader.diagnostics
    assert sum(len(b.id) for b in batches) == 100
    assert diag["rows_yielded"] == len(batches) == 10
    assert diag["items_done"] == 10 and diag["pool_items_completed"] == 10


def test_batched_flags(synthetic_dataset):
    with make_reader(synthetic_dataset, reader_pool_type="dummy") as reader:
        assert reader.is_batched_reader is False
        assert reader.batched_output is False
        assert not hasattr(next(reader).id, "__len__")  # one row, not a batch
    with make_batch_reader(synthetic_dataset, reader_pool_type="dummy") as reader:
        assert reader.is_batched_reader is True
        assert reader.batched_output is True
        assert len(next(reader).id) == 10  # a batch: one row group


@pytest.mark.timeout(60)
@pytest.mark.parametrize("factory", [make_reader, make_batch_reader])
def test_an_endless_reader_whose_predicate_keeps_no_row_warns_and_reads_on(synthetic_dataset, factory):
    # num_epochs=None over a selection that yields no row in a whole epoch: told once (a UserWarning), and the
    # reader reads on as 0.12.1's did (a later epoch may yield rows); a predicate that keeps some rows repeats them
    import warnings

    from petastorm.predicates import in_lambda

    with factory(synthetic_dataset, num_epochs=None, workers_count=2,
                 predicate=in_lambda(["id"], lambda v: v < 0)) as reader:
        with warnings.catch_warnings():
            warnings.filterwarnings("error", message=".*yielded no row")
            with pytest.raises(UserWarning, match=r"epoch 0 of this reader \(num_epochs=None\) yielded no row"):
                next(iter(reader))
    with factory(synthetic_dataset, num_epochs=None, workers_count=2, shuffle_row_groups=False,
                 predicate=in_lambda(["id"], lambda v: v == 3)) as reader:
        seen = []
        for item in reader:
            seen.extend(item.id.tolist() if factory is make_batch_reader else [item.id])
            if len(seen) >= 3:
                break
    assert seen == [3, 3, 3]


def test_seeded_says_whether_the_reader_was_made_with_a_seed(synthetic_dataset):
    # the torch loaders draw their shuffling seed from the global RNG over a reader made without one
    with make_reader(synthetic_dataset, reader_pool_type="dummy", seed=3) as reader:
        assert reader.seeded is True
    with make_reader(synthetic_dataset, reader_pool_type="dummy") as reader:
        assert reader.seeded is False
        assert reader.state_dict() is not None   # a drawn seed is still saved in its state


def test_has_transform_spec(synthetic_dataset):
    from petastorm.transform import TransformSpec

    with make_reader(synthetic_dataset, reader_pool_type="dummy", transform_spec=TransformSpec(lambda r: r)) as reader:
        assert reader.has_transform_spec is True
    with make_batch_reader(synthetic_dataset, reader_pool_type="dummy") as reader:
        assert reader.has_transform_spec is False
