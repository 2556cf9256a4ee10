"""The loaders' prefetch threads a test started (threads of earlier tests, not yet collected, excluded)."""
from __future__ import annotations

import threading
import time

import pytest

PREFETCH_THREAD = "petastorm-batch-prefetch"
_BASELINE: set = set()


def _prefetch_threads() -> set:
    return {t for t in threading.enumerate() if t.name == PREFETCH_THREAD}


@pytest.fixture(autouse=True)
def prefetch_threads_baseline():
    """Record the prefetch threads alive before each test (autouse through tests/conftest.py)."""
    _BASELINE.clear()
    _BASELINE.update(_prefetch_threads())
    yield


def new_prefetch_threads() -> set:
    """Prefetch threads started during this test and still alive."""
    return _prefetch_threads() - _BASELINE


def no_new_prefetch_thread_within(seconds: float = 10.0) -> bool:
    """Whether every prefetch thread this test started has ended within ``seconds``."""
    deadline = time.time() + seconds
    while new_prefetch_threads() and time.time() < deadline:
        time.sleep(0.01)
    return not new_prefetch_threads()
