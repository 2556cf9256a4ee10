"""Checks shared by the tests of the command-line tools."""
from __future__ import annotations

import os
import subprocess
import sys


def run_console_script(name: str, *args: str, timeout: float, **env: str) -> subprocess.CompletedProcess:
    """Run the console script ``name`` installed next to this interpreter, as a user would: from ``/tmp`` (the
    repository is not on its path), with ``env`` added to this environment. Its output is text, not checked."""
    return subprocess.run([os.path.join(os.path.dirname(sys.executable), name), *args], capture_output=True,
                          text=True, timeout=timeout, cwd="/tmp", env=dict(os.environ, **env))


def assert_one_line_error(stderr: str, program: str, *words: str) -> None:
    """``stderr`` is one line, ``<program>: error: ...``, with no traceback, and holds every word of ``words``."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr, stderr
    assert len(lines) == 1 and lines[0].startswith(f"{program}: error: "), stderr
    for word in words:
        assert word in lines[0], lines[0]
