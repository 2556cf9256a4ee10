"""Run a test script in a child interpreter of its own session, with a timeout: a hang fails the test
instead of stalling the suite, and every process the script left behind (worker processes, fork servers,
DataLoader workers, orphaned or not) is found by its session id after the script exited."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import List, Tuple

__all__ = ["run_script", "session_processes", "PRELUDE", "FDS"]

#: Source of ``fds()``, for a child script: its open descriptors, ``{fd: what it points to}`` (needs ``os``).
FDS = r'''
def fds():
    out = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            out[int(fd)] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            pass
    return out
'''

#: Helpers every child script may use: its descendants, threads, descriptors, ``done(**kw)`` prints the result.
PRELUDE = r'''
import gc, json, os, sys, threading, time
URL = os.environ["DATASET_URL"]

def descendants(root=None):
    root = root or os.getpid()
    parent = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    parent[int(d)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                pass
    out, frontier = [], {root}
    while frontier:
        frontier = {p for p, pp in parent.items() if pp in frontier}
        out += sorted(frontier)
    return out

def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")[:120]
    except OSError:
        return ""

def helpers():
    from petastorm.reader_impl.process.fork_server import helper_process_pids
    return set(helper_process_pids())

''' + FDS + r'''
def done(**kw):
    print("RESULT " + json.dumps(kw, default=str), flush=True)
'''


def session_processes(sid: int) -> List[Tuple[int, str]]:
    """Processes of session ``sid`` still running (zombies left out), with their command lines."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[3]) != sid or fields[0] == "Z":
                continue
            with open(f"/proc/{d}/cmdline", "rb") as f:
                out.append((int(d), f.read().replace(b"\0", b" ").decode(errors="replace")[:120]))
        except (OSError, IndexError, ValueError):
            continue
    return out


def run_script(code: str, url: str, timeout: float = 90.0, grace_s: float = 5.0, env: dict = None,
               expect_rc: int = 0) -> dict:
    """Run ``PRELUDE + code`` in a child interpreter in a new session; the dict it printed with ``done(...)``,
    plus ``left``: the processes of its session still running ``grace_s`` seconds after it exited (they are
    killed then, so that a failing test leaves nothing behind), ``stdout``, ``stderr`` and ``ended`` (the
    ``time.time()`` of its exit)."""
    path = f"/tmp/child-script-{os.getpid()}-{time.monotonic_ns()}.py"
    with open(path, "w") as f:
        f.write(PRELUDE + code)
    full_env = dict(os.environ, DATASET_URL=url, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.dirname(os.path.abspath(__file__))))))
    full_env.update(env or {})
    proc = subprocess.Popen([sys.executable, path], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd="/tmp", env=full_env, start_new_session=True)
    try:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            left = session_processes(proc.pid)
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
            raise AssertionError(f"hang: the script ran over {timeout} s; its processes: {left}\n{stderr[-3000:]}")
        ended = time.time()
        deadline = time.monotonic() + grace_s
        left = session_processes(proc.pid)
        while left and time.monotonic() < deadline:
            time.sleep(0.1)
            left = session_processes(proc.pid)
        for pid, _ in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    finally:
        os.unlink(path)
    lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == expect_rc and lines, f"child failed (rc {proc.returncode}):\n{stderr[-4000:]}"
    out = json.loads(lines[-1][len("RESULT "):])
    out["left"] = left
    out["stderr"] = stderr
    out["stdout"] = stdout
    out["ended"] = ended  # time.time() when the script's interpreter had exited
    return out
