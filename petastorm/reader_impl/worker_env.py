"""The fork server imports numpy with OpenBLAS on one thread, so pool workers start that way.

A pool worker is one of ``workers_count`` processes that share the machine's cores: a BLAS thread pool of
its own in each (OpenBLAS starts one thread per core when numpy is imported, and they spin for ~0.1 s
before they sleep) only competes with the other workers and the consumer, and in the fork server it
delayed the first pool's first row by ~0.04 s on 2 cores. So, unless the user set
``OPENBLAS_NUM_THREADS``, ``GOTO_NUM_THREADS`` or ``OMP_NUM_THREADS``, the fork server imports numpy with
``OPENBLAS_NUM_THREADS=1`` and then removes the variable again: processes it forks inherit the
one-thread OpenBLAS (as PyTorch's ``DataLoader`` runs its workers on one intra-op thread), but not the
variable, so programs they start are not affected.

The fork server is multiprocessing's, one per interpreter: the processes it starts for the user's own
``'forkserver'`` pools after the first process-pool reader start with one OpenBLAS thread as well
(``threadpoolctl`` or setting one of those variables before the first reader changes that).

The fork server imports this module first (see :data:`~petastorm.reader_impl.preload.FORKSERVER_PRELOAD`);
imported anywhere else it does nothing.
"""
from __future__ import annotations

import os
import sys

__all__ = ["BLAS_THREAD_ENV", "import_numpy_with_one_blas_thread", "in_fork_server"]

#: Variables that, when the user sets any of them, leave OpenBLAS's thread count to the user.
BLAS_THREAD_ENV = ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS")


def import_numpy_with_one_blas_thread() -> None:
    """Import numpy with ``OPENBLAS_NUM_THREADS=1`` (unless the user set one of :data:`BLAS_THREAD_ENV`),
    then leave the environment as it was."""
    if any(name in os.environ for name in BLAS_THREAD_ENV) or "numpy" in sys.modules:
        import numpy  # noqa: F401

        return
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    try:
        import numpy  # noqa: F401
    finally:
        os.environ.pop("OPENBLAS_NUM_THREADS", None)


def in_fork_server() -> bool:
    """True while :func:`multiprocessing.forkserver.main` is on the stack: in the fork server (its preload)
    and in the processes it forks (whose code runs below that frame)."""
    frame = sys._getframe()
    while frame is not None:
        if frame.f_code.co_name == "main" and frame.f_globals.get("__name__") == "multiprocessing.forkserver":
            return True
        frame = frame.f_back
    return False


if in_fork_server():
    import_numpy_with_one_blas_thread()
