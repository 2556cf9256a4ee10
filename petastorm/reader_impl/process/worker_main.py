"""The worker-process side of the process pool: build the worker, serve tasks, send results.

The parent side, and the protocol on the connection, are in :mod:`petastorm.reader_impl.process.pool` and
:mod:`petastorm.reader_impl.process.worker_processes`.
"""
from __future__ import annotations

import gc
import os
import signal
import socket
import time
from collections import deque
from typing import Any, Callable, Optional

import cloudpickle

from petastorm.reader_impl.pool import close_worker
from petastorm.reader_impl.process.remote_errors import exception_payload
from petastorm.reader_impl.process.transport import TRANSPORT_SHM, ShmWriter

__all__ = ["worker_batch_allocator", "worker_main"]


def _parent_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_BATCH_ALLOCATOR: Optional[Callable[[tuple, Any], Any]] = None


def worker_batch_allocator() -> Optional[Callable[[tuple, Any], Any]]:
    """In a process-pool worker with the 'shm' transport: ``allocate(shape, dtype)``, which returns an
    uninitialised array in shared memory (or None), so that a result holding it crosses to the parent with
    no copy. None elsewhere (threads, the parent, the 'pipe' transport)."""
    return _BATCH_ALLOCATOR


def _install_batch_allocator(writer: ShmWriter) -> None:
    """Let the codecs decode batches straight into shared memory (no copy when the result is sent), where
    they offer the hook ``petastorm.batch_memory.set_batch_allocator(fn)``; ``fn(shape, dtype)`` returns an array
    or None (then the codec allocates as usual)."""
    global _BATCH_ALLOCATOR
    if writer.transport != TRANSPORT_SHM:
        return
    _BATCH_ALLOCATOR = writer.allocate
    # imported here, not at the top: batch_memory imports numpy, and the fork server imports this package
    # before numpy (fork_server_setup must import numpy first, with one BLAS thread)
    from petastorm.batch_memory import set_batch_allocator

    set_batch_allocator(writer.allocate)


def worker_main(index: int, conn: Any, factory_bytes: bytes, main_pid: int, transport: str,
                max_free_segments: int) -> None:
    """Entry point of a worker process: build the worker, then serve tasks until 'stop' or EOF."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C is the parent's business
    # Everything this process inherited from the fork server (numpy, pyarrow, cv2 and petastorm's modules)
    # lives as long as it does: frozen, the garbage collector no longer walks those objects, so a collection
    # in the worker neither spends time on them nor writes to (copies) the pages they share with the server.
    gc.freeze()
    sock = socket.socket(fileno=os.dup(conn.fileno())) if transport == TRANSPORT_SHM else None
    writer = ShmWriter(conn.send, sock, transport, max_free_segments)
    _install_batch_allocator(writer)
    worker = None
    try:
        try:
            worker = cloudpickle.loads(factory_bytes)()
        except BaseException as exc:  # noqa: BLE001 - reported to the caller
            conn.send(("start_error", exception_payload(exc)))
            return
        conn.send(("ready", os.getpid(), time.time()))
        _serve(conn, worker, writer, main_pid)
    except (EOFError, OSError):
        return  # the parent went away
    finally:
        close_worker(worker)
        writer.close()
        if sock is not None:
            sock.close()


def _serve(conn: Any, worker: Any, writer: ShmWriter, main_pid: int) -> None:
    """Run tasks until 'stop' (the segments are bequeathed then) or the parent is gone."""
    pending: deque = deque()
    cancelled_below = 0

    def drain() -> bool:
        """Read every message already there; False on 'stop'."""
        nonlocal cancelled_below
        while conn.poll(0):
            msg = conn.recv()
            if msg[0] == "stop":
                writer.bequeath()  # segments go back to the parent, for its next pool
                return False
            if msg[0] == "release":
                writer.release(msg[1])
            elif msg[0] == "gift":
                writer.adopt(msg[1])
            elif msg[0] == "cancel":
                cancelled_below = max(cancelled_below, msg[1] + 1)
            else:
                if msg[4]:
                    writer.release(msg[4])
                pending.append(msg)
        return True

    while True:
        if not pending:
            if not conn.poll(1.0):
                if not _parent_alive(main_pid):
                    return
                continue
        if not drain():
            return
        if not pending:
            continue
        _kind, gen, seq, item, _releases = pending.popleft()
        if gen < cancelled_below:
            continue
        try:
            out = worker(item)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller at this item's turn
            conn.send(("error", gen, seq, exception_payload(exc)))
            del exc
            continue
        if not drain():
            return
        try:
            payload = writer.encode(out)
        except BaseException as exc:  # noqa: BLE001 - e.g. a result that cannot be pickled
            conn.send(("error", gen, seq, exception_payload(exc)))
            del exc
            continue
        del out
        conn.send(("result", gen, seq, payload))
        del payload
