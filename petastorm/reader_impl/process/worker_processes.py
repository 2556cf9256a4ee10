"""The parent side of a process pool's workers: their handles, the state shared with the pool's finalizer,
starting them (in the caller's thread, or the pool's start thread) and shutting them down.

:class:`~petastorm.reader_impl.process.pool.ProcessPool` feeds the workers and collects their results;
everything here holds no reference to the pool, so that a pool that is garbage-collected still shuts its
workers down (``weakref.finalize(pool, shutdown, state)``).
"""
from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import socket
import threading
import time
import warnings
from collections import deque
from typing import Any, Dict, Iterator, List, Optional

from petastorm.reader_impl.process.fork_server import fork_server_forked, main_module_not_reimported
from petastorm.reader_impl.process.run_in_parent import StartupLane
from petastorm.reader_impl.process.segment_cache import SEGMENT_CACHE
from petastorm.reader_impl.process.transport import TRANSPORT_SHM, ShmReader
from petastorm.reader_impl.process.worker_main import worker_main

__all__ = ["WorkerHandle", "PoolState", "start_workers", "start_workers_reporting", "shutdown", "describe_exit",
           "GC_JOIN_TIMEOUT_S"]

#: Seconds a garbage-collected pool waits for its workers before terminating them.
GC_JOIN_TIMEOUT_S = 1.0


class WorkerHandle:
    """The parent's side of one worker process: its process, connection, result reader and bookkeeping."""

    __slots__ = ("index", "process", "pid", "conn", "sock", "reader", "outstanding", "ready", "dead")

    def __init__(self, index: int, process: Any, conn: Any, sock: Any, reader: ShmReader):
        self.index = index
        self.process = process
        self.pid = process.pid  # kept: a closed Process (after the shutdown) no longer says it
        self.conn = conn
        self.sock = sock
        self.reader = reader
        self.outstanding: Dict[tuple, None] = {}
        self.ready: Any = False
        self.dead = False


class PoolState:
    """Everything the shutdown needs; shared by the pool and its finalizer (which must not hold the pool)."""

    def __init__(self) -> None:
        self.workers: List[WorkerHandle] = []
        self.releases: deque = deque()
        self.send_lock = threading.Lock()
        # one reader of the worker connections at a time: the consumer's imap, or a shutdown (join() from
        # another thread) collecting bequests (a message and the fds that follow it must not be split)
        self.recv_lock = threading.Lock()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)
        # the start-up lane's thread writes to wake_w too: never once it is closed (its number may be reused)
        self.wake_lock = threading.Lock()
        self.closed = False
        self.join_timeout = GC_JOIN_TIMEOUT_S
        self.lane: Optional[StartupLane] = None
        # the thread starting the workers, with the start-up lane; workers join the list under start_lock
        self.starter: Optional[threading.Thread] = None
        self.start_lock = threading.Lock()
        self.start_error: Optional[tuple] = None  # (message, exception) of the start thread
        #: the process whose workers these are: a child made by os.fork() only closes its copies of the fds
        self.owner_pid = os.getpid()

    def wake(self) -> None:
        with self.wake_lock:
            if self.wake_w < 0:
                return
            try:
                os.write(self.wake_w, b"x")
            except (BlockingIOError, OSError):
                pass

    def collect_releases(self) -> Dict[int, List[int]]:
        """Segment releases queued since the last call, by worker index."""
        by_worker: Dict[int, List[int]] = {}
        while self.releases:
            try:
                key, sid = self.releases.popleft()
            except IndexError:
                break
            by_worker.setdefault(key, []).append(sid)
        return by_worker

    def send_to(self, w: "WorkerHandle", msg: tuple) -> None:
        """Send one worker ``msg``; a failure is left to the consumer, which sees the worker die."""
        try:
            with self.send_lock:
                w.conn.send(msg)
        except (OSError, ValueError):
            pass

    def send_all(self, msg: tuple) -> None:
        """Send ``msg`` to every live worker (see :meth:`send_each`)."""
        self.send_each({w.index: msg for w in self.workers})

    def send_each(self, messages: Dict[int, tuple]) -> None:
        """Send each live worker its message (by worker index); skipped if the lock stays busy (stop()
        re-entered from a ``__del__`` during a send of this same thread would otherwise deadlock; the flag
        and the wake-up pipe already do the job, and ``join`` terminates workers that did not hear)."""
        if not messages or not self.send_lock.acquire(timeout=0.5):
            return
        try:
            for w in self.workers:
                if w.index in messages and not w.dead:
                    try:
                        w.conn.send(messages[w.index])
                    except (OSError, ValueError):
                        pass
        finally:
            self.send_lock.release()


def start_workers(state: PoolState, ctx: Any, factory_bytes: bytes, options: dict) -> None:
    """Start the pool's worker processes one by one, each handed its share of cached segments, and add
    them to ``state.workers`` (and wake the consumer). Holds no reference to the pool: it may run in the
    pool's start thread. Stops, ending the process it just started, once the pool is closed."""
    for i in range(options["count"]):
        if state.closed:  # join() came first: start nothing more
            return
        w = _start_process(state, ctx, i, factory_bytes, options)
        if options["transport"] == TRANSPORT_SHM:  # free segments of earlier pools: no fresh pages to fault in
            # an even share each: the first worker took the 5 largest, and a second one then made fresh
            # segments every pass while others stayed cached (see segment_cache.take_share)
            w.reader.give(lambda msg, w=w: state.send_to(w, msg), SEGMENT_CACHE.take_share(options["count"] - i))
        with state.start_lock:
            if not state.closed:
                state.workers.append(w)
                w = None
        if w is not None:  # the pool was closed meanwhile: nobody else will end this one
            w.process.terminate()
            w.process.join(1.0)
            w.reader.close()
            for closeable in (w.conn, w.sock):
                if closeable is not None:
                    closeable.close()
            _release_process(w.process)
            return
        state.wake()


def _handle_for(i: int, proc: Any, conn: Any, state: PoolState, options: dict) -> WorkerHandle:
    sock = socket.socket(fileno=os.dup(conn.fileno())) if options["transport"] == TRANSPORT_SHM else None
    return WorkerHandle(i, proc, conn, sock, ShmReader(sock, i, state.releases))


def _start_process(state: PoolState, ctx: Any, i: int, factory_bytes: bytes, options: dict) -> WorkerHandle:
    parent_conn, child_conn = ctx.Pipe(duplex=True)
    proc = ctx.Process(target=worker_main, name=f"petastorm-worker-{i}", daemon=True,
                       args=(i, child_conn, factory_bytes, os.getpid(), options["transport"],
                             options["segments_kept"]))
    try:
        with main_module_not_reimported(), _children_allowed():
            proc.start()
    except BaseException:
        parent_conn.close()
        raise
    finally:
        child_conn.close()
    if options["start_method"] == "forkserver":
        fork_server_forked()
    return _handle_for(i, proc, parent_conn, state, options)


_DAEMON_FLAG_LOCK = threading.Lock()


@contextlib.contextmanager
def _children_allowed() -> Iterator[None]:
    """Let this process start pool workers even when it is itself a daemonic ``multiprocessing`` process:
    a ``torch.utils.data.DataLoader`` worker (``num_workers > 0``) whose dataset opens a process-pool reader.

    ``multiprocessing`` refuses children to daemonic processes ("daemonic processes are not allowed to have
    children") because their exit terminates them without joining, and the children would be orphaned; 0.12.1
    (recorded) read correct rows there (it started its workers with ``subprocess``). The pool does not rely
    on the parent's exit to end its workers: ``stop(); join()`` and the pool's finalizer end them, and a
    worker whose parent died ends when its connection closes (or at its next poll of the parent's pid). So
    the flag is lifted for the ``start()`` call only, under a lock, and restored.
    """
    config = getattr(mp.current_process(), "_config", None)
    if not isinstance(config, dict) or not config.get("daemon"):
        yield
        return
    with _DAEMON_FLAG_LOCK:
        config["daemon"] = False
        try:
            yield
        finally:
            config["daemon"] = True


def start_workers_reporting(state: PoolState, ctx: Any, factory_bytes: bytes, options: dict) -> None:
    """:func:`start_workers` in the pool's start thread: an error is kept for ``imap`` to raise."""
    try:
        start_workers(state, ctx, factory_bytes, options)
    except BaseException as exc:  # noqa: BLE001 - raised by the consumer's next step
        state.start_error = (f"could not start worker process {len(state.workers)} with the "
                             f"{options['start_method']!r} start method: {type(exc).__name__}: {exc}", exc)
    finally:
        state.wake()


def shutdown(state: PoolState) -> None:
    """Ask workers to stop, wait up to ``state.join_timeout``, then terminate and kill; close fds.

    A ``KeyboardInterrupt`` (Ctrl-C while ``join()`` waits for a worker stuck in user code) cuts the polite
    part short, never the end: the workers are terminated and the descriptors closed before it propagates
    (the pool counts as closed from the start, so no later ``join()`` would do it)."""
    if os.getpid() != state.owner_pid:
        _forget_in_child(state)
        return
    with state.start_lock:
        if state.closed:
            return
        state.closed = True
    try:
        _ask_and_wait(state)
    finally:
        _end_workers(state)


def _forget_in_child(state: PoolState) -> None:
    """:func:`shutdown` in a child made by ``os.fork()`` (the finalizer at its exit, or ``stop(); join()`` of an
    inherited reader): the workers are the parent's, still serving it. Sending them 'stop' or 'cancel' would
    end the parent's pass, and the locks copied by the fork may be held forever (a fork while the start-up
    lane's thread held ``wake_lock``: the child's exit hung). Only this process's copies of the descriptors
    are closed; nothing is sent, waited for, or terminated."""
    if state.closed:
        return
    state.closed = True
    for w in state.workers:
        _close_ends(w)
    for fd in (state.wake_r, state.wake_w):
        try:
            if fd >= 0:
                os.close(fd)
        except OSError:
            pass
    state.wake_w = -1


def _ask_and_wait(state: PoolState) -> None:
    """The polite part of :func:`shutdown`: 'stop' to every worker, their bequests, their exit (bounded)."""
    deadline = time.monotonic() + state.join_timeout  # one bound for the threads and the processes
    state.wake()
    if state.lane is not None:
        state.lane.close()
    # segments the consumer let go of are free again: the workers may bequeath them. (No worker joins the
    # list once closed: the start thread ends the one it may be starting.)
    state.send_each({key: ("release", sids) for key, sids in state.collect_releases().items()})
    state.send_all(("stop",))
    me = threading.current_thread()
    if state.starter is not None and state.starter is not me:
        state.starter.join(max(0.0, deadline - time.monotonic()))
    if state.lane is not None and not state.lane.join(max(0.01, deadline - time.monotonic())):
        warnings.warn(f"the process pool's start-up lane did not end its item within {state.join_timeout} s of "
                      f"stop(): it is a daemon thread and will not block exit", RuntimeWarning, stacklevel=2)
    _collect_bequests(state, deadline)
    for w in state.workers:  # unmapped now (except what the segment cache keeps), while the workers exit
        w.reader.close()
    for w in state.workers:
        w.process.join(max(0.0, deadline - time.monotonic()))


def _end_workers(state: PoolState) -> None:
    """The part of :func:`shutdown` that always runs: terminate/kill what still runs, close every fd."""
    workers = state.workers
    for w in workers:
        if w.process.is_alive():
            w.process.terminate()
            w.process.join(1.0)
        if w.process.is_alive():
            w.process.kill()
            w.process.join(1.0)
    for w in workers:
        _close_ends(w)
        _release_process(w.process)
    with state.wake_lock:
        for fd in (state.wake_r, state.wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
        state.wake_w = -1


def _release_process(process: Any) -> None:
    """Release an ended worker's ``Process``: its start method's pipes (the sentinel; with 'forkserver' also
    the write end to the server) stay open otherwise as long as the pool object lives (a reader kept after
    ``stop(); join()``), two descriptors per worker."""
    popen = getattr(process, "_popen", None)  # (Process.close() would also make is_alive()/exitcode raise)
    try:
        if popen is not None and process.exitcode is not None:  # reaped: its exit code is kept, not re-read
            popen.close()
    except (ValueError, OSError):  # already closed
        pass


def _collect_bequests(state: PoolState, deadline: float) -> None:
    """Read what each stopping worker still sends, up to its ``('bequest', ...)`` (the fds of its
    segments, kept in the segment cache for the next pool once no result uses them) or the end of its
    connection."""
    # a finalizer may run inside the consumer's own _drain (gc): then the lock is busy and bequests are let go
    if not state.recv_lock.acquire(timeout=0.5):
        return
    try:
        for w in state.workers:
            if w.dead:
                continue
            try:
                while True:
                    if not w.conn.poll(max(0.0, deadline - time.monotonic())):
                        break
                    msg = w.conn.recv()
                    if msg[0] == "bequest":
                        if w.sock is not None:
                            w.reader.take_bequest(msg[1])
                        break
                    elif msg[0] == "seg" and w.sock is not None:  # its fd follows in the stream: take it
                        w.reader.add_segment(msg[1], msg[2])
            except (EOFError, OSError, ValueError):
                continue
    finally:
        state.recv_lock.release()


def _close_ends(w: WorkerHandle) -> None:
    """Close this process's ends of worker ``w``: its result reader, connection and socket."""
    w.reader.close()
    for closeable in (w.conn, w.sock):
        try:
            if closeable is not None:
                closeable.close()
        except OSError:
            pass


def describe_exit(exitcode: Optional[int]) -> str:
    """A worker's end in words: the signal that killed it, its exit code, or a closed connection (None)."""
    if exitcode is None:
        return "its connection closed"
    if exitcode < 0:
        try:
            return f"killed by signal {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"
