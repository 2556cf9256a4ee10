"""The examples run as users run them."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_hello_world_demo_writes_and_reads_back(tmp_path):
    out = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "hello_world", "demo.py"),
                          str(tmp_path / "hello")], capture_output=True, text=True, timeout=300, cwd=str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert "read back 50 rows" in out.stdout
    assert "HelloWorldSchema" in out.stdout
