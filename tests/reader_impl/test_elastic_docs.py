"""docs/elastic_resume.md runs as written: its ```python blocks, in page order, as one script (blocks that
start with "# Not run by the tests" are left out, as tests/integration/test_examples.py does for the user guides)."""
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
_NOT_RUN = "# Not run by the tests"


@pytest.mark.slow
def test_elastic_resume_page_runs_as_written(tmp_path):
    with open(os.path.join(ROOT, "docs", "elastic_resume.md")) as f:
        blocks = re.findall(r"^```python\n(.*?)^```", f.read(), re.S | re.M)
    script = "\n".join(b for b in blocks if not b.startswith(_NOT_RUN))
    assert "merge_state_dicts" in script and "load_state_dict" in script
    path = tmp_path / "elastic_resume.py"
    path.write_text(script)
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, str(path)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "rows per new rank:" in proc.stdout
    held = int(re.search(r"; (\d+) rows were held", proc.stdout).group(1))
    assert held > 0  # the example shows rows held in the loaders' buffers being dealt
