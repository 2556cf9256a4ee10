"""Imported by the fork server only, first in its preload list: it prepares what every worker it forks inherits.

Two things, done at import (that is the point of the module: never import it anywhere else, see
:data:`~petastorm.reader_impl.process.fork_server.FORKSERVER_PRELOAD`):

1. numpy with OpenBLAS on one thread. A pool worker is one of ``workers_count`` processes that share the
   machine's cores: a BLAS thread pool of its own in each (OpenBLAS starts one thread per core when numpy
   is imported, and they spin a while before they sleep) only competes with the other workers and the
   consumer, and in the fork server it delayed the first pool's first row. So, unless
   the user set ``OPENBLAS_NUM_THREADS``, ``GOTO_NUM_THREADS`` or ``OMP_NUM_THREADS``, numpy is imported
   with ``OPENBLAS_NUM_THREADS=1`` and the variable removed again: processes forked from the server inherit
   the one-thread OpenBLAS (as PyTorch's ``DataLoader`` runs its workers on one intra-op thread), but not
   the variable, so programs they start are not affected. The fork server is multiprocessing's, one per
   interpreter: the processes it starts for the user's own ``'forkserver'`` pools after the first
   process-pool reader start with one OpenBLAS thread as well (``threadpoolctl``, or setting one of those
   variables before the first reader, changes that).
2. Arrow's lazily initialised parts (the Snappy codec, the Parquet reader's and the binary decoder's
   first-use set-up), warmed by reading a two-row Parquet file from memory, so that workers do not each pay
   for them on their first row group (figures in ``benchmarks/README.md``). The file is embedded (written
   once by ``pyarrow.parquet.write_table``, whose first call imports pandas: time the fork server must not
   spend). Reading it starts no thread and imports nothing beyond numpy and pyarrow.

The module does no detection of where it runs (no stack-frame inspection): the pool names it in the fork
server's preload list, and nothing else imports it (``tests/package/test_import_graph.py`` checks that no module
of petastorm does).
"""
from __future__ import annotations

import base64
import os
import sys

from petastorm.settings import other_program_variable

__all__ = ["BLAS_THREAD_ENV", "TINY_PARQUET", "WARMED", "import_numpy_with_one_blas_thread", "warm_arrow"]

#: Variables that, when the user sets any of them, leave OpenBLAS's thread count to the user.
BLAS_THREAD_ENV = ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS")

#: True once the Arrow read went through (in the fork server, and so in every worker it forks after that).
WARMED = False

#: ``id`` int64 [1, 2] and ``blob`` binary [b"ab", b"cd"], Snappy, one row group.
TINY_PARQUET = base64.b64decode(
    "UEFSMRUEFSAVJEwVBBUAEgAAEDwBAAAAAAAAAAIAAAAAAAAAFQAVEhUWLBUEFRAVBhUGHBgIAgAAAAAAAAAYCAEAAAAAAAAA"
    "FgAoCAIAAAAAAAAAGAgBAAAAAAAAABERAAAACSACAAAABAEBAwIVBBUYFRxMFQQVABIAAAwsAgAAAGFiAgAAAGNkFQAVEhUW"
    "LBUEFRAVBhUGHDYAKAJjZBgCYWIREQAAAAkgAgAAAAQBAQMCFQQZPDUAGAZzY2hlbWEVBAAVBCUCGAJpZAAVDCUCGARibG9i"
    "ABYEGRwZLCYAHBUEGTUABhAZGAJpZBUCFgQWzAEW1AEmSCYIHBgIAgAAAAAAAAAYCAEAAAAAAAAAFgAoCAIAAAAAAAAAGAgB"
    "AAAAAAAAABERABksFQQVABUCABUAFRAVAgA8KQYZJgAEAAAAJgAcFQwZNQAGEBkYBGJsb2IVAhYEFoQBFowBJpQCJtwBHDYA"
    "KAJjZBgCYWIREQAZLBUEFQAVAgAVABUQFQIAPBYIGQYZJgAEAAAAFtACFgQmCBbgAgAoIHBhcnF1ZXQtY3BwLWFycm93IHZl"
    "cnNpb24gMjYuMC4xGSwcAAAcAAAAEQEAAFBBUjE=")


def import_numpy_with_one_blas_thread() -> None:
    """Import numpy with ``OPENBLAS_NUM_THREADS=1`` (unless the user set one of :data:`BLAS_THREAD_ENV`),
    then leave the environment as it was (this is the fork server's own environment: the one its children
    start with)."""
    if any(other_program_variable(name) is not None for name in BLAS_THREAD_ENV) or "numpy" in sys.modules:
        import numpy  # noqa: F401

        return
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    try:
        import numpy  # noqa: F401
    finally:
        os.environ.pop("OPENBLAS_NUM_THREADS", None)


def warm_arrow() -> None:
    """Read :data:`TINY_PARQUET` the way a worker reads a row group (returns nothing)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.ParquetFile(pa.BufferReader(TINY_PARQUET), buffer_size=1 << 20).read_row_group(0, use_threads=False)
    np.frombuffer(table.column("blob").chunk(0).buffers()[2], dtype=np.uint8)


def _prepare() -> bool:
    """Both steps; False if one failed (an optimisation: it must never stop the fork server)."""
    try:
        import_numpy_with_one_blas_thread()
        warm_arrow()
    except Exception:  # noqa: BLE001
        return False
    return True


WARMED = _prepare()
