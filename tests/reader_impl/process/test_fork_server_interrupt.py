"""A Ctrl-C while the fork server starts (helper G4, issue 11): it is the reader's process's business only.

A terminal's Ctrl-C goes to the whole foreground process group, the fork server included. In its first ~0.3 s
(interpreter start, then its preload imports) the server had no handler yet: it died with a second traceback
("Fatal Python error: init_import_site", KeyboardInterrupt) on the user's terminal. Also for a server started
again after the first one died.
"""
import os
import subprocess
import sys
import textwrap

import pytest

_CHILD = textwrap.dedent("""
    import multiprocessing as mp
    import os
    import signal
    import sys
    import time
    from multiprocessing import forkserver


    def sigint_blocked(pid):
        with open(f"/proc/{pid}/status") as f:
            mask = [line.split()[1] for line in f if line.startswith("SigBlk:")][0]
        return bool(int(mask, 16) & (1 << (signal.SIGINT - 1)))


    def handler_is_default(q):
        q.put(signal.getsignal(signal.SIGINT) is signal.default_int_handler)


    def main():
        from petastorm import make_reader
        from petastorm.reader_impl.process import ProcessPool

        if sys.argv[2] == "restart":  # a server that died (killed): the next reader starts another one
            with make_reader(sys.argv[1], reader_pool_type="process", workers_count=2) as reader:
                assert len(list(reader)) == 100
            os.kill(forkserver._forkserver._forkserver_pid, signal.SIGKILL)
            time.sleep(0.5)
        ProcessPool.start_fork_server()  # the server starts: interpreter start-up, then its preload imports
        pid = forkserver._forkserver._forkserver_pid
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # until its interpreter catches SIGINT (before, a Ctrl-C ends it silently)
            with open(f"/proc/{pid}/status") as f:
                caught = [line.split()[1] for line in f if line.startswith("SigCgt:")]
            if caught and int(caught[0], 16) & (1 << (signal.SIGINT - 1)):
                break
        try:
            os.killpg(0, signal.SIGINT)  # Ctrl-C on the terminal: every process of the foreground group
            time.sleep(5)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
        with make_reader(sys.argv[1], reader_pool_type="process", workers_count=2) as reader:
            print("rows", sorted(row.id for row in reader) == list(range(100)), flush=True)
        server = forkserver._forkserver._forkserver_pid
        print("blocked", [sigint_blocked(server), sigint_blocked(os.getpid())], flush=True)
        ctx = mp.get_context("forkserver")  # the user's own pool: its processes still get KeyboardInterrupt
        q = ctx.Queue()
        p = ctx.Process(target=handler_is_default, args=(q,))
        p.start()
        print("user process handler", q.get(timeout=60), flush=True)
        p.join()


    if __name__ == "__main__":
        main()
    """)


@pytest.mark.parametrize("server", ["first", "restart"])
def test_a_ctrl_c_while_the_fork_server_starts_prints_no_traceback_of_it(synthetic_dataset, tmp_path, server):
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    env = dict(os.environ, PETASTORM_MP_START="forkserver")
    proc = subprocess.run([sys.executable, str(script), synthetic_dataset, server], capture_output=True, text=True,
                          timeout=180, start_new_session=True, env=env, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "KeyboardInterrupt" not in proc.stderr, proc.stderr
    # the reader after it reads every row; neither the server nor this process keeps SIGINT blocked; the user's
    # own 'forkserver' processes get Python's Ctrl-C handler, as without petastorm
    assert proc.stdout.split("\n")[:4] == ["interrupted", "rows True", "blocked [False, False]",
                                           "user process handler True"]


def test_no_module_imports_fork_server_ready():
    # it works at import (drops a pending Ctrl-C): only the fork server's preload names it, last
    import ast
    import pathlib

    import petastorm
    from petastorm.reader_impl.process import fork_server

    ready = "petastorm.reader_impl.process.fork_server_ready"
    importers = []
    for path in pathlib.Path(petastorm.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [f"{node.module}.{a.name}" for a in node.names] + [node.module or ""]
                     if isinstance(node, ast.ImportFrom) else [])
            if any(n == ready or n.endswith(".fork_server_ready") for n in names):
                importers.append(str(path))
    assert importers == []
    from multiprocessing import forkserver

    fork_server.warm_up("forkserver", ["petastorm.codecs"])
    assert forkserver._forkserver._preload_modules[-1] == ready  # last: after every import of the server
