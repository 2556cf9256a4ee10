"""Record, as a black box, the signatures of the ORIGINAL petastorm 0.12.1's ``make_reader`` and
``make_batch_reader``.

Run it with the original's venv (see ``tools_compat/make_original_venv.sh``), from outside the project so
that ``import petastorm`` finds the original::

    cd /tmp && /work/main/.venv-original/bin/python -P /work/main/tools_compat/original_signatures.py

It prints, and writes to ``tools_compat/original_signatures.json``, per function the parameters in order:
name, kind (``inspect.Parameter.kind`` name, e.g. ``POSITIONAL_OR_KEYWORD``) and the default as ``repr``
(null when there is none). ``tests/test_reader_arguments.py`` checks ours against it.

Only ``inspect.signature`` of the original's public functions is used; its source is not read.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import inspect
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_JSON = HERE / "original_signatures.json"
FUNCTIONS = ("make_reader", "make_batch_reader")


def describe(func) -> list[dict]:
    """The parameters of ``func`` in order: name, kind, default (repr, or None when there is none)."""
    return [{"name": p.name, "kind": p.kind.name,
             "default": None if p.default is inspect.Parameter.empty else repr(p.default)}
            for p in inspect.signature(func).parameters.values()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", type=Path, default=DEFAULT_JSON,
                    help="where to write the record ('-': stdout only)")
    args = ap.parse_args()

    version = importlib.metadata.version("petastorm")
    import petastorm
    if version != "0.12.1" or "site-packages" not in petastorm.__file__:
        sys.exit(f"run this with the ORIGINAL petastorm 0.12.1 venv "
                 f"(found {version} at {petastorm.__file__})")

    doc = {
        "generated_by": "tools_compat/original_signatures.py",
        "versions": {"petastorm": version, "python": sys.version.split()[0]},
        "note": "per function, its parameters in order: name, kind (inspect.Parameter.kind name) and default "
                "as repr (null: no default)",
        "functions": {name: describe(getattr(petastorm, name)) for name in FUNCTIONS},
    }
    text = json.dumps(doc, indent=1) + "\n"
    print(text, end="")
    if str(args.json) != "-":
        args.json.write_text(text)


if __name__ == "__main__":
    main()
