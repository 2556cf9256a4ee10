"""The worker's predicate pushdown (reader_impl.worker) seen from a reader: the predicate's columns are read
first, the other columns read and decoded only for the rows that pass.

The tests use ``reader_pool_type='dummy'`` so the worker runs in this process and its methods can be
wrapped with ``monkeypatch`` (the wrappers record what they see and call the originals).
"""
import os

from petastorm import make_reader
from petastorm.predicates import in_lambda
from petastorm.reader_impl.worker import RowGroupWorker

ALL_FIELDS = ["id", "id_div_10", "value", "name", "matrix", "image", "var", "maybe", "dec", "timestamp"]
OTHER_FIELDS = [f for f in ALL_FIELDS if f != "id"]


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


# --- predicates: predicate columns first, the others only for the rows that pass -------------------------


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
