"""Property test of the loaders' exact resume (the "Exact resume" and "Distributed" promises): seeded random cases
drive every loader over the shared batching core (``petastorm.adapters``) through random sequences of
"take k batches, ``state_dict()``, continue or leave, fresh reader + loader, ``load_state_dict()``, ...", and
check the promise: resuming mid-epoch loses and repeats no row, the shuffling buffer's rows and RNG included.

- loaders: ``BatchedDataLoader`` (prefetch 0 and 2), ``DataLoader`` over ``make_reader`` and ``make_batch_reader``
  (default collate and a custom ``collate_fn``), ``InMemBatchedDataLoader``, ``make_jax_iterator``;
- random batch sizes 1..300 over row groups of uneven sizes (1..59 rows; 1..1999 in the slow cases),
  ``shuffling_queue_capacity`` 0, small or larger than the dataset, reader ``num_epochs`` 1, 3 or None (with a
  cap on the batches taken), 1..3 loader passes, JAX's ``drop_last`` and ``min_after_retrieve``, pools ``dummy``/``thread`` (``process`` in the slow cases),
  ``shuffle_rows``, ``shuffle_row_drop_partitions``, ``shard_mode='balanced'`` shards, a ``transform_fn`` that
  drops the rows ``id % 3 == 1`` of every field; the loader's prefetch and the reader's pool and worker count
  may change between the sessions (they are not settings of the state);
- states round-tripped through ``json`` (when they hold plain values), ``pickle`` or
  ``torch.save``/``torch.load(weights_only=True)``; elastic resumes at other world sizes
  (``docs/elastic_resume.md``), 2 or 3 stages.

Checks: the batches served over the sessions are exactly those of an uninterrupted run (same rows in the same
order, so the same multiset per epoch); every row of each pass is served ``num_epochs`` times; every row's fields
stay aligned (``x == id + 0.5``, ``z == -id``); a loader continued after ``state_dict()`` serves what it would
have served without it; no thread or child process is left running. The elastic cases check that the job serves
every row of the epoch exactly once and that the new ranks are balanced.
"""
import glob
import io
import json
import os
import pickle
import random
import threading
import time
import warnings
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from petastorm import make_batch_reader, make_reader, merge_state_dicts
from petastorm.jax import make_jax_iterator
from petastorm.pytorch import BatchedDataLoader, DataLoader, InMemBatchedDataLoader

KINDS = ["batched0", "batched2", "dl_row", "dl_batch", "dl_custom", "inmem", "jax"]
_SINGLE_PASS = ("jax", "inmem")  # a JaxIterator is one pass; an InMemBatchedDataLoader iterates once


# --- datasets and transforms ------------------------------------------------------------------------------------

def write_dataset(path, seed, files, max_group=60):
    """``files`` Parquet files of 1..3 row groups of 1..max_group-1 rows each; ``id`` numbers the rows,
    ``x = id + 0.5`` (float64), ``z = -id`` (int32). Returns ``(url, rows)``."""
    rng = np.random.default_rng(seed)
    os.makedirs(path, exist_ok=True)
    schema = pa.schema([("id", pa.int64()), ("x", pa.float64()), ("z", pa.int32())])
    n = 0
    for f in range(files):
        with pq.ParquetWriter(os.path.join(path, f"part-{f:03d}.parquet"), schema) as writer:
            for size in rng.integers(1, max_group, size=rng.integers(1, 4)):
                ids = np.arange(n, n + size, dtype=np.int64)
                n += int(size)
                writer.write_table(pa.table({"id": ids, "x": ids + 0.5, "z": (-ids).astype(np.int32)}, schema=schema))
    return "file://" + path, n


def _ids_of_column(column):
    column = np.asarray(column)
    if column.dtype.kind == "f":
        return np.floor(column).astype(np.int64)
    if column.dtype == np.int32:
        return -column.astype(np.int64)
    return column.astype(np.int64)


def drop_col(column):
    """Per-field ``transform_fn`` of the torch loaders: drops the rows ``id % 3 == 1`` (found from the value)."""
    column = np.asarray(column)
    return column[_ids_of_column(column) % 3 != 1]


def drop_batch(batch):
    """The JAX ``transform_fn``: drops the rows ``id % 3 == 1`` of every field."""
    keep = np.asarray(batch["id"]) % 3 != 1
    return {k: np.asarray(v)[keep] for k, v in batch.items()}


def custom_collate(rows):
    return {k: [r[k].item() if hasattr(r[k], "item") else r[k] for r in rows] for k in ("id", "x", "z")}


def batch_rows(batch):
    """The ids of a loader batch, after checking that its fields are aligned."""
    cols = [np.asarray(batch[k]).ravel() for k in ("id", "x", "z")]
    assert len({len(c) for c in cols}) == 1, f"fields of different lengths {[len(c) for c in cols]}"
    ids = cols[0].astype(np.int64)
    assert np.array_equal(cols[1].astype(np.float64), ids + 0.5), "field x is not the row's"
    assert np.array_equal(cols[2].astype(np.int64), -ids), "field z is not the row's"
    return ids.tolist()


# --- cases ------------------------------------------------------------------------------------------------------

def random_case(rng, n, kinds=KINDS, pools=("dummy", "thread")):
    kind = rng.choice(kinds)
    c = {"kind": kind, "pool": rng.choice(pools), "workers": rng.choice([1, 2, 3]), "seed": rng.randint(0, 999)}
    c["batch_size"] = rng.choice([1, 2, 3, 7, 10, 16, 25, 32, 64, 100, 128, 255, 300, rng.randint(1, 300)])
    c["cap"] = 0 if kind == "inmem" else rng.choice([0, 0, rng.randint(1, 20), rng.randint(20, 120), n + 50])
    c["epochs"] = 1 if kind == "inmem" else rng.choice([1, 3, None])
    c["loader_epochs"] = rng.choice([1, 2, 3]) if kind == "inmem" else None
    c["passes"] = 1 if kind in _SINGLE_PASS or c["epochs"] is None else rng.choice([1, 1, 2, 3])
    c["batched_reader"] = kind == "dl_batch" or (kind != "dl_row" and rng.random() < 0.6)
    c["shuffle_rows"] = rng.random() < 0.3
    c["shuffle_row_groups"] = rng.random() < 0.6
    c["drop_partitions"] = rng.choice([1, 1, 2, 3])
    c["shard_count"] = rng.choice([None, None, 2, 3])
    c["cur_shard"] = rng.randrange(c["shard_count"]) if c["shard_count"] else None
    c["transform"] = kind in ("batched0", "batched2", "inmem", "jax") and rng.random() < 0.35
    c["inmem_shuffle"] = rng.random() < 0.5
    c["jax_prefetch"] = rng.choice([0, 2])
    c["drop_last"] = kind == "jax" and rng.random() < 0.3
    c["min_after"] = rng.randint(0, c["cap"]) if kind == "jax" and c["cap"] and rng.random() < 0.3 else None
    c["cap_batches"] = rng.randint(3, 40)  # batches taken with num_epochs=None
    c["trip"] = rng.choice(["json", "pickle", "torch"] if kind != "jax" else ["json", "pickle"])
    c["continue"] = rng.random() < 0.4
    c["save"] = rng.choice(["in_loop", "in_loop", "after_leaving", "after_exit"])
    c["vary"] = rng.random() < 0.5
    return c


def open_reader(url, c):
    make = make_batch_reader if c["batched_reader"] else make_reader
    kw = dict(reader_pool_type=c["pool"], workers_count=c["workers"], seed=c["seed"], shuffle_rows=c["shuffle_rows"],
              shuffle_row_groups=c["shuffle_row_groups"], shuffle_row_drop_partitions=c["drop_partitions"],
              num_epochs=c["epochs"])
    if c["shard_count"]:
        kw.update(cur_shard=c["cur_shard"], shard_count=c["shard_count"], shard_mode="balanced", shard_seed=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # make_reader over a plain Parquet store warns
        return make(url, **kw)


def make_loader(reader, c):
    kind, bs, cap = c["kind"], c["batch_size"], c["cap"]
    if kind in ("batched0", "batched2"):
        return BatchedDataLoader(reader, batch_size=bs, shuffling_queue_capacity=cap, prefetch=int(kind[-1]),
                                 transform_fn=drop_col if c["transform"] else None)
    if kind in ("dl_row", "dl_batch"):
        return DataLoader(reader, batch_size=bs, shuffling_queue_capacity=cap)
    if kind == "dl_custom":
        return DataLoader(reader, batch_size=bs, shuffling_queue_capacity=cap, collate_fn=custom_collate)
    if kind == "inmem":
        return InMemBatchedDataLoader(reader, batch_size=bs, num_epochs=c["loader_epochs"], seed=c["seed"],
                                      rows_capacity=100_000, shuffle=c["inmem_shuffle"],
                                      transform_fn=drop_col if c["transform"] else None)
    return make_jax_iterator(reader, batch_size=bs, shuffling_queue_capacity=cap, seed=c["seed"],
                             prefetch=c["jax_prefetch"], transform_fn=drop_batch if c["transform"] else None,
                             drop_last=c["drop_last"], min_after_retrieve=c["min_after"])


def varied(c, session):
    """The case for a later session: what is not a setting of the state (prefetch, pool, workers) may change."""
    if not c["vary"] or not session:
        return c
    r = random.Random((c["seed"] or 0) * 31 + session)
    out = dict(c, workers=r.choice([1, 2, 3, 5]), jax_prefetch=r.choice([0, 1, 2, 3]))
    if c["kind"] in ("batched0", "batched2"):
        out["kind"] = r.choice(["batched0", "batched2"])
    if c["pool"] != "process":
        out["pool"] = r.choice(["dummy", "thread"])
    return out


def close(loader, reader):
    if hasattr(loader, "close"):
        loader.close()
    else:
        loader.__exit__(None, None, None)
    reader.stop()
    reader.join()


def trip(state, how):
    """A checkpoint's trip through storage."""
    if how == "json":
        try:
            return json.loads(json.dumps(state))
        except TypeError:  # holds numpy values or bytes: not a JSON state
            how = "pickle"
    if how == "pickle":
        return pickle.loads(pickle.dumps(state))
    buf = io.BytesIO()
    torch.save({"model": {}, "loader": state}, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)["loader"]


# --- runs -------------------------------------------------------------------------------------------------------

def _take(loader, c, out, target, pass_no, it=None):
    """Take batches into ``out`` across passes until ``target`` batches (None: to the end) or the cap.

    Returns ``(pass number reached, the iterator of the running pass or None)``; ``it``: an iterator to go on with.
    """
    lim = c["cap_batches"] if c["epochs"] is None else None
    if it is None and pass_no < c["passes"]:
        it = iter(loader)
    while it is not None and (target is None or len(out) < target) and (lim is None or len(out) < lim):
        try:
            out.append(batch_rows(next(it)))
        except StopIteration:
            pass_no += 1
            it = iter(loader) if pass_no < c["passes"] and c["kind"] not in _SINGLE_PASS else None
    return pass_no, it


def _leave(it):
    if it is not None and hasattr(it, "close"):
        it.close()


def run_full(url, c):
    """The batches of an uninterrupted run, every pass, as ``[[ids of a batch], ...]`` per pass."""
    reader = open_reader(url, c)
    loader = make_loader(reader, c)
    passes = []
    try:
        for _ in range(c["passes"]):
            batches = []
            _take(loader, c, batches, None, c["passes"] - 1)
            passes.append(batches)
    finally:
        close(loader, reader)
    return passes


def run_sessions(url, c, cuts):
    """Sessions that each take batches up to the next cut, save the state and close; the next one resumes from
    it. With ``c['continue']`` the first session also goes on after saving: returns ``(batches, continued)``."""
    out, state, pass_no, continued = [], None, 0, None
    for session, target in enumerate(list(cuts) + [None]):
        cs = varied(c, session)
        reader = open_reader(url, cs)
        loader = make_loader(reader, cs)
        try:
            if state is not None:
                loader.load_state_dict(state)
            reached, it = _take(loader, cs, out, target, pass_no)
            if target is not None:
                if c["save"] == "after_leaving":  # ``break`` out of the loop (iterator closed), then save
                    _leave(it)
                    it = None
                elif c["save"] == "after_exit":  # leave ``with loader:`` (reader stopped and joined), then save
                    _leave(it)
                    it = None
                    loader.__exit__(None, None, None)
                state = trip(loader.state_dict(), c["trip"])
                if session == 0 and c["continue"] and it is not None:
                    continued = list(out)
                    _, it = _take(loader, cs, continued, None, reached, it)
            _leave(it)
            pass_no = reached
        finally:
            close(loader, reader)
    return out, continued


def _threads():
    return {t for t in threading.enumerate() if t is not threading.main_thread()}


def _children():
    """Child processes, but multiprocessing's fork server and resource tracker (one per interpreter, by design)."""
    out = set()
    for path in glob.glob(f"/proc/{os.getpid()}/task/*/children"):
        try:
            with open(path) as f:
                pids = f.read().split()
        except OSError:  # the thread ended meanwhile
            continue
        for pid in pids:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmdline = f.read()
            except OSError:
                continue
            if b"multiprocessing.forkserver" not in cmdline and b"multiprocessing.resource_tracker" not in cmdline:
                out.add(pid)
    return out


def _assert_nothing_left(threads, children):
    deadline = time.time() + 10
    while (_threads() - threads or _children() - children) and time.time() < deadline:
        time.sleep(0.02)
    assert not _threads() - threads, f"threads left running: {sorted(t.name for t in _threads() - threads)}"
    assert not _children() - children, "child processes left running"


def check_case(url, n, c, cuts):
    threads, children = _threads(), _children()
    full = run_full(url, c)
    got, continued = run_sessions(url, c, cuts)
    flat = [b for p in full for b in p]
    ids = Counter(i for b in flat for i in b)
    resumed = Counter(i for b in got for i in b)
    assert resumed == ids, (f"lost {sorted((ids - resumed).elements())[:20]}, repeated "
                            f"{sorted((resumed - ids).elements())[:20]}")
    assert got == flat, "the resumed batches are not those of the uninterrupted run (order)"
    if continued is not None:
        assert continued == flat, "state_dict() changed what the loader serves next"
    if c["shard_count"] is None and c["epochs"] is not None and not c["drop_last"]:
        kept = [i for i in range(n) if not (c["transform"] and i % 3 == 1)]
        times = c["epochs"] * (c["loader_epochs"] or 1)
        for p, batches in enumerate(full):
            assert Counter(i for b in batches for i in b) == Counter(kept * times), f"pass {p} is not every row"
    _assert_nothing_left(threads, children)


def random_cuts(rng, n, c):
    total = max(1, n * (c["epochs"] or 1) * c["passes"] * (c["loader_epochs"] or 1) // c["batch_size"] + 2)
    if c["epochs"] is None:
        total = c["cap_batches"]
    return sorted(rng.randint(0, total) for _ in range(rng.randint(1, 4)))  # repeats: load, save at once


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume_datasets")
    small = [write_dataset(str(root / f"s{i}"), seed=i, files=1 + i % 3) for i in range(4)]
    return {"small": small, "big": write_dataset(str(root / "big"), seed=7, files=3, max_group=2000)}


def _run_cases(datasets, seeds, which="small", **case_kw):
    ran = Counter()
    for seed in seeds:
        rng = random.Random(seed)
        url, n = datasets[which][seed % 4] if which == "small" else datasets[which]
        c = random_case(rng, n, **case_kw)
        cuts = random_cuts(rng, n, c)
        try:
            check_case(url, n, c, cuts)
        except Exception as e:
            raise AssertionError(f"seed {seed}: case {c}, cuts {cuts}, {n} rows: {e!r}") from e
        ran[c["kind"]] += 1
    return ran


def test_resume_sessions_serve_the_uninterrupted_batches(datasets):
    ran = _run_cases(datasets, range(0, 60))
    assert set(ran) == set(KINDS), ran


@pytest.mark.slow
def test_resume_sessions_serve_the_uninterrupted_batches_many(datasets):
    _run_cases(datasets, range(1000, 1100))


@pytest.mark.slow
def test_resume_sessions_over_large_row_groups(datasets):
    # row groups of up to 3000 rows: whole blocks of batches prefetched, re-read from a row inside them
    _run_cases(datasets, range(2000, 2016), which="big")


@pytest.mark.slow
def test_resume_sessions_with_the_process_pool(datasets):
    _run_cases(datasets, range(3000, 3006), pools=("process",))


def test_resume_without_a_reader_seed_serves_every_row_once(datasets):
    # the reader draws its seed; the state records it, so the resumed epoch is the saved one's
    for seed in range(4000, 4030):
        rng = random.Random(seed)
        url, n = datasets["small"][seed % 4]
        c = random_case(rng, n, kinds=["batched2", "dl_batch", "dl_custom", "jax"])
        c.update(epochs=rng.choice([1, 3]), shard_count=None, cur_shard=None, seed=None, transform=False, passes=1,
                 drop_last=False)
        cuts = random_cuts(rng, n, c)
        got, _ = run_sessions(url, c, cuts)
        assert Counter(i for b in got for i in b) == Counter(list(range(n)) * c["epochs"]), (seed, c, cuts)


# --- elastic ----------------------------------------------------------------------------------------------------

def elastic_case(url, n, rng, epochs=(1,), n_stages=(2, 3)):
    """Stages of W ranks (1..4): each rank takes 0..8 batches and saves; the states are merged and the next
    stage's ranks resume from the job state; the last stage reads to the end.

    Returns ``(case, stages, steps, ids served, rows the first stage's epoch end may leave out, rows per last
    rank)``."""
    kind = rng.choice(["batched0", "batched2", "dl_row", "dl_batch", "dl_custom", "jax"])
    c = random_case(rng, n, kinds=[kind])
    c.update(epochs=rng.choice(epochs), passes=1, vary=False, drop_last=False)
    if not c["batched_reader"]:
        c["shuffle_rows"] = False  # refused at another world size (docs/elastic_resume.md, Limits)
    stages = [rng.randint(1, 4) for _ in range(rng.choice(n_stages))]
    steps = [[rng.randint(0, 8) for _ in range(w)] for w in stages[:-1]]
    seen, job, tail, sizes = [], None, 0, [0]
    for stage, world in enumerate(stages):
        last = stage == len(stages) - 1
        states, per_rank = [], []
        for rank in range(world):
            cr = dict(c, cur_shard=rank, shard_count=world)
            reader = open_reader(url, cr)
            loader = make_loader(reader, cr)
            got = []
            try:
                if job is not None:
                    loader.load_state_dict(job)
                _, it = _take(loader, cr, got, None if last else steps[stage][rank], 0)
                if not last:
                    states.append(trip(loader.state_dict(), c["trip"]))
                _leave(it)
            finally:
                close(loader, reader)
            per_rank.append(len(got))
            seen += [i for b in got for i in b]
        if last:
            sizes = per_rank
            break
        job = trip(merge_state_dicts(states), c["trip"])
        if stage == 0 and job["reader"]["next_epoch"] == 1:
            tail = n % world  # every reader ended the epoch at W1: its 'drop' remainder is left out
        if not job["in_pass"] and job["passes_done"]:
            break  # every loader ended its pass
    return c, stages, steps, seen, tail, sizes


def run_elastic(datasets, seeds, **kw):
    for seed in seeds:
        rng = random.Random(seed)
        url, n = datasets["small"][seed % 4]
        c, stages, steps, seen, tail, sizes = elastic_case(url, n, rng, **kw)
        what = f"seed {seed}: case {c}, stages {stages}, steps {steps}, {n} rows"
        counts = Counter(seen)
        universe = Counter(i for i in range(n) if not (c["transform"] and i % 3 == 1))
        if c["epochs"] == 1:
            assert all(v == 1 for v in counts.values()), f"{what}: rows repeated {[k for k, v in counts.items() if v > 1]}"
            assert len(set(universe) - set(counts)) <= tail, f"{what}: rows lost {sorted(set(universe) - set(counts))}"
        else:  # n is a multiple of every world size: no epoch leaves a row out
            want = Counter({i: k * c["epochs"] for i, k in universe.items()})
            assert counts == want, f"{what}: lost {sorted((want - counts).elements())[:20]}, repeated " \
                                   f"{sorted((counts - want).elements())[:20]}"
        if not c["transform"]:
            assert max(sizes) - min(sizes) <= 1, f"{what}: new ranks unbalanced {sizes}"


def test_elastic_resume_serves_every_row_once(datasets):
    run_elastic(datasets, range(0, 40))


@pytest.mark.slow
def test_elastic_resume_serves_every_row_once_many(datasets):
    run_elastic(datasets, range(1000, 1150))
