"""The fork server's setup module (``reader_impl/process/fork_server_setup.py``): imported first by the fork
server, it reads a tiny embedded Parquet file before forking (no thread, no import, same data); nothing
else imports it."""
import os
import subprocess
import sys

import cloudpickle
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from petastorm.reader_impl.process import ProcessPool
from petastorm.reader_impl.process.fork_server import FORKSERVER_PRELOAD, helper_process_pids
from petastorm.reader_impl.process.fork_server_setup import TINY_PARQUET, warm_arrow
from petastorm.reader_impl.work_item import ColumnBatch, WorkItem

cloudpickle.register_pickle_by_value(sys.modules[__name__])


def test_the_embedded_file_is_the_documented_table():
    table = pq.ParquetFile(pa.BufferReader(TINY_PARQUET)).read()
    assert table.to_pydict() == {"id": [1, 2], "blob": [b"ab", b"cd"]}
    assert pq.ParquetFile(pa.BufferReader(TINY_PARQUET)).metadata.row_group(0).column(1).compression == "SNAPPY"


def test_it_is_preloaded_first():
    # first: it imports numpy itself, with one BLAS thread, before any other module of the list can
    assert FORKSERVER_PRELOAD[0] == "petastorm.reader_impl.process.fork_server_setup"


def test_the_reader_process_never_imports_it():
    code = ("import os, sys\n"
            "import numpy as np\n"
            "from petastorm.reader_impl.process import ProcessPool\n"
            "from petastorm.reader_impl.work_item import ColumnBatch, WorkItem\n"
            "def factory():\n"
            "    return lambda item: ColumnBatch({'x': np.zeros(1)}, 1, item)\n"
            "with ProcessPool(1, 1, start_method='forkserver') as pool:\n"
            "    pool.start(factory)\n"
            "    n = len(list(pool.imap([WorkItem(0, 0, 0, 0, 1)])))\n"
            "print(n, 'petastorm.reader_impl.process.fork_server_setup' in sys.modules,\n"
            "      os.environ.get('OPENBLAS_NUM_THREADS'))\n")
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env,
                         cwd="/")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[0] == "1 False None"


def test_warming_imports_nothing_and_starts_no_thread():
    code = ("import sys, threading, os\n"
            "import numpy, pyarrow, pyarrow.parquet\n"
            "from petastorm.reader_impl.process.fork_server_setup import warm_arrow\n"
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
        setup = sys.modules.get("petastorm.reader_impl.process.fork_server_setup")
        return ColumnBatch({"warmed": np.array([setup is not None and setup.WARMED])}, 1, item)
    return work


def test_workers_of_the_fork_server_start_warmed():
    with ProcessPool(1, 1, start_method="forkserver") as pool:
        pool.start(_warmed_factory)
        out = list(pool.imap([WorkItem(epoch=0, position=0, row_group=0, row_start=0, row_stop=1)]))
    assert bool(out[0].columns["warmed"][0]) is True


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
