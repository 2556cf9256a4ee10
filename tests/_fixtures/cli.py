"""Checks shared by the tests of the command-line tools."""
from __future__ import annotations


def assert_one_line_error(stderr: str, program: str, *words: str) -> None:
    """``stderr`` is one line, ``<program>: error: ...``, with no traceback, and holds every word of ``words``."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr, stderr
    assert len(lines) == 1 and lines[0].startswith(f"{program}: error: "), stderr
    for word in words:
        assert word in lines[0], lines[0]
