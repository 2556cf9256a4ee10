"""Jobs of real processes for the distributed tests: a free port, ranks spawned and joined under a deadline,
and the Parquet store of row ids they read."""
from __future__ import annotations

import os
import socket
import time
from typing import Callable, Sequence

import numpy as np
import pytest


def free_port() -> int:
    """A TCP port of 127.0.0.1 that is free now (the rendezvous of a process group)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_ranks(worker: Callable, args: tuple, world: int, timeout_s: float, what: str) -> None:
    """Run ``worker(rank, *args)`` in ``world`` spawned processes (``torch.multiprocessing``) and wait for all.

    Fails the test, naming ``what``, when they are not done after ``timeout_s`` seconds (a rank hung) or one
    of them fails; no process is left alive either way.
    """
    import torch.multiprocessing as mp

    ctx = mp.start_processes(worker, args=args, nprocs=world, join=False, start_method="spawn")
    deadline = time.time() + timeout_s
    try:
        while not ctx.join(timeout=1):
            if time.time() > deadline:
                pytest.fail(f"{what} did not finish in {timeout_s} s (a rank hung)")
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.kill()
                p.join(5)


def write_id_store(path: os.PathLike, row_groups: Sequence[int], float_copy: bool = False) -> str:
    """A store of one file, ``a.parquet``, in the new directory ``path``: the int64 column ``id`` holds
    ``0 .. sum(row_groups) - 1`` in row groups of ``row_groups`` rows (with ``float_copy``, a float32 column
    ``x`` holds the same values). Returns its ``file://`` URL."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    os.makedirs(path)
    ids = np.arange(sum(row_groups), dtype=np.int64)
    fields = [("id", pa.int64())] + ([("x", pa.float32())] if float_copy else [])
    with pq.ParquetWriter(os.path.join(path, "a.parquet"), pa.schema(fields)) as w:
        start = 0
        for n in row_groups:
            part = ids[start:start + n]
            columns = {"id": part, "x": part.astype(np.float32)} if float_copy else {"id": part}
            w.write_table(pa.table(columns), row_group_size=n)
            start += n
    return "file://" + str(path)
