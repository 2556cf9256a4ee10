"""The fork server reads a tiny embedded Parquet file before forking: no thread, no import, same data."""
import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq

from petastorm.reader_impl.forkserver_warm import TINY_PARQUET, warm_arrow
from petastorm.reader_impl.preload import FORKSERVER_PRELOAD, helper_process_pids


def test_the_embedded_file_is_the_documented_table():
    table = pq.ParquetFile(pa.BufferReader(TINY_PARQUET)).read()
    assert table.to_pydict() == {"id": [1, 2], "blob": [b"ab", b"cd"]}
    assert pq.ParquetFile(pa.BufferReader(TINY_PARQUET)).metadata.row_group(0).column(1).compression == "SNAPPY"


def test_it_is_preloaded_after_the_modules_it_uses():
    assert FORKSERVER_PRELOAD.index("petastorm.reader_impl.forkserver_warm") > FORKSERVER_PRELOAD.index("pyarrow.parquet")


def test_warming_imports_nothing_and_starts_no_thread():
    code = ("import sys, threading, os\n"
            "import numpy, pyarrow, pyarrow.parquet\n"
            "from petastorm.reader_impl.forkserver_warm import warm_arrow\n"
            "before, tasks = set(sys.modules), len(os.listdir(f'/proc/{os.getpid()}/task'))\n"
            "warm_arrow()\n"
            "print(sorted(set(sys.modules) - before), len(os.listdir(f'/proc/{os.getpid()}/task')) - tasks)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")[0]
    assert out == "[] 0", out


def test_the_fork_server_has_no_thread_but_the_allocators(synthetic_dataset):
    from petastorm import make_reader

    with make_reader(synthetic_dataset, reader_pool_type="process", workers_count=1) as reader:
        next(reader)
    from multiprocessing import forkserver

    pid = forkserver._forkserver._forkserver_pid
    assert pid in helper_process_pids()
    names = [open(f"/proc/{pid}/task/{t}/comm").read().strip() for t in sorted(os.listdir(f"/proc/{pid}/task"))]
    # the main thread, and jemalloc's background thread that importing pyarrow starts
    assert [n for n in names if not n.startswith("jemalloc")] == [names[0]], names
    warm_arrow()  # outside the fork server it is an ordinary function
