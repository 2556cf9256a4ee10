"""Which modules the fork server should import before forking pool workers, read from the worker factory.

The fork server (multiprocessing's 'forkserver' start method) is started once per interpreter, by the
first process pool, and imports its preload list before it forks the first worker: each module in the
list delays the first reader's first row, each module missing from it is imported again by every worker
of every pool. :func:`modules_for_factory` names what unpickling the factory imports (read from the
pickle's global references, without unpickling it) plus what its worker imports lazily on its first item
(:data:`LAZY_WORKER_IMPORTS`), so that a reader of ``(64, 64)`` arrays does not wait for OpenCV.

But ``make_reader`` starts the fork server before it has read the schema (its imports then overlap the
reader's own), so that scan came too late and every worker of an image reader imported OpenCV itself,
per reader. :data:`FORKSERVER_PRELOAD` therefore names ``cv2`` (last: a first row is served by the start-up
lane meanwhile) and the modules a worker imports on its first item. Cost: the fork server imports cv2 once
(in the background; its memory is mostly shared library pages); forking and ending a worker cost the same
(figures in ``benchmarks/README.md``, "Design measurements quoted by the code").
"""
from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import sys
import threading
from typing import Any, Dict, Iterator, List, Optional, Sequence

from petastorm.main_module import main_module_not_reimported  # noqa: F401 - its home before; re-exported
from petastorm.settings import settings

__all__ = ["modules_for_factory", "LAZY_WORKER_IMPORTS", "PRELOAD_PACKAGES", "FORKSERVER_PRELOAD",
           "default_start_method", "warm_up", "helper_process_pids"]

#: Modules a worker imports lazily, at its first item, when the factory's pickle names the key: the first pool
#: adds them to the fork server's preload (decoding an image imports ``cv2``: 0.03-0.25 s in every worker).
LAZY_WORKER_IMPORTS = {"CompressedImageCodec": ["cv2", "petastorm.image_io"]}
_SCAN_LIMIT = 1 << 20
#: Only modules of these packages are preloaded: the fork server imports its list before it forks, and a
#: user module that starts a thread on import would make every fork unsafe (or, raising anything but
#: ImportError, stop the fork server). Other modules are imported by each worker, as before.
PRELOAD_PACKAGES = frozenset({"numpy", "pyarrow", "petastorm", "pyspark", "cv2", "cloudpickle", "pandas",
                              "decimal", "datetime", "collections"})


def modules_for_factory(factory_bytes: bytes) -> List[str]:
    """Modules that unpickling ``factory_bytes`` (a pickle) imports, plus those its worker imports lazily.

    Only modules already imported here and in :data:`PRELOAD_PACKAGES` are named; ``__main__``, user
    modules and what is pickled by value are left out. The scan reads the pickle's global references (no
    unpickling) and gives up on pickles over 1 MiB (a large closure: nothing preloaded beyond the default).
    """
    if len(factory_bytes) > _SCAN_LIMIT:
        return []
    import pickletools

    globals_of: List[str] = []  # modules named by GLOBAL / STACK_GLOBAL
    literals: set = set()  # every string in the pickle (class names among them)
    strings: List[Optional[str]] = []  # the value each pushing opcode left on the stack, None if not a str
    memo: Dict[int, Any] = {}
    try:
        for op, arg, _pos in pickletools.genops(factory_bytes):
            name = op.name
            if name == "MEMOIZE":
                memo[len(memo)] = strings[-1] if strings else None
            elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
                memo[arg] = strings[-1] if strings else None
            elif name in ("GET", "BINGET", "LONG_BINGET"):
                strings.append(memo.get(arg))
            elif name in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE"):
                strings.append(arg)
                literals.add(arg)
            else:
                if name == "STACK_GLOBAL" and len(strings) >= 2 and isinstance(strings[-2], str):
                    globals_of.append(strings[-2])
                elif name == "GLOBAL":
                    globals_of.append(str(arg).split(" ")[0])
                strings.append(None)
    except Exception:  # noqa: BLE001 - not a pickle we can read: preload the defaults only
        return []
    modules = [m for m in globals_of if m in sys.modules and m.split(".")[0] in PRELOAD_PACKAGES]
    for key, mods in LAZY_WORKER_IMPORTS.items():
        if key in literals:
            modules += [m for m in mods if m in sys.modules or _importable(m)]
    return list(dict.fromkeys(modules))


def _importable(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


# --- the fork server ----------------------------------------------------------------------------------

#: Modules the fork server imports once, so that forked workers start with them loaded, on top of
#: :func:`~petastorm.reader_impl.process.fork_server.modules_for_factory` of the first pool's factory. Extend it
#: before the first process pool starts (the fork server is started once per interpreter).
#: ``cv2`` and the modules a worker imports on its first item (``parquet_io``, ``value_types``,
#: ``image_io``) are named here, not only in :data:`LAZY_WORKER_IMPORTS`: ``make_reader`` starts the fork
#: server before it knows the schema, so the lazy list never reached it, and every worker of every pool
#: imported cv2 itself: naming them here nearly halved the CPU of a process-pool reader's first row (figures
#: in ``benchmarks/README.md``). The fork server pays the cv2 import once (in the background; the start-up
#: lane serves a fresh interpreter's first rows meanwhile).
#: Names that fail to import are skipped by the fork server. The reader's worker module is named so that
#: unpickling the worker factory in a fresh worker finds it loaded (a name, not an import: no cycle).
#: :mod:`~petastorm.reader_impl.process.fork_server_setup` comes first: it imports numpy with the workers' BLAS
#: threads, then warms Arrow up.
FORKSERVER_PRELOAD = ["petastorm.reader_impl.process.fork_server_setup", "numpy", "pyarrow", "pyarrow.parquet",
                      "cloudpickle", "petastorm.reader_impl.work_item", "petastorm.reader_impl.process.pool",
                      "petastorm.reader_impl.process.worker_main", "petastorm.reader_impl.worker", "petastorm.codecs",
                      "petastorm.unischema", "petastorm.arrow_types", "petastorm.reader_impl.fixed_binary", "cramjam",
                      "petastorm.reader_impl.parquet_io", "petastorm.value_types", "petastorm.image_io", "cv2"]


def default_start_method() -> str:
    """``$PETASTORM_MP_START`` if set (see :mod:`petastorm.settings`), else ``'forkserver'`` where
    available, else ``'spawn'``."""
    forced = settings().mp_start
    if forced:
        return forced
    return "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"


def warm_up(start_method: Optional[str] = None, extra_modules: Sequence[str] = ()) -> None:
    """Start the fork server now, without waiting for it (a few ms): it imports :data:`FORKSERVER_PRELOAD`
    and ``extra_modules`` in the background while the caller does other work.

    The fork server starts once per interpreter: modules named after that are not preloaded (workers
    import them themselves). :meth:`ProcessPool.start` calls it with the modules its worker factory
    needs (see :func:`modules_for_factory`); nothing to do for 'spawn' and 'fork'.
    """
    method = start_method or default_start_method()
    if method != "forkserver":
        return
    from multiprocessing import forkserver
    if not _fork_server_is_ours():
        forget_inherited_fork_server()
    ctx = mp.get_context("forkserver")
    preload = [m for m in dict.fromkeys(list(FORKSERVER_PRELOAD) + list(extra_modules)) if m != _READY_MODULE]
    with main_module_not_reimported():
        ctx.set_forkserver_preload(preload + [_READY_MODULE])
        with _sigint_blocked() if _server_needs_start() else contextlib.nullcontext():
            forkserver.ensure_running()


#: Imported last by the fork server: it unblocks SIGINT there (see :func:`_sigint_blocked`).
_READY_MODULE = "petastorm.reader_impl.process.fork_server_ready"


def _server_needs_start() -> bool:
    """True if ``ensure_running()`` will start a fork server: none yet, or the last one has exited (not reaped:
    ``WNOWAIT``, so that ``ensure_running()`` still sees it)."""
    pid = _fork_server_pid()
    if pid is None:
        return True
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except (OSError, AttributeError):  # not our child (forgotten after a fork), or no waitid here
        return True


@contextlib.contextmanager
def _sigint_blocked() -> Iterator[None]:
    """Block SIGINT in this thread while it may start the fork server, which inherits the mask through
    ``exec``: a Ctrl-C (sent to the whole foreground process group) in the server's first ~0.3 s, before it
    ignores SIGINT, no longer kills it with a traceback of its own; :mod:`.fork_server_ready`, its last preload,
    drops such a Ctrl-C and unblocks SIGINT. In this process a Ctrl-C meanwhile stays pending and is raised
    right after (not lost). The resource tracker is started first: starting it unblocks SIGINT in this thread
    (``multiprocessing.resource_tracker`` blocks it around its own start the same way)."""
    if not hasattr(signal, "pthread_sigmask"):  # pragma: no cover - not POSIX
        yield
        return
    from multiprocessing import resource_tracker

    resource_tracker.ensure_running()
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def forget_inherited_fork_server() -> None:
    """In a child made by ``os.fork`` (a ``torch.utils.data.DataLoader`` worker, a ``multiprocessing`` 'fork'
    child): forget the parent's fork server, so that this process starts its own when it needs one.

    ``multiprocessing`` keeps the parent's server pid, and its ``ensure_running()`` then calls ``waitpid`` on a
    process that is not this one's child: every process-pool reader made in such a child raised a bare
    ``ChildProcessError: [Errno 10] No child processes``. Run after every fork (``os.register_at_fork``), and
    by :func:`warm_up` for a server this process did not start (the fork came before petastorm was imported).
    The child's copy of the server's "alive" descriptor is closed: the parent's server ends with the parent.
    """
    try:
        from multiprocessing import forkserver
        server = forkserver._forkserver
        if getattr(server, "_forkserver_pid", None) is None:
            return
        fd = server._forkserver_alive_fd
        server._forkserver_pid = None
        server._forkserver_address = None
        server._forkserver_alive_fd = None
        server._lock = threading.Lock()  # the parent's may have been held by another thread at the fork
    except (ImportError, AttributeError):  # pragma: no cover - platform without it, another Python's layout
        return
    if fd is not None:
        try:
            os.close(fd)
        except OSError:
            pass


def _fork_server_is_ours() -> bool:
    """False if ``multiprocessing`` records a fork server that is not a child of this process (inherited
    through ``os.fork``); the check does not reap it (``WNOWAIT``), so ``ensure_running()`` still sees a dead one."""
    pid = _fork_server_pid()
    if pid is None:
        return True
    try:
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    except (OSError, AttributeError):  # pragma: no cover - no waitid here: let multiprocessing decide
        return True
    return True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=forget_inherited_fork_server)


_FORKED_BY_SERVER: List[Optional[int]] = [None]  # pid of the fork server that last forked a worker for us


def fork_server_forked() -> None:
    """Record that this interpreter's current fork server has forked a worker: it has imported its preload
    list (``Process.start`` returns only once the server answered), so it starts workers in milliseconds."""
    _FORKED_BY_SERVER[0] = _fork_server_pid()


def fork_server_is_warm() -> bool:
    """True if the running fork server already forked a worker for this interpreter (a server restarted
    since, or started by other code, counts as cold)."""
    pid = _fork_server_pid()
    return pid is not None and pid == _FORKED_BY_SERVER[0]


def _fork_server_pid() -> Optional[int]:
    try:
        from multiprocessing import forkserver
        return getattr(forkserver._forkserver, "_forkserver_pid", None)
    except (ImportError, AttributeError):  # pragma: no cover - platform without it
        return None


def helper_process_pids() -> List[int]:
    """Pids of multiprocessing's own long-lived helpers started in this interpreter (the fork server and
    the resource tracker). They serve every pool and outlive them by design; tests that count child
    processes leave these out."""
    pids = []
    try:
        from multiprocessing import forkserver, resource_tracker
        for obj, attr in ((forkserver._forkserver, "_forkserver_pid"), (resource_tracker._resource_tracker, "_pid")):
            pid = getattr(obj, attr, None)
            if pid:
                pids.append(pid)
    except (ImportError, AttributeError):  # pragma: no cover - platform without them
        pass
    return pids
