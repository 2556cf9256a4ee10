"""Worker processes for the pool stage; results come back through shared memory, zero copy.

Parent and each worker talk over one duplex unix-socket connection (``multiprocessing.Pipe``):

- parent -> worker: ``('gift', [(id, size), ...])`` + fds (free segments of an earlier pool, see
  :class:`~petastorm.reader_impl.segment_cache.SegmentCache`), ``('task', gen, seq, item, [segment ids
  released] or None)``, ``('release', [segment ids])``, ``('cancel', gen)``, ``('stop',)``;
- worker -> parent: ``('ready', pid)``, ``('start_error', exc)``, ``('seg', id, size)`` + an fd,
  ``('drop', id)``, ``('result', gen, seq, payload)``, ``('error', gen, seq, exc)``, and on 'stop'
  ``('bequest', [(id, size), ...])`` + the fds of its segments.

The parent runs no background thread: the consumer's ``imap`` step sends tasks, reads messages and
waits on the connections, the processes' sentinels (a dead worker is seen at once) and a wake-up pipe
(``stop()`` from another thread). Each worker gets up to ``ceil(max_in_flight / workers_count)`` items
queued, so workers keep working while the consumer is busy, within the in-flight bound.

Start method: ``forkserver`` where available (the server preloads numpy, pyarrow and what the first
pool's worker factory needs, see :mod:`petastorm.reader_impl.preload`, so each later pool starts in tens
of milliseconds), else ``spawn``; override with ``PETASTORM_MP_START=fork|forkserver|
spawn``. Note that ``spawn`` and ``forkserver`` also start multiprocessing's own helper processes (the
resource tracker, the fork server), which live as long as the parent interpreter, as they always do.
"""
from __future__ import annotations

import math
import multiprocessing as mp
import os
import signal
import socket
import threading
import time
import weakref
from collections import deque
from multiprocessing.connection import wait as mp_wait
from typing import Any, Dict, List, Optional

import cloudpickle

from petastorm.errors import PetastormArgumentError, PetastormWorkerError
from petastorm.reader_impl.pool import (
    JOIN_TIMEOUT_S,
    Pool,
    WorkerFactory,
    _Failure,
    rebuild_exception,
)
from petastorm.reader_impl.preload import (  # noqa: F401
    FORKSERVER_PRELOAD,
    LAZY_WORKER_IMPORTS,
    START_METHOD_ENV,
    _main_module_not_reimported,
    default_start_method,
    helper_process_pids,
    modules_for_factory,
    warm_up,
)
from petastorm.reader_impl.process_worker import worker_batch_allocator, worker_main
from petastorm.reader_impl.shm_transport import (
    SEGMENT_CACHE,
    TRANSPORT_SHM,
    ShmReader,
    default_transport,
)
from petastorm.reader_impl.work_item import WorkItem

__all__ = ["ProcessPool", "default_start_method", "warm_up", "modules_for_factory", "worker_batch_allocator",
           "helper_process_pids",
           "FORKSERVER_PRELOAD", "LAZY_WORKER_IMPORTS", "START_METHOD_ENV"]

_GC_JOIN_TIMEOUT_S = 1.0
#: Items queued at each worker (the one it runs included); the others are dispatched as workers free up.
_WORKER_QUEUE_DEPTH = 3




# ---- parent side -----------------------------------------------------------------------------------

class _Worker:
    __slots__ = ("index", "process", "conn", "sock", "reader", "outstanding", "ready", "dead")

    def __init__(self, index: int, process: Any, conn: Any, sock: Any, reader: ShmReader):
        self.index = index
        self.process = process
        self.conn = conn
        self.sock = sock
        self.reader = reader
        self.outstanding: Dict[tuple, None] = {}
        self.ready = False
        self.dead = False


class _State:
    """Everything the shutdown needs; shared by the pool and its finalizer (which must not hold the pool)."""

    def __init__(self) -> None:
        self.workers: List[_Worker] = []
        self.releases: deque = deque()
        self.send_lock = threading.Lock()
        # one reader of the worker connections at a time: the consumer's imap, or a shutdown (join() from
        # another thread) collecting bequests (a message and the fds that follow it must not be split)
        self.recv_lock = threading.Lock()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)
        self.closed = False
        self.join_timeout = _GC_JOIN_TIMEOUT_S

    def wake(self) -> None:
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


def _shutdown(state: _State) -> None:
    """Ask workers to stop, wait up to ``state.join_timeout``, then terminate and kill; close fds."""
    if state.closed:
        return
    state.closed = True
    state.wake()
    # segments the consumer let go of are free again: the workers may bequeath them
    state.send_each({key: ("release", sids) for key, sids in state.collect_releases().items()})
    state.send_all(("stop",))
    deadline = time.monotonic() + state.join_timeout
    _collect_bequests(state, deadline)
    for w in state.workers:  # unmapped now (except what the segment cache keeps), while the workers exit
        w.reader.close()
    for w in state.workers:
        w.process.join(max(0.0, deadline - time.monotonic()))
    for w in state.workers:
        if w.process.is_alive():
            w.process.terminate()
            w.process.join(1.0)
        if w.process.is_alive():
            w.process.kill()
            w.process.join(1.0)
    for w in state.workers:
        for closeable in (w.conn, w.sock):
            try:
                if closeable is not None:
                    closeable.close()
            except OSError:
                pass
    for fd in (state.wake_r, state.wake_w):
        try:
            os.close(fd)
        except OSError:
            pass


def _collect_bequests(state: _State, deadline: float) -> None:
    """Read what each stopping worker still sends, up to its ``('bequest', ...)`` (the fds of its
    segments, kept in the segment cache for the next pool once no result uses them) or the end of its
    connection."""
    # a finalizer may run inside the consumer's own _drain (gc): then the lock is busy and bequests are let go
    if not state.recv_lock.acquire(timeout=0.5):
        return
    try:
        for w in state.workers:
            if w.sock is None or w.dead:
                continue
            try:
                while True:
                    if not w.conn.poll(max(0.0, deadline - time.monotonic())):
                        break
                    msg = w.conn.recv()
                    if msg[0] == "bequest":
                        w.reader.take_bequest(msg[1])
                        break
                    if msg[0] == "seg":  # its fd follows in the stream: take it (and let it go)
                        w.reader.add_segment(msg[1], msg[2])
            except (EOFError, OSError, ValueError):
                continue
    finally:
        state.recv_lock.release()


def _describe_exit(exitcode: Optional[int]) -> str:
    if exitcode is None:
        return "its connection closed"
    if exitcode < 0:
        try:
            return f"killed by signal {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"


class ProcessPool(Pool):
    """Worker processes; ``worker_factory`` is shipped with cloudpickle and called once in each.

    Parameters
    ----------
    workers_count : int
    results_queue_size : int
    start_method : str, optional
        'forkserver', 'spawn' or 'fork'; default :func:`default_start_method`.
    transport : {'shm', 'pipe'}, optional
        How results come back; default :func:`~petastorm.reader_impl.shm_transport.default_transport`.
    """

    pool_type = "process"
    _SPARE_PER_WORKER = 1

    def __init__(self, workers_count: int, results_queue_size: int = 50, start_method: Optional[str] = None,
                 transport: Optional[str] = None):
        super().__init__(workers_count, results_queue_size)
        self.start_method = start_method or default_start_method()
        if self.start_method not in mp.get_all_start_methods():
            raise PetastormArgumentError(f"start_method={self.start_method!r} is not available here: "
                                         f"use one of {mp.get_all_start_methods()}")
        self.transport = transport or default_transport()
        self._state = _State()
        self._finalizer = weakref.finalize(self, _shutdown, self._state)
        # items sent to a worker ahead of its results: one running, the next ones queued in its pipe. The
        # rest wait here and go to whichever worker frees up first (a deep per-worker queue fixed the
        # split up front: the worker that shared its core with the consumer finished last, the other idle)
        self._depth = max(1, min(_WORKER_QUEUE_DEPTH, math.ceil(self.max_in_flight / workers_count)))
        self._segments_kept = max(2, math.ceil(self.max_in_flight / workers_count)) + 2
        self._pending: deque = deque()
        self._t_start = 0.0
        self._startup_s: Optional[float] = None
        self._broken: Optional[str] = None

    def start(self, worker_factory: WorkerFactory) -> None:
        """Start the worker processes (does not wait for them: a factory error surfaces in ``imap``)."""
        self._check_start(worker_factory)
        try:
            factory_bytes = cloudpickle.dumps(worker_factory)
        except Exception as exc:
            raise PetastormArgumentError(
                f"worker_factory {worker_factory!r} cannot be sent to worker processes with cloudpickle: "
                f"{exc}") from exc
        ctx = mp.get_context(self.start_method)
        self._t_start = time.time()
        try:
            # the first pool of the interpreter starts the fork server with what this factory needs
            warm_up(self.start_method, modules_for_factory(factory_bytes))
            with _main_module_not_reimported():
                self._start_processes(ctx, factory_bytes)
        except Exception as exc:
            self._stopped = True
            self._finalizer()
            raise PetastormWorkerError(f"could not start worker process {len(self._state.workers)} "
                                       f"with the {self.start_method!r} start method: {exc}") from exc

    def _start_processes(self, ctx: Any, factory_bytes: bytes) -> None:
        for i in range(self.workers_count):
            parent_conn, child_conn = ctx.Pipe(duplex=True)
            proc = ctx.Process(target=worker_main, name=f"petastorm-worker-{i}", daemon=True,
                               args=(i, child_conn, factory_bytes, os.getpid(), self.transport,
                                     self._segments_kept))
            try:
                proc.start()
            finally:
                child_conn.close()
            sock = socket.socket(fileno=os.dup(parent_conn.fileno())) if self.transport == TRANSPORT_SHM else None
            self._state.workers.append(_Worker(i, proc, parent_conn, sock, ShmReader(sock, i, self._state.releases)))
        if self.transport == TRANSPORT_SHM:  # free segments of earlier pools: no fresh pages to fault in
            cached = SEGMENT_CACHE.take((self._depth + 2) * self.workers_count)  # what the queues use
            shares = [cached[w.index::self.workers_count] for w in self._state.workers]
            handed = 0
            try:
                for w, mine in zip(self._state.workers, shares):
                    handed += 1  # give() closes its share's fds whatever happens
                    w.reader.give(lambda msg, w=w: self._send(w, msg), mine)
            finally:
                for mine in shares[handed:]:  # a worker died first: the shares not handed out are closed
                    for fd, _size, _mapping in mine:
                        os.close(fd)

    # ---- sending ----------------------------------------------------------------------------------
    def _send(self, w: _Worker, msg: tuple) -> None:
        try:
            with self._state.send_lock:
                w.conn.send(msg)
        except (OSError, ValueError) as exc:
            self._on_death(w, f"sending to it failed ({exc})")

    def _submit(self, gen: int, seq: int, item: WorkItem) -> None:
        self._pending.append((gen, seq, item))
        self._dispatch()

    def _dispatch(self) -> None:
        """Send pending items to the least busy workers; segment releases ride along with the tasks
        (one write, one wake-up per item), the rest go out as ``release`` messages."""
        releases = self._state.collect_releases()
        live = [w for w in self._state.workers if not w.dead]
        while self._pending and live:
            w = min(live, key=lambda x: len(x.outstanding))
            if len(w.outstanding) >= self._depth:
                break
            try:
                gen, seq, item = self._pending.popleft()
            except IndexError:  # stop() from another thread emptied it
                break
            w.outstanding[(gen, seq)] = None
            self._send(w, ("task", gen, seq, item, releases.pop(w.index, None)))
        for key, sids in releases.items():
            w = self._state.workers[key]
            if not w.dead:
                self._send(w, ("release", sids))

    # ---- receiving --------------------------------------------------------------------------------
    def _pump(self, gen: int, results: Dict[int, Any]) -> None:
        """Without blocking: take in the results already there and refill the workers' queues (called by
        ``imap`` on every step, so workers are fed while the consumer works through buffered results)."""
        if self._stopped or self._state.closed or self._broken:
            return
        for w in self._state.workers:
            if not w.dead and w.outstanding:
                self._drain(w, gen, results)
        self._dispatch()

    def _wait(self, gen: int, results: Dict[int, Any]) -> bool:
        state = self._state
        while True:
            if self._stopped or state.closed:
                return False
            if self._broken:
                raise PetastormWorkerError(self._broken)
            self._dispatch()
            live = [w for w in state.workers if not w.dead]
            handles: List[Any] = [state.wake_r]
            for w in live:
                handles += [w.conn, w.process.sentinel]
            ready = mp_wait(handles, timeout=1.0)
            if state.wake_r in ready:
                try:
                    os.read(state.wake_r, 4096)
                except OSError:
                    pass
                continue
            got = False
            for w in live:
                if w.conn in ready:
                    got |= self._drain(w, gen, results)
            for w in live:
                if w.process.sentinel in ready or (not ready and not w.process.is_alive()):
                    got |= self._drain(w, gen, results)
                    self._on_death(w, None)
            if got:
                return True

    def _drain(self, w: _Worker, gen: int, results: Dict[int, Any]) -> bool:
        got = False
        lock = self._state.recv_lock
        try:
            with lock:
                if self._state.closed:  # a shutdown (join() from another thread) owns the connections now
                    return False
                while not w.dead and w.conn.poll(0):
                    got |= self._handle(w, w.conn.recv(), gen, results)
        except (EOFError, OSError):
            if not (self._stopped or self._state.closed):
                self._on_death(w, None)
        return got

    def _handle(self, w: _Worker, msg: tuple, gen: int, results: Dict[int, Any]) -> bool:
        kind = msg[0]
        if kind == "result" or kind == "error":
            rgen, seq, payload = msg[1], msg[2], msg[3]
            w.outstanding.pop((rgen, seq), None)
            if rgen != gen:
                if kind == "result":
                    w.reader.discard(payload)
                return False
            self._stats["items_completed"] += 1
            if kind == "result":
                try:
                    results[seq] = w.reader.decode(payload)
                except Exception as exc:  # noqa: BLE001 - a result class the parent cannot import
                    results[seq] = _Failure(PetastormWorkerError(
                        f"the result of the item at position {seq} could not be rebuilt in the parent: "
                        f"{type(exc).__name__}: {exc}"))
            else:
                results[seq] = _Failure(rebuild_exception(payload))
            return True
        if kind == "seg":
            w.reader.add_segment(msg[1], msg[2])
        elif kind == "bequest":  # a stopping worker's segments (its fds follow in the stream)
            w.reader.take_bequest(msg[1])
        elif kind == "drop":
            w.reader.drop_segment(msg[1])
        elif kind == "ready":
            w.ready = msg[2]
            if self._startup_s is None and all(x.ready for x in self._state.workers):
                self._startup_s = max(x.ready for x in self._state.workers) - self._t_start
        elif kind == "start_error":
            self._broken = f"worker process {w.index} failed to start: {msg[1][0]}: {msg[1][1]}"
            raise rebuild_exception(msg[1])
        return False

    def _on_death(self, w: _Worker, reason: Optional[str]) -> None:
        if self._stopped or self._state.closed:
            return
        if self._broken:
            raise PetastormWorkerError(self._broken)
        w.process.join(0.5)
        w.dead = True
        try:  # a worker that failed to start said why before it exited: that is the error to raise
            while w.conn.poll(0):
                msg = w.conn.recv()
                if msg[0] == "start_error":
                    self._handle(w, msg, 0, {})
        except (EOFError, OSError):
            pass
        positions = sorted(seq for _gen, seq in w.outstanding)
        how = _describe_exit(w.process.exitcode) if w.process.exitcode is not None else reason
        self._broken = (f"worker process {w.index} (pid {w.process.pid}) died ({how or _describe_exit(None)})"
                        + (f" while running the items at positions {positions[:10]}" if positions else "")
                        + "; the pool cannot go on: stop() it and build a new reader")
        raise PetastormWorkerError(self._broken)

    def _abandon(self, gen: int) -> None:
        self._pending = deque(p for p in self._pending if p[0] != gen)
        for w in self._state.workers:
            for key in [k for k in w.outstanding if k[0] == gen]:
                del w.outstanding[key]
        if not self._state.closed:
            self._state.send_all(("cancel", gen))

    # ---- lifecycle --------------------------------------------------------------------------------
    def stop(self) -> None:
        """Abandon pending items; workers end after their current item; a blocked ``imap`` returns."""
        if self._stopped:
            return
        self._stopped = True
        self._pending.clear()
        if not self._state.closed:
            self._state.wake()
            self._state.send_all(("stop",))

    def join(self) -> None:
        """Stop (if not yet) and wait up to ``JOIN_TIMEOUT_S`` for the processes, then terminate/kill."""
        self.stop()
        self._state.join_timeout = JOIN_TIMEOUT_S
        self._finalizer()

    def imap(self, items):  # noqa: D102 - documented in Pool.imap
        if self._broken:
            raise PetastormWorkerError(self._broken)
        return super().imap(items)

    @property
    def diagnostics(self) -> dict:
        d = super().diagnostics
        workers = self._state.workers
        d.update({
            "start_method": self.start_method,
            "transport": self.transport,
            "workers_alive": sum(1 for w in workers if w.process.is_alive()) if not self._state.closed else 0,
            "startup_s": self._startup_s,
            "worker_pids": [w.process.pid for w in workers],
            "pending_dispatch": len(self._pending),
            "outstanding_per_worker": [len(w.outstanding) for w in workers],
            "bytes_shm": sum(w.reader.bytes_shm for w in workers),
            "bytes_inband": sum(w.reader.bytes_inband for w in workers),
            "segments_received": sum(w.reader.segments_received for w in workers),
        })
        return d
