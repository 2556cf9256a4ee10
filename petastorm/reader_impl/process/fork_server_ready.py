"""Imported by the fork server only, last in its preload list: it takes Ctrl-C back once the server is ready.

A terminal's Ctrl-C goes to every process of the foreground process group, the fork server included. The
server ignores SIGINT only once its preload imports are done (``multiprocessing.forkserver.main``); a Ctrl-C
in its first ~0.3 s (interpreter start, numpy, pyarrow, cv2) killed it with a second traceback on the user's
terminal ("Fatal Python error: init_import_site", ``KeyboardInterrupt``). So
:func:`~petastorm.reader_impl.process.fork_server.warm_up` starts the server with SIGINT blocked (a blocked
signal stays blocked through ``exec``, as ``multiprocessing.resource_tracker`` starts its own process), and
this module, imported last, drops a Ctrl-C that came meanwhile (setting ``SIG_IGN`` discards a pending
signal), unblocks SIGINT and puts the handler back, so that the server's ``main`` saves it as before and the
processes it forks for other pools (the user's own ``'forkserver'`` pools) get it back.

Never import it anywhere else (it would drop a pending Ctrl-C of the importing process).
"""
from __future__ import annotations

import signal

__all__ = ["take_sigint_back"]


def take_sigint_back() -> None:
    """Drop a pending SIGINT, unblock SIGINT, and put its handler back (nothing where signal masks do not exist)."""
    if not hasattr(signal, "pthread_sigmask"):  # pragma: no cover - not POSIX: no fork server either
        return
    handler = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    signal.signal(signal.SIGINT, handler if handler is not None else signal.SIG_DFL)


take_sigint_back()
