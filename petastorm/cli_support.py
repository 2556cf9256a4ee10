"""What every petastorm command-line tool shares: argument checks and bad input as one line on stderr.

A tool's ``_main(argv)`` returns its exit status: 0 on success, 2 for a command line argparse refuses
(its usage message), 1 for bad input found later (a missing dataset, a regex that matches no field, an
existing output): one line ``<prog>: error: <message>`` on stderr, no traceback. Other exceptions (bugs)
keep their traceback.

Used by every console script: ``petastorm.tools`` (copy-dataset, explain), ``petastorm.benchmark``
(throughput) and ``petastorm.etl.petastorm_generate_metadata``. It sits below all of them and imports
nothing of petastorm's at module level, so the ETL layer never imports the ``tools`` layer.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any, Callable, Optional, Sequence

__all__ = ["positive_int", "non_negative_int", "positive_float", "run_cli", "is_bad_input", "one_line"]


def _int_at_least(text: str, minimum: int, kind: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be a {kind} integer, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """argparse ``type=``: an integer >= 1 (``'abc'`` and ``'0'`` are refused with the argument named)."""
    return _int_at_least(text, 1, "positive")


def non_negative_int(text: str) -> int:
    """argparse ``type=``: an integer >= 0."""
    return _int_at_least(text, 0, "non-negative")


def positive_float(text: str) -> float:
    """argparse ``type=``: a number > 0 (a size in MiB...)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return int(value) if value.is_integer() else value


def is_bad_input(error: BaseException) -> bool:
    """Errors that mean the input is wrong (reported in one line), not that the tool has a bug."""
    from petastorm.errors import PetastormError

    if isinstance(error, (PetastormError, OSError, ValueError, KeyError, ImportError)):
        return True
    # pyspark's AnalysisException and friends (a path or column Spark cannot resolve)
    return any(cls.__module__.startswith(("pyspark.", "py4j.")) for cls in type(error).__mro__)


def one_line(error: BaseException) -> str:
    """The first non-empty line of ``error``'s message (its class name when the message is empty)."""
    text = str(error).strip() or type(error).__name__
    first = text.splitlines()[0].strip()
    return first if first else type(error).__name__


def run_cli(prog: str, parser: argparse.ArgumentParser, argv: Optional[Sequence[str]],
            body: Callable[[argparse.Namespace], Any]) -> int:
    """Parse ``argv`` with ``parser`` and run ``body(args)``; return the exit status (see the module doc)."""
    try:
        args = parser.parse_args(list(argv) if argv is not None else None)
    except SystemExit as e:  # --help (0) or a refused command line (2, usage already printed)
        return int(e.code) if isinstance(e.code, int) else (0 if e.code is None else 2)
    try:
        body(args)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - bad input becomes one line, anything else keeps its traceback
        if not is_bad_input(e):
            raise
        print(f"{prog}: error: {one_line(e)}", file=sys.stderr)
        return 1
    return 0
