"""Ending a worker process once the process that started it is gone.

A writer killed by SIGKILL or the OOM killer cannot stop its encoding pool, and ``ProcessPoolExecutor`` workers
would wait on their queue forever (keeping the forkserver and the resource tracker alive). Each worker runs a
thread, :func:`start_parent_watch`, that checks every :data:`POLL_S` seconds whether the writer is still the
process it was (its pid and its start time, so a reused pid is not mistaken for it) and exits the worker when it
is not.
"""
from __future__ import annotations

import os
import threading
import time
from typing import Optional

__all__ = ["POLL_S", "process_identity", "start_parent_watch"]

#: Seconds between two looks at the parent.
POLL_S = 0.5


def process_identity(pid: int) -> Optional[str]:
    """``pid``'s start time (Linux ``/proc/<pid>/stat``), "" where unknown, None if it is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except FileNotFoundError:
        return None
    except OSError:  # no /proc: only whether the pid exists
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except OSError:
            pass
        return ""
    return None if fields[0] in (b"Z", b"X") else fields[19].decode()


def _watch_parent(pid: int, identity: Optional[str]) -> None:
    """Worker thread: exit the worker once the writing process is gone. A writer killed by SIGKILL (or the
    OOM killer) cannot stop its pool, and ``ProcessPoolExecutor`` workers would wait on their queue forever."""
    while True:
        time.sleep(POLL_S)
        if process_identity(pid) != identity:
            os._exit(1)


def start_parent_watch(pid: int, identity: Optional[str]) -> None:
    """Start the daemon thread that exits this process once process ``pid`` (whose
    :func:`process_identity` was ``identity``) is gone."""
    threading.Thread(target=_watch_parent, args=(pid, identity), daemon=True,
                     name="petastorm-writer-parent-watch").start()
