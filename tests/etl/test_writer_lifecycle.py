"""write_dataset's target handling and a writer killed mid-way.

Before: ``overwrite=True`` on a directory that is not a dataset (a mistyped path: a home or project
directory) deleted everything in it; a writer killed by SIGKILL left its encoding processes (and the
forkserver) running forever, waiting on their queue.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from petastorm.errors import PetastormWriteError
from petastorm.etl.writer import write_dataset
from petastorm.unischema import Unischema, UnischemaField

SCHEMA = Unischema("L", [UnischemaField("id", np.int64, (), None, False)])


def _write(path, n=3, **kwargs):
    return write_dataset(str(path), SCHEMA, [{"id": i} for i in range(n)], workers_count=1, progress=False,
                         **kwargs)


def test_overwrite_refuses_a_directory_that_is_not_a_dataset_and_keeps_its_files(tmp_path):
    target = tmp_path / "project"
    target.mkdir()
    (target / "notes.txt").write_text("precious")
    _write(target / "inner_dataset")
    with pytest.raises(PetastormWriteError, match=r"does not look like a dataset.*inner_dataset/, notes.txt"):
        _write(target, overwrite=True)
    assert sorted(os.listdir(target)) == ["inner_dataset", "notes.txt"]
    assert (target / "notes.txt").read_text() == "precious"


@pytest.mark.parametrize("marker", ["_common_metadata", "_SUCCESS", "part-0.parquet", "year=2020/"])
def test_overwrite_replaces_a_directory_that_looks_like_a_dataset(tmp_path, marker):
    target = tmp_path / "ds"
    (target / marker.rstrip("/")).parent.mkdir(parents=True, exist_ok=True)
    if marker.endswith("/"):
        (target / marker).mkdir()
    else:
        (target / marker).write_bytes(b"old")
    result = _write(target, n=4, overwrite=True)
    assert result.num_rows == 4
    assert sorted(os.listdir(target)) == ["_common_metadata"] + list(result.files)
    assert (target / "_common_metadata").read_bytes() != b"old"


def _descendants(pid: int) -> list:
    children: dict = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    fields = f.read().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != b"Z":
                children.setdefault(int(fields[1]), []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        out += kids
        todo += kids
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return False


WRITER = textwrap.dedent("""
    import sys
    import numpy as np
    from petastorm.codecs import NdarrayCodec
    from petastorm.etl.writer import write_dataset
    from petastorm.unischema import Unischema, UnischemaField

    S = Unischema("K", [UnischemaField("id", np.int64, (), None, False),
                        UnischemaField("a", np.float32, (1000,), NdarrayCodec(), False)])

    def rows():
        for i in range(10 ** 8):
            if i == 1000:
                print("WRITING", flush=True)
            yield {"id": i, "a": np.full(1000, i, np.float32)}

    if __name__ == "__main__":
        write_dataset(sys.argv[1], S, rows(), workers_count=2, progress=False, rows_per_file=500)
""")


@pytest.mark.slow
def test_a_writer_killed_mid_way_leaves_no_process_and_publishes_nothing(tmp_path):
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    target = tmp_path / "out" / "ds"
    proc = subprocess.Popen([sys.executable, str(script), str(target)], stdout=subprocess.PIPE,
                            start_new_session=True)
    helpers = []
    try:
        deadline = time.monotonic() + 60
        line = proc.stdout.readline()
        assert line.strip() == b"WRITING" and time.monotonic() < deadline
        helpers = _descendants(proc.pid)
        assert len(helpers) >= 2  # the encoding workers (and the forkserver, the resource tracker)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 15
        while any(_alive(p) for p in helpers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert [p for p in helpers if _alive(p)] == []
        assert not target.exists()  # only the temporary sibling '<ds>.__petastorm_tmp_<id>' was written
        assert all(".__petastorm_tmp_" in name for name in os.listdir(tmp_path / "out"))
    finally:
        for pid in [proc.pid] + helpers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        proc.stdout.close()


FULL_DISK = textwrap.dedent("""
    import os, resource, signal, sys
    import numpy as np
    from petastorm.codecs import NdarrayCodec
    from petastorm.errors import PetastormWriteError
    from petastorm.etl.writer import write_dataset
    from petastorm.unischema import Unischema, UnischemaField

    S = Unischema("F", [UnischemaField("a", np.uint8, (None,), NdarrayCodec(), False)])
    if __name__ == "__main__":
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
        rows = ({"a": np.random.randint(0, 255, 100_000, np.uint8)} for _ in range(100))
        try:
            write_dataset(sys.argv[1], S, rows, workers_count=1, progress=False, compression=None)
        except PetastormWriteError as e:
            print(type(e.__cause__).__name__, e)
        print(sorted(os.listdir(os.path.dirname(sys.argv[1]))))
""")


def test_a_write_failing_for_lack_of_space_names_the_dataset_and_publishes_nothing(tmp_path):
    # a file-size limit stands for a full disk: the same OSError from the Parquet writer
    script = tmp_path / "full.py"
    script.write_text(FULL_DISK)
    target = tmp_path / "out" / "ds"
    out = subprocess.run([sys.executable, str(script), str(target)], capture_output=True, text=True, timeout=120)
    lines = out.stdout.strip().splitlines()
    assert lines[0].startswith(f"OSError writing the dataset '{target}' failed: OSError:"), out.stdout + out.stderr
    assert "File too large" in lines[0] and "nothing was published" in lines[0]
    assert lines[-1] == "[]"  # neither the dataset nor its temporary directory
