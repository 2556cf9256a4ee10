"""Reader internals seen from outside: predicate pushdown in the worker, the local disk cache across epochs,
``Reader.diagnostics`` and the batched flags.

The worker tests use ``reader_pool_type='dummy'`` so the worker runs in this process and its methods can be
wrapped with ``monkeypatch`` (the wrappers record what they see and call the originals).
"""
import os

import pyarrow.parquet as pq
import pytest

from petastorm import make_batch_reader, make_reader
from petastorm.predicates import in_lambda
from petastorm.reader_impl.worker import RowGroupWorker

ALL_FIELDS = ["id", "id_div_10", "value", "name", "matrix", "image", "var", "maybe", "dec", "timestamp"]
OTHER_FIELDS = [f for f in ALL_FIELDS if f != "id"]


def _ids(reader):
    return [int(r.id) for r in reader]


def _record_worker_calls(monkeypatch):
    """Wrap the worker so each item records its reads and decodes; returns the list of per-item records.

    Each record: ``{"row_group": (file name, row group in file), "reads": [columns, ...],
    "decodes": [(field, rows), ...], "direct": [field, ...]}``: ``reads`` and ``decodes`` go through pyarrow,
    ``direct`` lists the fixed-shape ndarray fields read straight from their pages (``fixed_binary``), which
    join the second read.
    """
    records = []
    current = []
    orig_call = RowGroupWorker.__call__
    orig_read = RowGroupWorker._read_columns
    orig_decode = RowGroupWorker._decode
    orig_direct = RowGroupWorker._read_direct

    def call(self, item):
        rg = self._spec.row_groups[item.row_group]
        record = {"row_group": (os.path.basename(rg.path), rg.row_group), "reads": [], "decodes": [], "direct": []}
        records.append(record)
        current.append(record)
        try:
            return orig_call(self, item)
        finally:
            current.pop()

    def read_columns(self, rg, columns):
        current[-1]["reads"].append(list(columns))
        return orig_read(self, rg, columns)

    def decode(self, table, names):
        for name in names:
            current[-1]["decodes"].append((name, table.num_rows))
        return orig_decode(self, table, names)

    def read_direct(self, rg, names):
        out = orig_direct(self, rg, names)
        current[-1]["direct"].extend(out)
        return out

    monkeypatch.setattr(RowGroupWorker, "__call__", call)
    monkeypatch.setattr(RowGroupWorker, "_read_direct", read_direct)
    monkeypatch.setattr(RowGroupWorker, "_read_columns", read_columns)
    monkeypatch.setattr(RowGroupWorker, "_decode", decode)
    return records


# --- 1. predicates: predicate columns first, the others only for the rows that pass -------------------------


def test_predicate_reads_its_columns_first_and_decodes_the_rest_only_for_passing_rows(synthetic_dataset,
                                                                                     monkeypatch):
    records = _record_worker_calls(monkeypatch)
    with make_reader(synthetic_dataset, reader_pool_type="dummy", shuffle_row_groups=False,
                     predicate=in_lambda(["id"], lambda id: id % 10 == 3)) as reader:
        rows = list(reader)

    assert [int(r.id) for r in rows] == list(range(3, 100, 10))
    for r in rows:
        assert r.name == f"row_{int(r.id)}"
        assert r.id_div_10 == int(r.id) // 10

    assert len(records) == 10
    assert len({rec["row_group"] for rec in records}) == 10
    for rec in records:
        reads = rec["reads"]
        assert reads[0] == ["id"], rec  # the first read asks for the predicate's field only
        assert len(reads) == 2, rec
        assert rec["direct"] == ["matrix"], rec  # the fixed-shape ndarray, straight from its pages
        assert sorted(reads[1] + rec["direct"]) == sorted(OTHER_FIELDS), rec  # then the others, once
        decoded = dict(rec["decodes"])
        assert len(decoded) == len(rec["decodes"]), rec  # each field decoded once
        assert decoded["id"] == 10  # the predicate column: every row of the row group
        for name in OTHER_FIELDS:
            if name != "matrix":
                assert decoded[name] == 1, (name, rec)  # the others: only the row that passed


def test_row_group_with_no_passing_row_never_reads_the_other_columns(synthetic_dataset, monkeypatch):
    records = _record_worker_calls(monkeypatch)
    # rows 5, 25, 45, ... pass: row groups 0, 2, 4, 6, 8 have one passing row, the odd ones none
    with make_reader(synthetic_dataset, reader_pool_type="dummy", shuffle_row_groups=False,
                     predicate=in_lambda(["id"], lambda id: id % 20 == 5)) as reader:
        rows = list(reader)

    assert [int(r.id) for r in rows] == list(range(5, 100, 20))
    assert [r.name for r in rows] == [f"row_{i}" for i in range(5, 100, 20)]
    assert len(records) == 10
    empty = [rec for rec in records if rec["row_group"][1] == 1]  # 2nd row group of each file: ids x10..x19
    full = [rec for rec in records if rec["row_group"][1] == 0]
    assert len(empty) == 5 and len(full) == 5
    for rec in empty:
        assert rec["reads"] == [["id"]] and rec["direct"] == [], rec  # no second read at all
        for name, rows_seen in rec["decodes"]:
            if name != "id":
                assert rows_seen == 0, rec  # at most empty columns are built, never decoded from data
    for rec in full:
        assert rec["reads"][0] == ["id"]
        assert len(rec["reads"]) == 2 and sorted(rec["reads"][1] + rec["direct"]) == sorted(OTHER_FIELDS)
        assert all(rows_seen == 1 for name, rows_seen in rec["decodes"] if name != "id"), rec


# --- 2. the local disk cache serves later epochs ------------------------------------------------------------


def _count_parquet_reads_per_epoch(monkeypatch):
    """Counts ``ParquetFile.read_row_group`` calls per epoch of the work item the worker is running."""
    counts = {}
    epoch = [None]
    orig_call = RowGroupWorker.__call__
    orig_read = pq.ParquetFile.read_row_group

    def call(self, item):
        epoch[0] = item.epoch
        return orig_call(self, item)

    def read_row_group(self, *args, **kwargs):
        counts[epoch[0]] = counts.get(epoch[0], 0) + 1
        return orig_read(self, *args, **kwargs)

    monkeypatch.setattr(RowGroupWorker, "__call__", call)
    monkeypatch.setattr(pq.ParquetFile, "read_row_group", read_row_group)
    return counts


def _cache_kwargs(tmp_path):
    return dict(cache_type="local-disk", cache_location=str(tmp_path / "cache"), cache_size_limit=200 * 2 ** 20,
                cache_row_size_estimate=1000)


def test_local_disk_cache_serves_the_epochs_after_the_first(synthetic_dataset, tmp_path, monkeypatch):
    counts = _count_parquet_reads_per_epoch(monkeypatch)
    with make_reader(synthetic_dataset, reader_pool_type="dummy", num_epochs=3, **_cache_kwargs(tmp_path)) as reader:
        ids = _ids(reader)
        reader.cleanup_cache()

    assert len(ids) == 300
    for epoch in range(3):
        assert sorted(ids[epoch * 100:(epoch + 1) * 100]) == list(range(100))
    assert counts.get(0, 0) == 10  # the first epoch reads every row group once
    assert counts.get(1, 0) == 0 and counts.get(2, 0) == 0, counts  # later epochs: all from the cache
    assert set(counts) == {0}


def test_local_disk_cache_rows_are_reshuffled_each_epoch_and_cleanup_removes_the_directory(
        synthetic_dataset, tmp_path, monkeypatch):
    counts = _count_parquet_reads_per_epoch(monkeypatch)
    kwargs = _cache_kwargs(tmp_path)
    with make_reader(synthetic_dataset, reader_pool_type="dummy", num_epochs=3, shuffle_rows=True, seed=11,
                     shuffle_row_groups=False, **kwargs) as reader:
        ids = _ids(reader)
        assert os.path.isdir(kwargs["cache_location"])
        assert os.listdir(kwargs["cache_location"])
        reader.cleanup_cache()
        assert not os.path.exists(kwargs["cache_location"])

    epochs = [ids[e * 100:(e + 1) * 100] for e in range(3)]
    for epoch_ids in epochs:
        assert sorted(epoch_ids) == list(range(100))
        # row groups in order, the rows of each one permuted
        for block in range(10):
            assert sorted(epoch_ids[block * 10:(block + 1) * 10]) == list(range(block * 10, block * 10 + 10))
    assert epochs[0] != list(range(100))  # rows were shuffled at all
    assert epochs[1] != epochs[0]  # cached rows re-shuffled in epoch 2 ...
    assert epochs[2] != epochs[1]  # ... and again in epoch 3
    assert counts == {0: 10}, counts  # no Parquet read after the first epoch


# --- 3. diagnostics and the batched flags --------------------------------------------------------------------


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
