"""The process pool's ``output_queue_size``: results finished by the workers and not yet taken by the consumer,
also those still in the workers' pipes (helper G4, issue 11)."""
import time

from petastorm import make_reader


def test_process_pool_output_queue_size_counts_results_still_in_the_pipes(synthetic_dataset):
    # it counted the reorder buffer only: 0 while every finished result sat in a worker's pipe (the consumer
    # takes them in only as it iterates), so a user watching the queue saw a starved consumer
    with make_reader(synthetic_dataset, reader_pool_type="process", workers_count=2, num_epochs=1,
                     shuffle_row_groups=False) as reader:
        first = next(reader)
        assert first.id == 0
        deadline = time.monotonic() + 20
        diag = reader.diagnostics
        while diag["output_queue_size"] < diag["items_inprocess"] - 1 and time.monotonic() < deadline:
            time.sleep(0.02)  # the items submitted finish in a few ms
            diag = reader.diagnostics
        # every item in flight but the one being read is finished (and waiting) by now
        assert diag["output_queue_size"] >= diag["items_inprocess"] - 1 >= 1
        assert diag["output_queue_size"] == diag["pool_reorder_buffered"] + diag.get("pool_results_waiting", 0)
        ids = [first.id] + [row.id for row in reader]  # nothing lost or repeated by counting them
    assert ids == list(range(100))
    assert reader.diagnostics["output_queue_size"] == 0


def test_diagnostics_from_another_thread_while_the_consumer_reads_lose_no_row(synthetic_dataset):
    # diagnostics takes finished results in from whatever thread calls it: the consumer, possibly waiting on the
    # same connections meanwhile, must still get every row once, in order, and not wait for a result taken
    import threading

    stop = threading.Event()
    calls = [0]
    with make_reader(synthetic_dataset, reader_pool_type="process", workers_count=2, num_epochs=2,
                     shuffle_row_groups=False) as reader:
        def watch():
            while not stop.is_set():
                assert reader.diagnostics["output_queue_size"] >= 0
                calls[0] += 1

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        t0 = time.monotonic()
        try:
            ids = [row.id for row in reader]
        finally:
            stop.set()
            watcher.join(10)
    assert ids == list(range(100)) * 2
    assert calls[0] > 0 and not watcher.is_alive()
    assert time.monotonic() - t0 < 60  # (a result taken by the watcher left the consumer waiting: a hang)


def test_diagnostics_between_passes_lose_no_row_of_the_next_pass(synthetic_dataset):
    with make_reader(synthetic_dataset, reader_pool_type="process", workers_count=2, num_epochs=1,
                     shuffle_row_groups=False) as reader:
        first = [row.id for row in reader]
        reader.reset()
        for _ in range(20):
            assert reader.diagnostics["output_queue_size"] >= 0
        it = iter(reader)
        second = [next(it).id]
        for _ in range(50):  # results of the running pass taken in meanwhile are yielded in order
            reader.diagnostics  # noqa: B018
            time.sleep(0.001)
        second += [row.id for row in it]
    assert first == second == list(range(100))
