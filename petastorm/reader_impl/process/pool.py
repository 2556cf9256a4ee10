"""Worker processes for the pool stage; results come back through shared memory, zero copy.

Parent and each worker talk over one duplex unix-socket connection (``multiprocessing.Pipe``):

- parent -> worker: ``('gift', [(id, size), ...])`` + fds (free segments of an earlier pool, see
  :class:`~petastorm.reader_impl.process.segment_cache.SegmentCache`), ``('task', gen, seq, item, [segment ids
  released] or None)``, ``('release', [segment ids])``, ``('cancel', gen)``, ``('stop',)``;
- worker -> parent: ``('ready', pid)``, ``('start_error', exc)``, ``('seg', id, size)`` + an fd,
  ``('drop', id)``, ``('result', gen, seq, payload)``, ``('error', gen, seq, exc)``, and on 'stop'
  ``('bequest', [(id, size), ...])`` + the fds of its segments.

The parent runs no background thread: the consumer's ``imap`` step sends tasks, reads messages and
waits on the connections, the processes' sentinels (a dead worker is seen at once) and a wake-up pipe
(``stop()`` from another thread). Each worker gets up to ``ceil(max_in_flight / workers_count)`` items
queued, so workers keep working while the consumer is busy, within the in-flight bound.

Start method: ``forkserver`` where available (the server preloads numpy, pyarrow and what the first
pool's worker factory needs, see :mod:`petastorm.reader_impl.process.fork_server`, so each later pool starts in tens
of milliseconds), else ``spawn``; override with ``PETASTORM_MP_START=fork|forkserver|
spawn``. Note that ``spawn`` and ``forkserver`` also start multiprocessing's own helper processes (the
resource tracker, the fork server), which live as long as the parent interpreter, as they always do.
"""
from __future__ import annotations

import math
import multiprocessing as mp
import os
import threading
import time
import weakref
from collections import deque
from multiprocessing.connection import wait as mp_wait
from typing import Any, Dict, Iterable, Iterator, List, Optional

import cloudpickle

from petastorm.errors import PetastormArgumentError, PetastormWorkerError
from petastorm.reader_impl.pool import JOIN_TIMEOUT_S, Failure, Pool, WorkerFactory, annotate_worker_exception
from petastorm.reader_impl.process.fork_server import (
    default_start_method,
    fork_server_is_warm,
    modules_for_factory,
    warm_up,
)
from petastorm.reader_impl.process.remote_errors import rebuild_exception
from petastorm.reader_impl.process.run_in_parent import StartupLane, lane_allowed
from petastorm.reader_impl.process.transport import default_transport
from petastorm.reader_impl.process.worker_processes import (
    PoolState,
    WorkerHandle,
    describe_exit,
    shutdown,
    start_workers,
    start_workers_reporting,
)
from petastorm.reader_impl.work_item import WorkItem
from petastorm.settings import settings

__all__ = ["ProcessPool"]

#: Items queued at each worker (the one it runs included); the others are dispatched as workers free up.
_WORKER_QUEUE_DEPTH = 3


class ProcessPool(Pool):
    """Worker processes; ``worker_factory`` is shipped with cloudpickle and called once in each.

    Parameters
    ----------
    workers_count : int
    results_queue_size : int
    start_method : str, optional
        'forkserver', 'spawn' or 'fork'; default :func:`default_start_method`.
    transport : {'shm', 'pipe'}, optional
        How results come back; default :func:`~petastorm.reader_impl.process.transport.default_transport`.
    startup_lane : {False, 'cold', True, 'auto'}
        Start the processes in a thread and run the first items in another thread of this process until a
        worker is up (see :mod:`~petastorm.reader_impl.process.run_in_parent`; only for factories that run no user
        code): True always, ``'cold'`` only while starting a worker is slow (the 'spawn' start method, or the
        running fork server has not forked a worker for this interpreter yet, so it may still be importing
        its modules), ``'auto'`` as ``'cold'`` for a reader's worker factory that runs no user code and
        decodes no image (:func:`~petastorm.reader_impl.process.run_in_parent.lane_allowed`), else never.
        ``$PETASTORM_STARTUP_LANE=0`` turns it off.
    """

    pool_type = "process"
    _SPARE_PER_WORKER = 1

    def __init__(self, workers_count: int, results_queue_size: int = 50, start_method: Optional[str] = None,
                 transport: Optional[str] = None, startup_lane: Any = False):
        super().__init__(workers_count, results_queue_size)
        self.start_method = start_method or default_start_method()
        # not with 'fork': a fork while the lane's thread holds a lock (an allocator's) would copy it held
        if startup_lane not in (False, True, "cold", "auto"):
            raise PetastormArgumentError(f"startup_lane must be False, True, 'cold' or 'auto', got {startup_lane!r}")
        self.startup_lane = startup_lane if self.start_method != "fork" and settings().startup_lane else False
        self.startup_lane_used = False
        self._stats["items_in_parent"] = 0
        if self.start_method not in mp.get_all_start_methods():
            raise PetastormArgumentError(f"start_method={self.start_method!r} is not available here: "
                                         f"use one of {mp.get_all_start_methods()}")
        self.transport = transport or default_transport()
        self._state = PoolState()
        self._finalizer = weakref.finalize(self, shutdown, self._state)
        # items sent to a worker ahead of its results: one running, the next ones queued in its pipe. The
        # rest wait here and go to whichever worker frees up first (a deep per-worker queue fixed the
        # split up front: the worker that shared its core with the consumer finished last, the other idle)
        self._depth = max(1, min(_WORKER_QUEUE_DEPTH, math.ceil(self.max_in_flight / workers_count)))
        self._segments_kept = max(2, math.ceil(self.max_in_flight / workers_count)) + 2
        self._pending: deque = deque()
        self._t_start = 0.0
        self._startup_s: Optional[float] = None
        self._broken: Optional[str] = None

    #: What a reader's worker factory needs in a worker process (unpickling it imports these):
    #: :meth:`start_fork_server` has the fork server import them before the reader knows its schema.
    READER_WORKER_MODULES = ("petastorm.reader_impl.worker", "petastorm.codecs", "petastorm.unischema", "pyarrow._fs")

    @classmethod
    def start_fork_server(cls) -> None:
        """Start the fork server now, without waiting for it (a few ms), if the default start method is
        'forkserver': it imports numpy, pyarrow and what a reader's workers need in the background, while
        the caller does other work (a reader calls this before it discovers the dataset). Nothing to do
        for 'spawn' and 'fork'."""
        warm_up(None, cls.READER_WORKER_MODULES)

    def start(self, worker_factory: WorkerFactory) -> None:
        """Start the worker processes (does not wait for them: a factory error surfaces in ``imap``).

        With the start-up lane, the processes are started by a thread of this process while the lane runs
        the first items; an error starting them surfaces in ``imap`` too.
        """
        self._check_start(worker_factory)
        try:
            factory_bytes = cloudpickle.dumps(worker_factory)
        except Exception as exc:
            raise PetastormArgumentError(
                f"worker_factory {worker_factory!r} cannot be sent to worker processes with cloudpickle: "
                f"{exc}") from exc
        ctx = mp.get_context(self.start_method)
        self._t_start = time.time()
        state = self._state
        try:
            # the first pool of the interpreter starts the fork server with what this factory needs
            warm_up(self.start_method, modules_for_factory(factory_bytes))
            lane = self.startup_lane
            if lane == "auto":
                lane = "cold" if lane_allowed(worker_factory) else False
            self.startup_lane_used = lane is True or (
                lane == "cold" and (self.start_method == "spawn" or not fork_server_is_warm()))
            if self.startup_lane_used:
                state.lane = StartupLane(worker_factory, state.wake)
                starter = threading.Thread(
                    target=start_workers_reporting, name="petastorm-pool-start", daemon=True,
                    args=(state, ctx, factory_bytes, self._start_options()))
                starter.start()
                state.starter = starter  # (only once started: the shutdown joins it)
            else:
                start_workers(state, ctx, factory_bytes, self._start_options())
        except Exception as exc:
            self._stopped = True
            self._finalizer()
            raise PetastormWorkerError(f"could not start worker process {len(state.workers)} "
                                       f"with the {self.start_method!r} start method: {exc}") from exc

    def _start_options(self) -> dict:
        return {"count": self.workers_count, "transport": self.transport, "segments_kept": self._segments_kept,
                "cached_per_worker": self._depth + 2, "start_method": self.start_method}

    # ---- sending ----------------------------------------------------------------------------------
    def _send(self, w: WorkerHandle, msg: tuple) -> None:
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
        lane = self._state.lane
        if lane is not None and lane.idle and self._pending:  # workers still starting: the head runs here
            try:
                head = self._pending.popleft()
            except IndexError:  # stop() from another thread emptied it
                head = None
            if head is not None:
                lane.submit(*head)
                self._stats["items_in_parent"] += 1
        releases = self._state.collect_releases()
        live = [w for w in self._state.workers if not w.dead]
        # while workers are still being started, one item each: the first ones must not queue it all up
        depth = self._depth if len(self._state.workers) == self.workers_count else 1
        while self._pending and live:
            w = min(live, key=lambda x: len(x.outstanding))
            if len(w.outstanding) >= depth:
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
        self._check_started()
        self._drain_lane(gen, results)
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
            self._check_started()
            self._dispatch()
            live = [w for w in state.workers if not w.dead]
            handles: List[Any] = [state.wake_r]
            try:
                for w in live:
                    handles += [w.conn, w.process.sentinel]
                ready = mp_wait(handles, timeout=1.0)
            except (ValueError, OSError):  # join() from another thread closed them meanwhile
                if self._stopped or state.closed:
                    return False
                raise
            woken = state.wake_r in ready
            if woken:  # read the wake-ups before looking at the lane: none said after this is lost
                try:
                    os.read(state.wake_r, 4096)
                except OSError:
                    pass
            got = self._drain_lane(gen, results)
            if woken:  # (also: diagnostics took results in from another thread) the caller looks at results again
                return True
            for w in live:
                if w.conn in ready:
                    got |= self._drain(w, gen, results)
            for w in live:
                if w.process.sentinel in ready or (not ready and not w.process.is_alive()):
                    got |= self._drain(w, gen, results)
                    self._on_death(w, None)
            if got:
                return True

    def _check_started(self) -> None:
        """Raise the start thread's error, if any (the pool is broken then)."""
        if self._state.start_error is not None and not self._broken:
            self._broken, cause = self._state.start_error
            raise PetastormWorkerError(self._broken) from cause

    def _drain_lane(self, gen: int, results: Dict[int, Any]) -> bool:
        """Take in the start-up lane's results; True if one of ``gen`` came."""
        lane = self._state.lane
        got = False
        while lane is not None:
            message = lane.poll()
            if message is None:
                break
            kind, rgen, seq, value, tb = message
            if kind == "dead":  # its worker could not be built: the item it had goes to the processes
                if lane.running is not None and lane.running[0] == self._active_gen:
                    self._pending.appendleft(lane.running)
                    self._stats["items_in_parent"] -= 1
                lane.running = None
                continue
            if rgen != gen:
                continue
            self._stats["items_completed"] += 1
            results[seq] = value if kind == "ok" else Failure(annotate_worker_exception(value, tb, set_cause=False))
            got = True
        return got

    def _drain(self, w: WorkerHandle, gen: int, results: Dict[int, Any]) -> bool:
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

    def _handle(self, w: WorkerHandle, msg: tuple, gen: int, results: Dict[int, Any]) -> bool:
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
                    results[seq] = Failure(PetastormWorkerError(
                        f"the result of the item at position {seq} could not be rebuilt in the parent: "
                        f"{type(exc).__name__}: {exc}"))
            else:
                results[seq] = Failure(rebuild_exception(payload))
            return True
        if kind == "seg":
            w.reader.add_segment(msg[1], msg[2])
        elif kind == "bequest":  # a stopping worker's segments (its fds follow in the stream)
            w.reader.take_bequest(msg[1])
        elif kind == "drop":
            w.reader.drop_segment(msg[1])
        elif kind == "ready":
            w.ready = msg[2]
            if self._state.lane is not None:  # a worker is up: the parent takes no more items
                self._state.lane.close()
            workers = self._state.workers
            if self._startup_s is None and len(workers) == self.workers_count and all(x.ready for x in workers):
                self._startup_s = max(x.ready for x in self._state.workers) - self._t_start
        elif kind == "start_error":
            self._broken = f"worker process {w.index} failed to start: {msg[1][0]}: {msg[1][1]}"
            raise rebuild_exception(msg[1])
        return False

    def _on_death(self, w: WorkerHandle, reason: Optional[str]) -> None:
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
        positions = sorted(seq for _gen, seq in list(w.outstanding))
        how = describe_exit(w.process.exitcode) if w.process.exitcode is not None else reason
        self._broken = (f"worker process {w.index} (pid {w.process.pid}) died ({how or describe_exit(None)})"
                        + (f" while running the items at positions {positions[:10]}" if positions else "")
                        + "; the pool cannot go on: stop() it and build a new reader")
        raise PetastormWorkerError(self._broken)

    def _abandon(self, gen: int) -> None:
        self._pending = deque(p for p in self._pending if p[0] != gen)
        for w in self._state.workers:
            # (a copy first: diagnostics, from another thread, may take results in meanwhile)
            for key in [k for k in list(w.outstanding) if k[0] == gen]:
                w.outstanding.pop(key, None)
        if not self._state.closed:
            self._state.send_all(("cancel", gen))

    # ---- lifecycle --------------------------------------------------------------------------------
    def stop(self) -> None:
        """Abandon pending items; workers end after their current item; a blocked ``imap`` returns."""
        if self._stopped:
            return
        self._stopped = True
        self._pending.clear()
        if os.getpid() != self.owner_pid:  # an inherited pool: the workers are the parent's (see shutdown)
            self._finalizer()
            return
        if self._state.lane is not None:
            self._state.lane.close()
        if not self._state.closed:
            self._state.wake()
            self._state.send_all(("stop",))

    def join(self) -> None:
        """Stop (if not yet) and wait up to ``JOIN_TIMEOUT_S`` for the processes, then terminate/kill."""
        self.stop()
        self._state.join_timeout = JOIN_TIMEOUT_S
        self._finalizer()

    def imap(self, items: Iterable[Any]) -> Iterator[Any]:  # noqa: D102 - documented in Pool.imap
        if self._broken:
            raise PetastormWorkerError(self._broken)
        return super().imap(items)

    def _take_in(self) -> None:
        """Take the results already in the workers' pipes into the running imap's reorder buffer, without
        blocking, unless another thread reads the connections now; so that ``reorder_buffered`` (a reader's
        ``output_queue_size``) counts every finished result the consumer has not taken. A consumer waiting in
        another thread is woken to look at them. Errors are left to the consumer (it sees them on its next step)."""
        live = self._live_results
        state = self._state
        if live is None or self._stopped or state.closed or self._broken or os.getpid() != self.owner_pid:
            return
        workers = state.workers
        if len(workers) < self.workers_count or not all(w.ready for w in workers):
            return  # (a worker's start error is the consumer's to raise, as the worker's own exception)
        gen, results = live
        if gen != self._active_gen:  # a superseded imap's: the running one takes its results in itself
            return
        if not state.recv_lock.acquire(blocking=False):
            return
        took = False
        try:
            for w in workers:
                while not state.closed and not w.dead and w.conn.poll(0):
                    took = True
                    self._handle(w, w.conn.recv(), gen, results)
        except Exception:  # noqa: BLE001 - diagnostics never raise: the consumer meets the same error
            pass
        finally:
            state.recv_lock.release()
        if took:
            self._stats["reorder_buffered"] = len(results)
            state.wake()

    @property
    def diagnostics(self) -> dict:
        self._take_in()
        d = super().diagnostics
        workers = self._state.workers
        d.update({
            "start_method": self.start_method,
            "startup_lane": self.startup_lane_used,
            "transport": self.transport,
            "workers_alive": sum(1 for w in workers if w.process.is_alive()) if not self._state.closed else 0,
            "startup_s": self._startup_s,
            "worker_pids": [w.pid for w in workers],
            "pending_dispatch": len(self._pending),
            "outstanding_per_worker": [len(w.outstanding) for w in workers],
            "bytes_shm": sum(w.reader.bytes_shm for w in workers),
            "bytes_inband": sum(w.reader.bytes_inband for w in workers),
            "segments_received": sum(w.reader.segments_received for w in workers),
        })
        return d
