"""The GPU check script (``checks/gpu_check.py``, ``make gpu-check`` on a machine with a GPU) keeps working where
no GPU is lent: its ``--cpu`` smoke test runs every check that does not need CUDA (torch on the CPU, JAX on two
forced CPU devices) in a fresh interpreter and must pass them all."""
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


@pytest.mark.slow
def test_the_gpu_check_passes_its_cpu_smoke_test():
    env = dict(os.environ, PYTHONPATH=ROOT)
    env.pop("XLA_FLAGS", None)
    out = subprocess.run([sys.executable, os.path.join(ROOT, "checks", "gpu_check.py"), "--cpu", "--timeout", "150"],
                         capture_output=True, text=True, timeout=200, cwd=ROOT, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    summary = re.search(r"^(\d+) checks: (\d+) passed, (\d+) failed, (\d+) n/a", out.stdout, re.MULTILINE)
    assert summary, out.stdout
    total, passed, failed, na = map(int, summary.groups())
    assert failed == 0 and passed >= 9 and passed + na == total, out.stdout
    # the checks that the CPU can run include the review's findings F3 and F4
    assert re.search(r"^PASS torch \[F4\]", out.stdout, re.MULTILINE)
    assert len(re.findall(r"^PASS jax \[F3\]", out.stdout, re.MULTILINE)) == 2
