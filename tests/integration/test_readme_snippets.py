"""README.md's ```python blocks run as a new user runs them: each block a script of its own, in page order
(the README writes the dataset in one script and reads it "in another script"), in a fresh interpreter.

The README's dataset path ``/tmp/hello_world`` is replaced by one under the test's ``tmp_path``. Found by
the new-user review: the reading and training snippets read ``s3://bucket/...`` with ``storage_options={...}``
and ``file:///tmp/data``, which do not exist, and the training one asked for ``device='cuda'`` on any machine.
"""
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def _readme_blocks():
    with open(os.path.join(ROOT, "README.md")) as f:
        return re.findall(r"^```python\n(.*?)^```", f.read(), re.S | re.M)


def _run(code, path, cwd):
    path.write_text(code)
    out = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=300, cwd=str(cwd))
    assert out.returncode == 0, f"{path.name} failed:\n{out.stdout}\n{out.stderr}"
    return out.stdout


@pytest.mark.slow
def test_readme_snippets_run_as_written_in_order(tmp_path):
    blocks = _readme_blocks()
    assert len(blocks) == 3  # writing, reading, training
    dataset = tmp_path / "hello_world"
    outputs = [_run(block.replace("/tmp/hello_world", str(dataset)), tmp_path / f"readme_{i}.py", tmp_path)
               for i, block in enumerate(blocks)]

    assert (dataset / "_common_metadata").exists()
    # the reading snippet prints one row (a seeded shuffle: any id of the 100), then one batch per row group
    row_line, *batch_lines = outputs[1].splitlines()
    row_id, shapes = row_line.split(" ", 1)
    assert 0 <= int(row_id) < 100 and shapes == "(128, 256, 3) (4, 128, 30, 3)"
    assert batch_lines and all(line.endswith(", 128, 256, 3)") for line in batch_lines)
    assert sum(int(re.match(r"\((\d+),\)", line).group(1)) for line in batch_lines) == 100
