"""Idle worker processes of stopped process pools, kept a few seconds for the next pool of this process
(opt-in: ``$PETASTORM_POOL_KEEPALIVE_S``).

A program that makes a reader per epoch starts two fresh processes for each: a fork, copy-on-write
faults, mapping the cached shared-memory segments again, and an exit, ~35 ms before its first row and
~0.07 s of CPU per reader on a 2-core machine. With ``$PETASTORM_POOL_KEEPALIVE_S`` > 0, a pool that
stops cleanly *parks* its workers instead:
each bequeaths its segments as on stop, closes its worker, drops every segment, and waits. The next
process pool with the same start method (``forkserver`` or ``spawn``: a worker forked from this process
would be a copy of it as it was at its fork) and transport takes them and sends each the new worker factory
(``('job', factory_bytes, segments_kept)``), which answers ``ready`` or ``start_error`` as a fresh one does.

Off by default (0): the reader's contract is that no worker process outlives ``stop(); join()``, and a
parked one does, by design. A parked worker exits by itself after ``$PETASTORM_POOL_KEEPALIVE_S`` seconds
without a job, when this process exits or closes its connection (:func:`release_parked_workers`), or when
this process dies. Parked workers run no user code and hold no shared memory; they are daemon processes
of this interpreter.
"""
from __future__ import annotations

import atexit
import collections
import os
import threading
import time
from typing import Any, List, Optional, Tuple

__all__ = ["KEEPALIVE_ENV", "keepalive_s", "park", "take", "release_parked_workers", "parked_count"]

KEEPALIVE_ENV = "PETASTORM_POOL_KEEPALIVE_S"
_DEFAULT_KEEPALIVE_S = 0.0
#: A parked worker is not handed out this close to its own deadline (it might exit meanwhile).
_MARGIN_S = 1.0
#: At most this many parked workers (the oldest are released first).
_MAX_PARKED = 32

_lock = threading.Lock()
_parked: List[Tuple[Any, Any, tuple, float]] = []  # (process, conn, key, parked until: time.monotonic())
# park() only appends here (no lock: it runs in pool finalizers, which the garbage collector may start in
# a thread that holds _lock); the others move the entries to _parked under _lock
_incoming: "collections.deque" = collections.deque()


def keepalive_s() -> float:
    """Seconds a stopped pool's workers wait for the next pool (``$PETASTORM_POOL_KEEPALIVE_S``)."""
    try:
        return max(0.0, float(os.environ.get(KEEPALIVE_ENV, _DEFAULT_KEEPALIVE_S)))
    except ValueError:
        return _DEFAULT_KEEPALIVE_S


def park(process: Any, conn: Any, key: tuple, seconds: float) -> None:
    """Keep a worker that answered ``('parked',)`` to a ``('park', seconds)`` message."""
    _incoming.append((process, conn, key, time.monotonic() + seconds))


def _merge_incoming() -> list:
    """Under ``_lock``: move parked entries in, trim to :data:`_MAX_PARKED`; returns the entries to let go."""
    while _incoming:
        try:
            _parked.append(_incoming.popleft())
        except IndexError:
            break
    excess = _parked[:-_MAX_PARKED] if len(_parked) > _MAX_PARKED else []
    del _parked[:len(excess)]
    return excess


def take(key: tuple) -> Optional[Tuple[Any, Any]]:
    """A live parked worker ``(process, connection)`` of this ``key`` (start method, transport), the most
    recently parked first, or None. Expired ones are let go on the way."""
    now = time.monotonic()
    found = None
    with _lock:
        expired = _merge_incoming()
        for i in range(len(_parked) - 1, -1, -1):
            process, conn, k, until = _parked[i]
            if until - _MARGIN_S <= now or not process.is_alive():
                expired.append(_parked.pop(i))
            elif found is None and k == key:
                found = _parked.pop(i)[:2]
    for process, conn, _key, _until in expired:
        _let_go(process, conn)
    return found


def parked_count() -> int:
    """How many workers are parked now."""
    with _lock:
        excess = _merge_incoming()
        count = len(_parked)
    for process, conn, _key, _until in excess:
        _let_go(process, conn)
    return count


def release_parked_workers(timeout: float = 1.0) -> None:
    """Let every parked worker go now (each exits when its connection closes) and wait up to ``timeout``
    seconds for them to exit."""
    with _lock:
        items = _merge_incoming() + list(_parked)
        _parked.clear()
    for process, conn, _key, _until in items:
        _let_go(process, conn)
    deadline = time.monotonic() + timeout
    for process, _conn, _key, _until in items:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.terminate()
            process.join(0.5)


def _let_go(process: Any, conn: Any) -> None:
    try:
        conn.send(("stop",))
    except (OSError, ValueError):
        pass
    try:
        conn.close()
    except OSError:
        pass
    process.join(0)  # reaps it if it has already exited


def _forget_after_fork() -> None:
    """In a forked child: the parent's parked workers are not ours to use or stop."""
    global _lock
    _lock = threading.Lock()
    _parked.clear()
    _incoming.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)
atexit.register(release_parked_workers, 0.5)
