"""Starting pool workers without re-running the user's script in them.

``multiprocessing``'s 'spawn' and 'forkserver' children re-import the parent's ``__main__`` (by name or path)
before they run anything. Petastorm's workers do not need it (what they run travels with cloudpickle, by
value), and re-running it fails for a script without an ``if __name__ == '__main__':`` guard (it would start
workers again) or read from stdin (``python - <<EOF``: there is no file to run). :func:`main_module_not_reimported`
leaves the main module's name and path out of what the children started in the calling thread receive.

Used by the reader's process pool (``reader_impl.process``) and the writer's encoding pool (``etl``); it sits in
the base layer so that neither imports the other.
"""
from __future__ import annotations

import contextlib
import functools
import threading
from typing import Any, Iterator

__all__ = ["main_module_not_reimported"]

_INSTALL_LOCK = threading.Lock()
_NOT_REIMPORTED = threading.local()
_MAIN_KEYS = ("init_main_from_name", "init_main_from_path")


def _preparation_data_without_main(name: str, *, _original: Any) -> dict:
    """``multiprocessing.spawn.get_preparation_data``, less what re-runs ``__main__`` in the child while
    this thread starts pool workers (see :func:`main_module_not_reimported`)."""
    data = _original(name)
    if getattr(_NOT_REIMPORTED, "depth", 0):
        for key in _MAIN_KEYS:
            data.pop(key, None)
    return data


def _install_preparation_filter() -> None:
    from multiprocessing import spawn

    with _INSTALL_LOCK:
        if getattr(spawn.get_preparation_data, "_petastorm_filter", False):
            return
        wrapper = functools.partial(_preparation_data_without_main, _original=spawn.get_preparation_data)
        wrapper._petastorm_filter = True  # type: ignore[attr-defined]
        spawn.get_preparation_data = wrapper


@contextlib.contextmanager
def main_module_not_reimported() -> Iterator[None]:
    """While this thread starts workers, 'spawn'/'forkserver' children do not re-run the user's script (the
    factory travels with cloudpickle, by value, so they do not need it).

    This lets a script without an ``if __name__ == '__main__':`` guard use the process pool. Only the
    preparation data sent to the children started in this thread, inside the block, lose the main module's
    name and path (``multiprocessing.spawn.get_preparation_data`` is wrapped once, per thread): ``__main__``
    itself is left alone, so other threads never see it changed.
    """
    _install_preparation_filter()
    _NOT_REIMPORTED.depth = getattr(_NOT_REIMPORTED, "depth", 0) + 1
    try:
        yield
    finally:
        _NOT_REIMPORTED.depth -= 1
