"""A worker process's exception, sent to the parent and raised there as the same type where it unpickles.

The worker sends :func:`exception_payload` (type name, message, formatted traceback, cloudpickle bytes or
None); the parent raises :func:`rebuild_exception` of it at the item's turn, with the worker's traceback in
``worker_traceback`` and as the ``__cause__``. An exception that does not survive pickling, or whose class
the parent cannot import, becomes a :class:`~petastorm.errors.PetastormWorkerError` carrying its text.
"""
from __future__ import annotations

import pickle
import traceback
from typing import Optional

import cloudpickle

from petastorm.errors import PetastormWorkerError
from petastorm.reader_impl.pool import annotate_worker_exception

__all__ = ["exception_payload", "rebuild_exception"]


def exception_payload(exc: BaseException) -> tuple:
    """``(type name, message, traceback text, cloudpickle bytes or None)`` of a worker's exception, to
    send to the parent (which rebuilds it with :func:`rebuild_exception`)."""
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        data = cloudpickle.dumps(exc)
        pickle.loads(data)
    except Exception:  # noqa: BLE001 - an exception that does not survive pickling: send its text
        data = None
    return (type(exc).__qualname__, str(exc), tb, data)


def rebuild_exception(payload: tuple) -> BaseException:
    """The worker's exception, same type when it unpickles, with its traceback attached."""
    type_name, message, tb, data = payload
    exc: Optional[BaseException] = None
    if data is not None:
        try:
            exc = pickle.loads(data)
        except Exception:  # noqa: BLE001 - its class is not importable here
            exc = None
    if not isinstance(exc, BaseException):
        exc = PetastormWorkerError(f"{type_name}: {message}\n\nworker traceback:\n{tb}")
        exc.worker_traceback = tb
        return exc
    return annotate_worker_exception(exc, tb, set_cause=True)
