"""Reader features that combine stages: ngrams, row-group selectors, cache re-shuffling, lifecycle."""
import gc
import os
import threading
import time

import psutil
import pytest

from petastorm import make_batch_reader, make_reader
from petastorm.ngram import NGram


def _ngram(ts_field="timestamp", delta=10, overlap=True):
    from _fixtures.datasets import SyntheticSchema as S

    return NGram({-1: [S.id, S.timestamp], 0: [S.id, S.value], 1: [S.id]}, delta_threshold=delta,
                 timestamp_field=getattr(S, ts_field), timestamp_overlap=overlap)


def test_ngrams_are_windows_of_consecutive_rows(synthetic_dataset):
    with make_reader(synthetic_dataset, schema_fields=_ngram(), shuffle_row_groups=False, workers_count=2) as reader:
        grams = list(reader)
    # 10 row groups of 10 rows: 8 windows of 3 consecutive rows per row group
    assert len(grams) == 80
    for g in grams:
        assert sorted(g) == [-1, 0, 1]
        assert int(g[0].id) == int(g[-1].id) + 1 == int(g[1].id) - 1
        assert g[0].value == pytest.approx(int(g[0].id) / 7)
        assert g[-1]._fields == ("id", "timestamp")


def test_ngram_delta_threshold_breaks_windows(synthetic_dataset):
    # consecutive timestamps are 10 apart: a threshold of 10 keeps every window, 5 breaks them all
    with make_reader(synthetic_dataset, schema_fields=_ngram(delta=10)) as reader:
        assert len(list(reader)) == 80
    with make_reader(synthetic_dataset, schema_fields=_ngram(delta=5)) as reader:
        assert list(reader) == []


def test_ngram_without_overlap(synthetic_dataset):
    with make_reader(synthetic_dataset, schema_fields=_ngram(overlap=False), shuffle_row_groups=False) as reader:
        grams = list(reader)
    # windows of 3 rows that share no timestamp: rows 0-2, 3-5 and 6-8 of each 10-row row group
    starts = [int(g[-1].id) for g in grams]
    assert starts == [rg * 10 + k for rg in range(10) for k in (0, 3, 6)]
    assert all(int(g[1].id) == int(g[-1].id) + 2 for g in grams)


def test_ngram_resume_continues_exactly(synthetic_dataset):
    kwargs = dict(schema_fields=_ngram(), seed=3, shuffle_rows=True, num_epochs=2)
    with make_reader(synthetic_dataset, **kwargs) as reader:
        full = [int(g[0].id) for g in reader]
    with make_reader(synthetic_dataset, **kwargs) as reader:
        head = [int(next(reader)[0].id) for _ in range(45)]
        state = reader.state_dict()
    with make_reader(synthetic_dataset, resume_from=state, **kwargs) as reader:
        tail = [int(g[0].id) for g in reader]
    assert head + tail == full


def test_rowgroup_selector_with_a_built_index(synthetic_dataset, tmp_path):
    import shutil

    from petastorm.etl.rowgroup_indexers import SingleFieldIndexer
    from petastorm.etl.rowgroup_indexing import build_rowgroup_index
    from petastorm.selectors import SingleIndexSelector

    path = str(tmp_path / "ds")
    shutil.copytree(synthetic_dataset[len("file://"):], path)
    url = "file://" + path
    build_rowgroup_index(url, None, [SingleFieldIndexer("by_decade", "id_div_10")])
    with make_reader(url, rowgroup_selector=SingleIndexSelector("by_decade", [2, 7])) as reader:
        ids = sorted(int(r.id) for r in reader)
    assert ids == list(range(20, 30)) + list(range(70, 80))


def test_legacy_stored_index_selects_row_groups(testdata_dir):
    from petastorm.etl.rowgroup_indexing import load_rowgroup_indexes
    from petastorm.reader_impl.dataset import open_dataset
    from petastorm.selectors import SingleIndexSelector

    url = "file://" + os.path.join(testdata_dir, "legacy", "0.7.6")
    indexes = load_rowgroup_indexes(open_dataset(url).metadata, url)
    name = sorted(indexes)[0]
    value = sorted(indexes[name].indexed_values, key=str)[0]
    with make_reader(url, rowgroup_selector=SingleIndexSelector(name, [value]), workers_count=1) as reader:
        rows = list(reader)
    assert 0 < len(rows) < 100


def test_cached_rows_are_reshuffled_every_epoch(synthetic_dataset, tmp_path):
    with make_reader(synthetic_dataset, cache_type="local-disk", cache_location=str(tmp_path / "c"),
                     cache_size_limit=10 ** 9, cache_row_size_estimate=100, num_epochs=3, seed=9,
                     shuffle_rows=True, shuffle_row_groups=False) as reader:
        ids = [int(r.id) for r in reader]
    epochs = [ids[i * 100:(i + 1) * 100] for i in range(3)]
    assert all(sorted(e) == list(range(100)) for e in epochs)
    assert epochs[1] != epochs[2]
    reader.cleanup_cache()


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


def test_batch_reader_batches_of_a_sharded_balanced_reader(synthetic_dataset):
    totals = []
    for shard in range(4):
        with make_batch_reader(synthetic_dataset, cur_shard=shard, shard_count=4, shard_mode="balanced") as reader:
            totals.append(sum(len(b.id) for b in reader))
    assert totals == [25, 25, 25, 25]


def test_string_partition_values_keep_the_stored_type(tmp_path):
    import numpy as np

    from petastorm import write_dataset
    from petastorm.codecs import ScalarCodec
    from petastorm.spark_types import spark_type
    from petastorm.unischema import Unischema, UnischemaField

    schema = Unischema("S", [UnischemaField("id", np.int64, (), ScalarCodec(spark_type("LongType")), False),
                             UnischemaField("p", np.str_, (), ScalarCodec(spark_type("StringType")), False)])
    url = "file://" + str(tmp_path / "ds")
    write_dataset(url, schema, [{"id": i, "p": ["007", "1", "10"][i % 3]} for i in range(9)], partition_by=["p"],
                  progress=False, workers_count=1)
    with make_reader(url) as reader:
        assert {(int(r.id), r.p) for r in reader} == {(i, ["007", "1", "10"][i % 3]) for i in range(9)}


def test_an_empty_dataset_reads_as_no_rows(tmp_path):
    import numpy as np

    from petastorm import write_dataset
    from petastorm.codecs import ScalarCodec
    from petastorm.spark_types import spark_type
    from petastorm.unischema import Unischema, UnischemaField

    schema = Unischema("S", [UnischemaField("id", np.int64, (), ScalarCodec(spark_type("LongType")), False)])
    url = "file://" + str(tmp_path / "empty")
    write_dataset(url, schema, [], progress=False, workers_count=1)
    with make_reader(url) as reader:
        assert list(reader) == []
    with make_batch_reader(url) as reader:
        assert list(reader) == []


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


def test_a_state_from_another_predicate_is_refused(synthetic_dataset):
    from petastorm.errors import PetastormStateError
    from petastorm.predicates import in_set

    with make_reader(synthetic_dataset, seed=1, predicate=in_set({1, 2, 3}, "id")) as reader:
        next(reader)
        state = reader.state_dict()
    with pytest.raises(PetastormStateError, match="predicate"):
        make_reader(synthetic_dataset, seed=1, predicate=in_set({10, 11, 12}, "id"), resume_from=state)


def test_a_state_pointing_past_the_plan_is_refused(synthetic_dataset):
    from petastorm.errors import PetastormStateError

    with make_reader(synthetic_dataset, seed=1) as reader:
        next(reader)
        state = reader.state_dict()
    state["position"] = 10 ** 6
    with pytest.raises(PetastormStateError, match="item"):
        make_reader(synthetic_dataset, seed=1, resume_from=state)
