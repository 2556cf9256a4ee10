"""The process pool's start-up lane: one thread of the parent runs items while the worker processes start.

A worker process needs tens of milliseconds before its first result (a fork-server round trip, then a
first row group read into cold memory), and a whole interpreter start when the fork server is not up
yet. Meanwhile the parent waits with a core to spare. The lane is one thread that builds its own worker
from the same factory and runs the items at the head of the queue until the first worker result
arrives; then it closes. Its results take their place in the plan order like any other, so what the
reader yields is unchanged: only the first row comes sooner.

The process pool uses the lane only when the factory runs no user code (no ``TransformSpec``, no
predicate, no codec or ``numpy_dtype`` class of the user's: :func:`lane_allowed`): a user function written
for worker processes (one that loads a model into a worker, say) never runs in the training process. Nor
when the worker decodes images: decoding one in the reader's process would load OpenCV there.
"""
from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Optional, Tuple

from petastorm.reader_impl.pool import WorkerFactory, close_worker
from petastorm.reader_impl.thread_pool import STOP_TASK, serve_tasks

__all__ = ["StartupLane", "lane_allowed"]

#: Modules whose scalar types a worker may build without running user code.
_PLAIN_DTYPE_MODULES = ("numpy", "builtins", "decimal", "datetime")


def lane_allowed(worker_factory: Any) -> bool:
    """True if ``worker_factory`` is a reader's (it has a ``spec``: a
    :class:`~petastorm.reader_impl.worker.ReadSpec`) whose worker runs no code of the user's and decodes no
    image: no transform, no predicate, only petastorm's own codecs, no ``numpy_dtype`` class of the user's
    (scalar decoding calls it), no :class:`~petastorm.codecs.CompressedImageCodec` field. Any other
    factory: False."""
    spec = getattr(worker_factory, "spec", None)
    if spec is None or getattr(spec, "transform_spec", None) is not None or getattr(spec, "predicate", None) is not None:
        return False
    fields = getattr(getattr(spec, "schema", None), "fields", None)
    if fields is None:
        return False
    for name in getattr(spec, "fields", ()):
        field = fields.get(name)
        codec = getattr(field, "codec", None)
        if codec is not None and type(codec).__module__ != "petastorm.codecs":
            return False
        if type(codec).__name__ == "CompressedImageCodec":
            return False
        dtype_module = str(getattr(getattr(field, "numpy_dtype", None), "__module__", "numpy")).split(".")[0]
        if dtype_module not in _PLAIN_DTYPE_MODULES:
            return False
    return True


def _lane_main(factory: WorkerFactory, tasks: "queue.SimpleQueue", results: "queue.SimpleQueue",
               wake: Callable[[], None]) -> None:
    """Body of the lane thread (holds no reference to the lane or the pool)."""

    def post(message: tuple) -> None:
        results.put(message)
        wake()

    try:
        worker = factory()
    except BaseException:  # noqa: BLE001 - the worker processes run the same factory and report it
        post(("dead", 0, 0, None, None))
        return
    try:
        serve_tasks(worker, tasks, post)
    finally:
        close_worker(worker)


class StartupLane:
    """One thread running items in the parent, one at a time, until :meth:`close`.

    Parameters
    ----------
    factory : callable
        The pool's worker factory, called once in the lane's thread.
    wake : callable
        Called after each message, so that a consumer waiting on the worker connections wakes up (it must
        not raise, and must stay safe to call once the pool is closed).
    """

    def __init__(self, factory: WorkerFactory, wake: Callable[[], None]):
        self._tasks: "queue.SimpleQueue" = queue.SimpleQueue()
        self._results: "queue.SimpleQueue" = queue.SimpleQueue()
        #: (gen, seq, item) the lane runs now, or None
        self.running: Optional[Tuple[int, int, Any]] = None
        #: False once closed: it takes no new items (the one running still reports)
        self.open = True
        self._thread = threading.Thread(target=_lane_main, name="petastorm-startup-lane", daemon=True,
                                        args=(factory, self._tasks, self._results, wake))
        self._thread.start()

    @property
    def idle(self) -> bool:
        """Open and running nothing: it can take an item."""
        return self.open and self.running is None

    def submit(self, gen: int, seq: int, item: Any) -> None:
        """Run ``item`` next (only when :attr:`idle`)."""
        self.running = (gen, seq, item)
        self._tasks.put((gen, seq, item))

    def poll(self) -> Optional[tuple]:
        """The next message of the lane, without blocking: ``(kind, gen, seq, value, traceback)`` with kind
        'ok', 'error' or 'dead' (its worker could not be built: the lane is closed, and the item it was
        given, in :attr:`running` until then, must go elsewhere). None when there is none."""
        try:
            message = self._results.get_nowait()
        except queue.Empty:
            return None
        if message[0] == "dead":
            self.open = False
            self._tasks.put(STOP_TASK)
        else:
            self.running = None
        return message

    def close(self) -> None:
        """Take no new items; the thread ends after the item it runs (its result still comes)."""
        if self.open:
            self.open = False
            self._tasks.put(STOP_TASK)

    def join(self, timeout: float) -> bool:
        """Close, then wait up to ``timeout`` seconds for the thread; True if it ended."""
        self.close()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)
        return not self._thread.is_alive()
