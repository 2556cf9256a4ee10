"""Run a JAX test script in a child Python over ``devices`` forced CPU devices, and return the facts it prints.

JAX fixes its device count when first imported, so tests needing several devices run their cases in a child
(``XLA_FLAGS=--xla_force_host_platform_device_count=N``); the child prints one line ``RESULT<json>``.
"""
import json
import os
import subprocess
import sys


def child_facts(code: str, url: str, devices: int, timeout: float = 300) -> dict:
    """The JSON facts printed by ``code`` (run as ``python -c code url``) after its ``RESULT`` marker.

    Parameters
    ----------
    code : str
        The child's source; it reads the dataset URL from ``sys.argv[1]``.
    url : str
        The dataset URL handed to the child.
    devices : int
        CPU devices JAX sees in the child.
    timeout : float
        Seconds before the child is killed (the test then fails, it does not hang).
    """
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", code, url], env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")][-1]
    return json.loads(line[len("RESULT"):])
