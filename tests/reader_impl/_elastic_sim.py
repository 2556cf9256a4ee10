"""Helpers of the elastic-resume tests: tiny plain-Parquet datasets of row ids, and a job of W ranks
simulated in one process (one reader per rank, read in turn)."""
import json
import os
import pickle
import warnings

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from petastorm import make_batch_reader, make_reader, merge_state_dicts


def write_ids_dataset(path, files, groups, rows_per_group):
    """``files`` Parquet files of ``groups`` row groups of ``rows_per_group`` rows; column ``id`` = 0..N-1."""
    os.makedirs(path, exist_ok=True)
    n = 0
    for f in range(files):
        ids = np.arange(n, n + groups * rows_per_group, dtype=np.int64)
        n += len(ids)
        pq.write_table(pa.table({"id": ids}), os.path.join(path, f"part-{f:03d}.parquet"),
                       row_group_size=rows_per_group)
    return "file://" + path, n


def open_reader(url, rank, world, batched, resume_from=None, **options):
    """A balanced reader of rank ``rank`` of ``world`` (dummy pool: everything in this thread)."""
    make = make_batch_reader if batched else make_reader
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # make_reader on a plain Parquet store warns
        return make(url, reader_pool_type="dummy", cur_shard=rank, shard_count=world, shard_mode="balanced",
                    resume_from=resume_from, **options)


def ids_of(output):
    """Row ids of a reader output (a row or a column batch) or a loader batch (dict)."""
    value = output["id"] if isinstance(output, dict) else output.id
    return np.asarray(value).ravel().astype(np.int64).tolist()


def read_steps(reader, steps):
    """Ids of the next ``steps`` outputs of ``reader`` (fewer at its end)."""
    out = []
    it = iter(reader)
    for _ in range(steps):
        try:
            out += ids_of(next(it))
        except StopIteration:
            break
    return out


def read_all(reader):
    out = []
    for x in reader:
        out += ids_of(x)
    return out


def roundtrip(state):
    """A checkpoint's trip through storage: JSON when it is plain, pickle otherwise."""
    try:
        return json.loads(json.dumps(state))
    except TypeError:
        return pickle.loads(pickle.dumps(state))


def states_of_ranks(url, world, batched, steps, resume_from=None, **options):
    """Run ``world`` ranks for ``steps[r]`` outputs each, then return (ids read, each rank's stored state)."""
    seen, states = [], []
    for rank in range(world):
        reader = open_reader(url, rank, world, batched, resume_from=resume_from, **options)
        try:
            seen += read_steps(reader, steps[rank])
            states.append(roundtrip(reader.state_dict()))
        finally:
            reader.stop()
            reader.join()
    return seen, states


def checkpoint_readers(url, world, batched, steps, resume_from=None, **options):
    """Run ``world`` ranks for ``steps[r]`` outputs each, then return (ids read, merged job state)."""
    seen, states = states_of_ranks(url, world, batched, steps, resume_from=resume_from, **options)
    return seen, merge_state_dicts(states)


def finish_readers(url, world, batched, resume_from, **options):
    """Read every rank of ``world`` to its end; return the ids read by each rank."""
    per_rank = []
    for rank in range(world):
        reader = open_reader(url, rank, world, batched, resume_from=resume_from, **options)
        try:
            per_rank.append(read_all(reader))
        finally:
            reader.stop()
            reader.join()
    return per_rank
