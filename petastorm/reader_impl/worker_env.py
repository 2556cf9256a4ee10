"""Environment of pool worker processes, set in the fork server before it imports numpy.

A pool worker is one of ``workers_count`` processes that share the machine's cores: a BLAS thread pool of
its own in each (OpenBLAS starts one thread per core when numpy is imported, and they spin for ~0.1 s
before they sleep) only competes with the other workers and the consumer. So, unless the user's
environment says otherwise, the fork server (and so every worker it forks) runs BLAS on one thread, as
PyTorch's ``DataLoader`` does in its workers. The fork server imports this module first (see
:data:`~petastorm.reader_impl.preload.FORKSERVER_PRELOAD`); imported anywhere else it changes nothing.
"""
from __future__ import annotations

import os
import sys

__all__ = ["WORKER_THREAD_ENV", "apply", "in_fork_server"]

#: Variables set to ``'1'`` in worker processes unless already set.
WORKER_THREAD_ENV = ("OPENBLAS_NUM_THREADS",)


def apply() -> None:
    """Set :data:`WORKER_THREAD_ENV` to ``'1'`` where the environment does not set them."""
    for name in WORKER_THREAD_ENV:
        os.environ.setdefault(name, "1")


def in_fork_server() -> bool:
    """True while :func:`multiprocessing.forkserver.main` is on the stack (the fork server's preload)."""
    frame = sys._getframe()
    while frame is not None:
        if frame.f_code.co_name == "main" and frame.f_globals.get("__name__") == "multiprocessing.forkserver":
            return True
        frame = frame.f_back
    return False


if in_fork_server():
    apply()
