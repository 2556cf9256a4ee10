"""The fork server reads a tiny embedded Parquet file before forking: no thread, no import, same data."""
import os
import subprocess
import sys

import cloudpickle
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from petastorm.reader_impl.forkserver_warm import TINY_PARQUET, warm_arrow
from petastorm.reader_impl.preload import FORKSERVER_PRELOAD, helper_process_pids
from petastorm.reader_impl.process_pool import ProcessPool
from petastorm.reader_impl.work_item import ColumnBatch, WorkItem

cloudpickle.register_pickle_by_value(sys.modules[__name__])


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
    others = [open(f"/proc/{pid}/task/{t}/comm").read().strip() for t in os.listdir(f"/proc/{pid}/task")
              if int(t) != pid]
    # but for the main thread, only jemalloc's background thread that importing pyarrow starts
    assert all(n.startswith("jemalloc") for n in others), others
    warm_arrow()  # outside the fork server it is an ordinary function


def _warmed_factory():
    def work(item):
        from petastorm.reader_impl import forkserver_warm
        return ColumnBatch({"warmed": np.array([forkserver_warm.WARMED])}, 1, item)
    return work


def test_workers_of_the_fork_server_start_warmed():
    with ProcessPool(1, 1, start_method="forkserver") as pool:
        pool.start(_warmed_factory)
        out = list(pool.imap([WorkItem(epoch=0, position=0, row_group=0, row_start=0, row_stop=1)]))
    assert bool(out[0].columns["warmed"][0]) is True
    from petastorm.reader_impl import forkserver_warm

    assert forkserver_warm.WARMED is False  # this process is not the fork server: it did nothing


def _imports_factory():
    def work(item):
        return ColumnBatch({"loaded": np.array([m in sys.modules for m in
                                                ("cv2", "petastorm.image_io", "petastorm.reader_impl.parquet_io",
                                                 "petastorm.value_types")])}, 1, item)
    return work


def test_workers_start_with_the_image_decoder_loaded():
    # make_reader starts the fork server before it knows the schema: every worker imported cv2 (~65 ms) itself
    with ProcessPool(1, 1, start_method="forkserver") as pool:
        pool.start(_imports_factory)
        out = list(pool.imap([WorkItem(epoch=0, position=0, row_group=0, row_start=0, row_stop=1)]))
    assert out[0].columns["loaded"].tolist() == [True, True, True, True]
