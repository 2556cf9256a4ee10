"""The framework extras (issue 11, set-up): ``torch``, ``tf`` and ``jax`` are extras of the package, ``make test``
installs all three (CPU builds pinned in constraints.txt), and so every adapter test runs: none is skipped for
a missing framework."""
import importlib.metadata
import os
import re

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def _read(name):
    with open(os.path.join(ROOT, name), encoding="utf-8") as f:
        return f.read()


def _extras():
    """``{extra: first requirement}`` of pyproject.toml's one-line extras (tomllib is Python 3.11+)."""
    section = _read("pyproject.toml").split("[project.optional-dependencies]", 1)[1].split("\n[", 1)[0]
    return dict(re.findall(r'^([\w-]+) = \["([^"]+)"', section, re.MULTILINE))


def test_the_framework_extras_exist_and_name_cpu_builds():
    extras = _extras()
    assert extras["torch"].startswith("torch")
    assert extras["tf"].startswith("tensorflow-cpu")
    assert extras["jax"].startswith("jax")
    core = _read("pyproject.toml").split("dependencies = [", 1)[1].split("]", 1)[0]
    assert not re.search(r'"(torch|tensorflow|jax|pyspark)\b', core)  # optional, imported lazily


def test_make_test_installs_every_framework_extra_with_the_pins():
    install = re.search(r"install -c constraints\.txt -e '\.\[([\w,-]+)\]'", _read("Makefile"))
    assert install, "the Makefile's venv install line changed"
    assert {"test", "torch", "tf", "jax"} <= set(install.group(1).split(","))
    pins = dict(re.findall(r"^([\w-]+)==([\w.+]+)$", _read("constraints.txt"), re.MULTILINE))
    for package in ("torch", "tensorflow-cpu", "jax"):
        assert package in pins, f"{package} is not pinned in constraints.txt"
        assert importlib.metadata.version(package).split("+")[0] == pins[package].split("+")[0]
