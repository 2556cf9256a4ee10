"""Diff review 3b (helper Z2): what round 2's reader fixes (commits b52288f..) broke or got wrong.

Each test is a defect found by reading the diff of ``petastorm/reader.py``, ``reader_impl``, ``transform.py``,
``predicates.py``, ``selectors.py`` and ``etl`` and running the cases it left out:

* states saved before e32336d (``shuffle_row_drop_partitions`` slices cut the other way round) resumed at the
  wrong rows silently (a row lost); now refused, saying why;
* states saved before ab0eccd (sharding before the rowgroup_selector / partition predicate) are refused with a
  message that says the cause when the arguments are the same; states saved before bdc0965 (Hive partition keys
  first), which differ only in the order of their fields, resume;
* filters: comparisons with None / NaN selected no row silently; str literals of date, timestamp, decimal columns;
* explain() without sharding counted rejected row groups; diagnostics' output_queue_size of the thread pool;
* a TransformSpec's all-str column made a '<U' array padded to its longest string.
"""
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from petastorm import make_batch_reader
from petastorm.errors import PetastormStateError
from petastorm.predicates import in_lambda
from petastorm.reader_impl.reader_state import fingerprint

# reader.state_dict() written by the reader of commit bdc0965 (before e32336d) over _write_flat's store with
# shuffle_row_drop_partitions=2, shuffle_row_groups=False, after its first batch (rows 0, 1: the old cut put the
# extra row of a 5-row group in the second slice). Resumed by the new cut ([0, 1, 2], [3, 4]) it skipped row 2.
_OLD_DROP_STATE = json.loads(
    '{"version": 1, "dataset_fingerprint": "88b4400fcf458baf91f31249", "options_fingerprint": "fd99a3cbb9c6f71b", '
    '"seed": 3517375865036928, "epoch": 0, "position": 0, "rows_into_item": 1, "extra": {"epoch_limit": 1}, '
    '"options": {"batched": true, "cur_shard": null, "drop": 2, "fields": ["id", "v"], "filters": "None", '
    '"ngram": null, "num_epochs": 1, "predicate": null, "remainder": "drop", "row_groups": "434026bd98ff2d8a", '
    '"shard_count": null, "shard_mode": "original", "shard_seed": null, "shuffle_row_groups": false, '
    '"shuffle_rows": false, "transform": null}}')


def _write_flat(root):
    """15 rows (id 0..14) in one file of three 5-row row groups."""
    os.makedirs(root, exist_ok=True)
    table = pa.table({"id": pa.array(range(15), pa.int64()), "v": pa.array([float(i) for i in range(15)])})
    pq.write_table(table, os.path.join(root, "part0.parquet"), row_group_size=5)
    return "file://" + root


def _write_partitioned(root):
    """40 rows, Hive-partitioned on ``p`` (0..3), two 5-row row groups per partition."""
    for p in range(4):
        d = os.path.join(root, f"p={p}")
        os.makedirs(d, exist_ok=True)
        pq.write_table(pa.table({"id": pa.array(range(p * 10, p * 10 + 10), pa.int64())}),
                       os.path.join(d, "a.parquet"), row_group_size=5)
    return "file://" + root


def _ids(reader):
    return [int(x) for batch in reader for x in batch.id]


_DROP_KW = dict(shuffle_row_drop_partitions=2, shuffle_row_groups=False, reader_pool_type="dummy", num_epochs=1)


def test_drop_partitions_state_of_the_earlier_cut_is_refused_not_resumed_at_other_rows(tmp_path):
    url = _write_flat(str(tmp_path / "flat"))
    with pytest.raises(PetastormStateError, match=r"drop_slices.*shuffle_row_drop_partitions slices"):
        make_batch_reader(url, resume_from=_OLD_DROP_STATE, **_DROP_KW)


def test_drop_partitions_state_of_this_cut_resumes_exactly(tmp_path):
    url = _write_flat(str(tmp_path / "flat"))
    with make_batch_reader(url, **_DROP_KW) as reader:
        it = iter(reader)
        assert next(it).id.tolist() == [0, 1, 2]  # 0.12.1's cut: the first slice takes the extra row
        state = reader.state_dict()
        rest = [int(x) for batch in it for x in batch.id]
    assert rest == list(range(3, 15))
    with make_batch_reader(url, resume_from=json.loads(json.dumps(state)), **_DROP_KW) as reader:
        assert _ids(reader) == rest


def test_state_without_drop_partitions_keeps_its_fingerprint(tmp_path):
    """Only drop > 1 states changed meaning: a plain state of the same store still has the earlier form."""
    url = _write_flat(str(tmp_path / "flat"))
    with make_batch_reader(url, shuffle_row_groups=False, reader_pool_type="dummy", num_epochs=1) as reader:
        state = reader.state_dict()
    assert "drop_slices" not in state["options"]
    assert state["dataset_fingerprint"] == _OLD_DROP_STATE["dataset_fingerprint"]


def _as_saved_before_ab0eccd(state):
    """``state`` as the reader before ab0eccd/bdc0965 wrote it for the same arguments: row_groups fingerprinted
    the kept row groups only, partition keys came last in fields (checked against a state recorded from
    commit b52288f: options fingerprint 64651ec5dfb160f0 for the same store, shard 0 of 2)."""
    opts = dict(state["options"])
    opts["row_groups"] = opts["row_groups"].split("/")[1]
    opts["fields"] = ["id", "p"]
    return dict(state, options=opts, options_fingerprint=fingerprint(opts))


@pytest.mark.parametrize("shard", [{}, {"cur_shard": 0, "shard_count": 2}])
def test_state_saved_before_sharding_moved_ahead_of_the_predicate_is_refused_saying_why(tmp_path, shard):
    url = _write_partitioned(str(tmp_path / "part"))
    kw = dict(shuffle_row_groups=False, reader_pool_type="dummy", num_epochs=1,
              predicate=in_lambda(["p"], lambda p: p != 1), **shard)
    with make_batch_reader(url, **kw) as reader:
        next(iter(reader))
        old = _as_saved_before_ab0eccd(reader.state_dict())
    with pytest.raises(PetastormStateError) as e:
        make_batch_reader(url, resume_from=old, **kw)
    assert "sharded and planned after the rowgroup_selector" in str(e.value)


@pytest.mark.parametrize("factory_kw", [{}, {"shuffle_rows": True, "seed": 3, "shuffle_row_drop_partitions": 2}])
def test_state_saved_before_partition_keys_came_first_resumes_exactly(tmp_path, factory_kw):
    # bdc0965 put a plain store's Hive partition keys first: a state of the same arguments saved before differs
    # only in the order of its fields (refused as 'fields (saved ['id', 'p'], now ['p', 'id'])'), which changes
    # no row nor its place in the plan: it resumes
    url = _write_partitioned(str(tmp_path / "part"))
    kw = dict(shuffle_row_groups=False, reader_pool_type="dummy", num_epochs=1, **factory_kw)
    with make_batch_reader(url, **kw) as reader:
        it = iter(reader)
        next(it), next(it)
        state = reader.state_dict()
        rest = [int(x) for batch in it for x in batch.id]
    opts = dict(state["options"], fields=["id", "p"])
    old = dict(state, options=opts, options_fingerprint=fingerprint(opts))
    with make_batch_reader(url, resume_from=old, **kw) as reader:
        assert _ids(reader) == rest
    other = dict(old, options=dict(opts, shuffle_rows=not opts["shuffle_rows"]))  # fingerprint not of its options
    with pytest.raises(PetastormStateError, match="different reader options"):
        make_batch_reader(url, resume_from=other, **kw)


# ------------------------------------------------------------------------------------------------------------
# filters (4d9c127, 19143c1): str literals were converted for number and boolean columns only


def _write_typed(root):
    """8 rows (id 0..7) Hive-partitioned on ``year`` (2020: ids 0-3, 2021: 4-7); columns of date, timestamp,
    decimal, float (NaN at id 3) and string (None at id 2) types, two rows per row group."""
    import datetime
    import decimal

    for p in range(2):
        d = os.path.join(root, f"year={2020 + p}")
        os.makedirs(d, exist_ok=True)
        ids = list(range(p * 4, p * 4 + 4))
        table = pa.table({
            "id": pa.array(ids, pa.int64()),
            "d": pa.array([datetime.date(2020, 1, 1 + i) for i in ids], pa.date32()),
            "ts": pa.array([datetime.datetime(2020, 1, 1, i) for i in ids], pa.timestamp("us")),
            "dec": pa.array([decimal.Decimal(f"{i}.50") for i in ids], pa.decimal128(6, 2)),
            "f": pa.array([float(i) if i != 3 else float("nan") for i in ids]),
            "s": pa.array([f"s{i}" if i != 2 else None for i in ids])})
        pq.write_table(table, os.path.join(d, "a.parquet"), row_group_size=2)
    return "file://" + root


@pytest.fixture(scope="module")
def typed_url(tmp_path_factory):
    return _write_typed(str(tmp_path_factory.mktemp("z2") / "typed"))


def _filtered_ids(url, filters):
    with make_batch_reader(url, filters=filters, reader_pool_type="dummy", shuffle_row_groups=False) as reader:
        return sorted(_ids(reader))


@pytest.mark.parametrize("term", [("s", "=", None), ("s", "!=", None), ("f", "=", None), ("year", "=", None),
                                  ("d", ">", None)])
def test_filters_comparing_with_none_name_the_term_instead_of_selecting_no_row(typed_url, term):
    # Arrow's comparison with null is null: ('s', '!=', None) read no row at all, silently (0.12.1 ignored
    # filters on columns and raised TypeError 'NoneType takes no arguments' for the partition key, recorded)
    with pytest.raises(ValueError, match=r"filters term .*%s.* with None.*is_null" % term[0]):
        make_batch_reader(typed_url, filters=[term], reader_pool_type="dummy")


def test_filters_null_rows_through_the_forms_the_error_suggests(typed_url):
    import pyarrow.compute as pc

    assert _filtered_ids(typed_url, pc.field("s").is_null()) == [2]
    assert _filtered_ids(typed_url, ~pc.field("s").is_null()) == [0, 1, 3, 4, 5, 6, 7]
    assert _filtered_ids(typed_url, [("s", "in", ["s1", None])]) == [1, 2]


@pytest.mark.parametrize("term", [("f", "=", "nan"), ("f", "!=", float("nan")), ("f", "<", "NaN")])
def test_filters_comparing_with_nan_name_the_term(typed_url, term):
    # 4d9c127 turned 'nan' into float NaN: ('f', '=', 'nan') selected no row and ('f', '!=', nan) kept the NaN row
    with pytest.raises(ValueError, match=r"filters term .*'f'.* with NaN.*is_nan"):
        make_batch_reader(typed_url, filters=[term], reader_pool_type="dummy")


def test_filters_nan_rows_through_the_forms_the_error_suggests(typed_url):
    import pyarrow.compute as pc

    assert _filtered_ids(typed_url, pc.field("f").is_nan()) == [3]
    assert _filtered_ids(typed_url, ~pc.field("f").is_nan()) == [0, 1, 2, 4, 5, 6, 7]
    assert _filtered_ids(typed_url, [("f", "in", ["nan"])]) == [3]  # 'in' matches NaN: kept


@pytest.mark.parametrize("term, expected", [
    (("d", ">", "2020-01-05"), [5, 6, 7]),              # ISO date (was: 'no kernel matching (date32, string)')
    (("ts", ">=", "2020-01-01 05:00:00"), [5, 6, 7]),   # ISO timestamp
    (("dec", ">", "4.5"), [5, 6, 7]),                   # decimal text
    (("dec", ">", 4), [4, 5, 6, 7]),                    # int against decimal(6, 2): 'Precision is not great enough'
    (("dec", "in", ["1.50", "2.5"]), [1, 2]),
])
def test_filters_str_literals_of_date_timestamp_decimal_columns_are_converted(typed_url, term, expected):
    # 4d9c127 converted str literals for number and boolean columns; these column types refused the literal
    assert _filtered_ids(typed_url, [term]) == expected


@pytest.mark.parametrize("term", [("d", ">", "yesterday"), ("dec", "=", "x1"), ("ts", "<", "noon")])
def test_filters_literal_a_column_cannot_hold_names_the_term(typed_url, term):
    with pytest.raises(ValueError, match=r"filters term .*is not a value of column '%s'" % term[0]):
        make_batch_reader(typed_url, filters=[term], reader_pool_type="dummy")


# ------------------------------------------------------------------------------------------------------------
# sharding before the rowgroup_selector / partition predicate (ab0eccd): row groups planned with 0 rows


@pytest.fixture(scope="module")
def p_part_url(tmp_path_factory):
    return _write_partitioned(str(tmp_path_factory.mktemp("z2") / "part"))


_NOT_P1 = in_lambda(["p"], lambda p: p != 1)
_KEPT = [i for i in range(40) if not 10 <= i < 20]


def test_explain_without_sharding_counts_only_the_row_groups_read(p_part_url):
    # the predicate on p rejects 2 of the 8 row groups: they are planned with 0 rows and never read; explain()
    # said 8 row groups for this reader
    with make_batch_reader(p_part_url, predicate=_NOT_P1, num_epochs=1, reader_pool_type="dummy") as reader:
        (shard,) = reader.explain().shards
        assert (shard.row_groups, shard.rows) == (6, 30)
        assert sorted(_ids(reader)) == _KEPT


def test_explain_with_sharding_matches_what_each_shard_reads(p_part_url):
    for s, (groups, rows) in enumerate([(2, 10), (3, 15), (1, 5)]):
        with make_batch_reader(p_part_url, predicate=_NOT_P1, cur_shard=s, shard_count=3, num_epochs=1,
                               reader_pool_type="dummy") as reader:
            plan = reader.explain()
            assert (plan.shards[s].row_groups, plan.shards[s].rows) == (groups, rows)
            assert len(_ids(reader)) == rows


@pytest.mark.parametrize("drop", [1, 3])
def test_balanced_shards_with_a_partition_predicate_read_equal_rows_each_once(p_part_url, drop):
    got = []
    for s in range(3):
        with make_batch_reader(p_part_url, predicate=_NOT_P1, cur_shard=s, shard_count=3, shard_mode="balanced",
                               shuffle_row_drop_partitions=drop, num_epochs=1, reader_pool_type="dummy") as reader:
            got.append(_ids(reader))
    assert [len(g) for g in got] == [10, 10, 10]
    assert sorted(sum(got, [])) == _KEPT


@pytest.mark.parametrize("pool", ["dummy", "thread"])
def test_endless_reader_of_a_shard_the_predicate_empties_warns_and_ends(p_part_url, pool):
    # p == 1 is row groups 2 and 3: shards 0 and 1 of 4 hold none of them
    with pytest.warns(UserWarning, match="No matching data"):
        reader = make_batch_reader(p_part_url, predicate=in_lambda(["p"], lambda p: p == 1), cur_shard=0,
                                   shard_count=4, num_epochs=None, reader_pool_type=pool)
    with reader:
        assert _ids(reader) == []


# ------------------------------------------------------------------------------------------------------------
# diagnostics (c6a3782): the original's keys


def test_thread_pool_output_queue_size_counts_the_results_waiting_for_the_consumer(p_part_url):
    # it was the reorder buffer only (results that came out of order): 0 while every finished result sat in the
    # pool's queue, so a user watching the queue saw a starved consumer
    import time

    with make_batch_reader(p_part_url, reader_pool_type="thread", workers_count=2, num_epochs=1,
                           shuffle_row_groups=False) as reader:
        it = iter(reader)
        next(it)
        deadline = time.monotonic() + 20
        diag = reader.diagnostics
        while diag["output_queue_size"] < diag["items_inprocess"] and time.monotonic() < deadline:
            time.sleep(0.02)  # the items submitted (more than the one taken) finish in a few ms
            diag = reader.diagnostics
        assert diag["output_queue_size"] == diag["items_inprocess"] >= 1
        assert len([b for b in it]) == 7
        assert reader.diagnostics["output_queue_size"] == 0
    reader.stop()
    reader.join()
    assert reader.diagnostics["items_produced"] == 8  # no exception once stopped


@pytest.mark.parametrize("pool", ["dummy", "thread", "process"])
def test_diagnostics_keys_of_every_pool_after_a_pass_and_stop(p_part_url, pool):
    reader = make_batch_reader(p_part_url, reader_pool_type=pool, workers_count=2, num_epochs=1)
    n = len(_ids(reader))
    reader.stop()
    reader.join()
    diag = reader.diagnostics
    assert n == 40
    assert {k: diag[k] for k in ("output_queue_size", "items_consumed", "items_produced", "items_inprocess")} == \
        {"output_queue_size": 0, "items_consumed": 8, "items_produced": 8, "items_inprocess": 0}


# ------------------------------------------------------------------------------------------------------------
# TransformSpec string columns (54480e3): all-str object columns became '<U' arrays


def test_transformed_string_column_with_one_long_value_stays_compact(tmp_path):
    # one 20000-character string among 20000 one-character ones: the '<U20000' array took 1.6 GB for 40 kB of
    # text (without a transform the reader keeps such a column an object array, as it does now)
    from petastorm import TransformSpec

    n = 20000
    values = ["x"] * n
    values[5] = "y" * 20000
    os.makedirs(tmp_path / "s")
    pq.write_table(pa.table({"id": pa.array(range(n), pa.int64()), "s": pa.array(values)}),
                   str(tmp_path / "s" / "a.parquet"), row_group_size=n)

    def upper(df):
        df["s"] = df["s"].str.upper()
        return df

    with make_batch_reader("file://" + str(tmp_path / "s"), reader_pool_type="dummy",
                           transform_spec=TransformSpec(upper)) as reader:
        batch = next(iter(reader))
    assert batch.s.dtype == object and batch.s.nbytes < 10 * 8 * n
    assert batch.s[5] == "Y" * 20000 and batch.s[0] == "X"


def test_transformed_short_string_column_is_still_a_unicode_array(tmp_path):
    from petastorm import TransformSpec

    os.makedirs(tmp_path / "s")
    pq.write_table(pa.table({"s": pa.array(["ab", "cde", "f"])}), str(tmp_path / "s" / "a.parquet"))
    with make_batch_reader("file://" + str(tmp_path / "s"), reader_pool_type="dummy",
                           transform_spec=TransformSpec(lambda df: df.assign(s=df["s"] + "!"))) as reader:
        batch = next(iter(reader))
    assert batch.s.dtype == np.dtype("<U4") and batch.s.tolist() == ["ab!", "cde!", "f!"]  # 0.12.1: '<U'


def test_merged_job_state_of_the_earlier_drop_partition_cut_is_refused_saying_why(tmp_path):
    from petastorm import merge_state_dicts

    url = _write_flat(str(tmp_path / "flat"))
    kw = dict(shard_mode="balanced", shard_count=2, shuffle_row_drop_partitions=2, num_epochs=1, seed=1,
              reader_pool_type="dummy")
    states = []
    for rank in range(2):
        with make_batch_reader(url, cur_shard=rank, **kw) as reader:
            next(iter(reader))
            states.append(reader.state_dict())
    job = merge_state_dicts(states)
    opts = dict(job["options"])
    del opts["drop_slices"]  # what a petastorm before e32336d merged
    old = dict(job, options=opts, options_fingerprint=fingerprint(opts))
    with pytest.raises(PetastormStateError, match=r"drop_slices.*shuffle_row_drop_partitions slices"):
        make_batch_reader(url, resume_from=old, **dict(kw, cur_shard=0, shard_count=3))
    with make_batch_reader(url, resume_from=job, **dict(kw, cur_shard=0, shard_count=3)) as reader:
        assert len(_ids(reader)) > 0  # the job state of this cut resumes


def _with_fields_saved_before_bdc0965(obj):
    """A copy of a (loader) state whose reader states list the fields id, p (partition key last)."""
    if isinstance(obj, dict):
        out = {k: _with_fields_saved_before_bdc0965(v) for k, v in obj.items()}
        if "options_fingerprint" in out and isinstance(out.get("options"), dict):
            opts = dict(out["options"], fields=["id", "p"])
            out.update(options=opts, options_fingerprint=fingerprint(opts))
        return out
    if isinstance(obj, list):
        return [_with_fields_saved_before_bdc0965(v) for v in obj]
    return obj


@pytest.mark.parametrize("loader", ["DataLoader", "BatchedDataLoader"])
def test_loader_state_saved_before_partition_keys_came_first_resumes_with_columns_by_name(tmp_path, loader):
    # the loaders' buffered rows come back under their names (checked: a BatchedDataLoader, DataLoader and
    # make_jax_iterator state saved by b52288f's code resumed to the same batches)
    import petastorm.pytorch as pt
    from petastorm.adapters.state_codec import with_digest

    url = _write_partitioned(str(tmp_path / "part"))
    kw = dict(shuffle_row_groups=False, reader_pool_type="dummy", num_epochs=1, seed=1)

    def make():
        reader = make_batch_reader(url, **kw)
        return reader, getattr(pt, loader)(reader, batch_size=4, shuffling_queue_capacity=20)

    reader, dl = make()
    with reader:
        it = iter(dl)
        next(it)
        state = dl.state_dict()
        rest = [{k: [int(x) for x in v] for k, v in b.items()} for b in it]
    old = with_digest(_with_fields_saved_before_bdc0965(state))
    assert "'fields': ['id', 'p']" in str(old) and "'fields': ['id', 'p']" not in str(state)
    reader, dl = make()
    with reader:
        dl.load_state_dict(old)
        assert [{k: [int(x) for x in v] for k, v in b.items()} for b in dl] == rest
        assert all(p == i // 10 for b in rest for i, p in zip(b["id"], b["p"]))


# ------------------------------------------------------------------------------------------------------------
# write_dataset's encoding workers (021bb0b started them without re-importing the main module)

_ENUM_SCRIPT = '''
import enum, sys
import numpy as np
from pyspark.sql.types import IntegerType
from petastorm import make_reader
from petastorm.codecs import ScalarCodec
from petastorm.etl.writer import write_dataset
from petastorm.unischema import Unischema, UnischemaField


class Label(enum.IntEnum):
    CAT = 0
    DOG = 1


if __name__ == "__main__":
    schema = Unischema("S", [UnischemaField("id", np.int32, (), ScalarCodec(IntegerType()), False),
                             UnischemaField("label", np.int32, (), ScalarCodec(IntegerType()), False)])
    url = "file://" + sys.argv[1]
    write_dataset(url, schema, [{"id": i, "label": Label(i % 2)} for i in range(64)], workers_count=2,
                  progress=False, chunk_rows=16)
    with make_reader(url, reader_pool_type="dummy") as reader:
        print(sorted((int(r.id), int(r.label)) for r in reader) == [(i, i % 2) for i in range(64)])
'''


def test_write_dataset_workers_unpickle_row_values_of_classes_the_script_defines(tmp_path):
    # a guarded script whose rows hold an IntEnum it defines: the workers no longer re-imported the script
    # (021bb0b, for scripts read from stdin), so they could not unpickle Label and died ('an encoding worker
    # process died'); b52288f wrote the dataset
    import subprocess
    import sys

    script = tmp_path / "write_labels.py"
    script.write_text(_ENUM_SCRIPT)
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=repo)
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "out")], cwd=str(tmp_path), env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "True"
