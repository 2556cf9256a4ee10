"""The worker-process side of the process pool: build the worker, serve tasks, send results.

The parent side, and the protocol on the connection, are in :mod:`petastorm.reader_impl.process_pool`.
"""
from __future__ import annotations

import os
import signal
import socket
import time
from collections import deque
from typing import Any, Callable, Optional

import cloudpickle

from petastorm.reader_impl.pool import close_worker, exception_payload
from petastorm.reader_impl.shm_transport import TRANSPORT_SHM, ShmWriter

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
    from petastorm.batch_memory import set_batch_allocator  # here: 'spawn' workers start bare

    set_batch_allocator(writer.allocate)


def worker_main(index: int, conn: Any, factory_bytes: bytes, main_pid: int, transport: str,
                max_free_segments: int) -> None:
    """Entry point of a worker process: build the worker, then serve tasks until 'stop' or EOF.

    On ``('park', keepalive_s)`` instead of 'stop', the worker bequeaths its segments as on 'stop', closes
    its worker and all its segments, answers ``('parked',)`` and waits up to ``keepalive_s`` for a
    ``('job', factory_bytes, segments_kept)`` from the next pool of the parent (see
    :mod:`petastorm.reader_impl.parked_workers`), then serves that pool as a fresh worker would.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C is the parent's business
    sock = socket.socket(fileno=os.dup(conn.fileno())) if transport == TRANSPORT_SHM else None
    writer = ShmWriter(conn.send, sock, transport, max_free_segments)
    _install_batch_allocator(writer)
    worker = None
    try:
        job: Optional[bytes] = factory_bytes
        while job is not None:
            try:
                worker = cloudpickle.loads(job)()
            except BaseException as exc:  # noqa: BLE001 - reported to the caller
                conn.send(("start_error", exception_payload(exc)))
                return
            conn.send(("ready", os.getpid(), time.time()))
            leave = _serve(conn, worker, writer, main_pid)
            if leave is None or leave[0] != "park":
                return
            close_worker(worker)
            worker = None
            # segments are forgotten here (the parent has them now); an array of the last job still alive
            # keeps its mapping, and segment ids are never reused, so it cannot mix with the next job's
            writer.close()
            conn.send(("parked",))
            job = _wait_for_job(conn, writer, main_pid, float(leave[1]))
    except (EOFError, OSError):
        return  # the parent went away
    finally:
        close_worker(worker)
        writer.close()
        if sock is not None:
            sock.close()


def _serve(conn: Any, worker: Any, writer: ShmWriter, main_pid: int) -> Optional[tuple]:
    """Run tasks until 'stop' or 'park' (returned, after the segments were bequeathed) or the parent is
    gone (None)."""
    pending: deque = deque()
    cancelled_below = 0
    leave: list = []

    def drain() -> bool:
        """Read every message already there; False on 'stop' or 'park'."""
        nonlocal cancelled_below
        while conn.poll(0):
            msg = conn.recv()
            if msg[0] in ("stop", "park"):
                writer.bequeath()  # segments go back to the parent, for its next pool
                leave.append(msg)
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
                    return None
                continue
        if not drain():
            return leave[0]
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
            return leave[0]
        try:
            payload = writer.encode(out)
        except BaseException as exc:  # noqa: BLE001 - e.g. a result that cannot be pickled
            conn.send(("error", gen, seq, exception_payload(exc)))
            del exc
            continue
        del out
        conn.send(("result", gen, seq, payload))
        del payload


def _wait_for_job(conn: Any, writer: ShmWriter, main_pid: int, keepalive_s: float) -> Optional[bytes]:
    """A parked worker's wait: the next pool's factory, or None (stop, the end of the connection, the
    parent gone, or ``keepalive_s`` seconds without a job)."""
    deadline = time.monotonic() + keepalive_s
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        if not conn.poll(min(1.0, left)):
            if not _parent_alive(main_pid):
                return None
            continue
        msg = conn.recv()
        if msg[0] == "job":
            writer.set_max_free(msg[2])
            return msg[1]
        if msg[0] == "stop":
            return None
        if msg[0] == "park":  # a second one (stop() then join() both say it): the wait counts from here
            deadline = time.monotonic() + float(msg[1])
        # a late release: nothing to do (this worker has no segment left)
