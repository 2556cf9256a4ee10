"""Behavioural diff: the same public-API calls against the ORIGINAL petastorm 0.12.1 and ours.

Run from the repository root with our venv (``make compat-diff``)::

    .venv/bin/python tools_compat/behaviour_diff.py [--json out.json] [--only SUBSTRING,...]

It writes the datasets of ``behaviour_cases.py`` once, with OUR ``petastorm.write_dataset``, into a temp
dir; then runs every case of ``behaviour_cases.CASES`` in one subprocess per library (the original's venv
``.venv-original``, made by ``make_original_venv.sh`` when missing, and ours), each with ``python -P`` from
outside the repository so that the rebuild's ``./petastorm`` does not shadow the original. Each case is
guarded (an exception is an observation) and timed out on its own (the subprocess is killed and restarted
after the case). It prints the cases whose observations differ (original vs ours) and ``N cases, M differ``.

What is compared: values (type names, dtypes, shapes, counts) exactly; for an exception its built-in bases
(ours must include each of the original's: an ``except`` clause written for the original still catches
ours) and its message (ours must start with the original's lead phrase: its words before the first quote,
number, bracket, comma, colon or full stop); warnings and petastorm's log records by category and lead
phrase. The exception class and the step that
raised are shown, not compared: our classes are petastorm's own (``petastorm/errors.py``), subclassing the
built-in the original raised.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import traceback
import warnings
from pathlib import Path
from typing import Any, Optional

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
ORIGINAL_PY = ROOT / ".venv-original" / "bin" / "python"
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))  # run with ``python -P``: the script's folder is not on sys.path by itself

import behaviour_cases  # noqa: E402 - stdlib-only at import: importable by both libraries' venvs
from compat_cases import describe_exception  # noqa: E402

CASE_TIMEOUT_S = 120
#: built-in exception classes reported among an exception's bases (what ``except``/``isinstance`` sees).
BUILTIN_BASES = ("ValueError", "TypeError", "OSError", "KeyError", "IndexError", "RuntimeError",
                 "AttributeError", "NotImplementedError")
#: characters of a message (exception, warning, log record) that an observation keeps.
MESSAGE_CHARS = 60
#: warning categories that are the pinned stacks' noise (the original's legacy pyarrow API), not petastorm's.
IGNORED_WARNINGS = (FutureWarning, DeprecationWarning, PendingDeprecationWarning, ResourceWarning)
_CASE, _RESULT = "@@CASE@@ ", "@@RESULT@@ "
_CASES_FILE = Path(behaviour_cases.__file__).resolve()

# ---------------------------------------------------------------------------------------------------------
# Child side: runs in each library's venv
# ---------------------------------------------------------------------------------------------------------


def describe_raised(e: BaseException, stage: str) -> dict:
    """Class (shown, not compared), built-in bases and message lead of ``e``, and the step that raised;
    ``in_case_code`` when the innermost frame is in ``behaviour_cases.py`` (a defect of the case itself)."""
    d = describe_exception(e)
    tb = traceback.extract_tb(e.__traceback__)
    return {"class": d["class"].rsplit(".", 1)[-1],
            "builtins": [c.__name__ for c in type(e).__mro__
                         if c.__module__ == "builtins" and c.__name__ in BUILTIN_BASES],
            "message": d["message"][:MESSAGE_CHARS], "stage": stage,
            "in_case_code": bool(tb) and Path(tb[-1].filename).resolve() == _CASES_FILE}


class _LogCapture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith("petastorm"):
            self.records.append(f"{record.levelname}: {record.getMessage()[:MESSAGE_CHARS]}")


def run_case(name: str, ctx: behaviour_cases.Ctx) -> dict:
    """Run case ``name`` in this process; never raises.

    Returns ``{"outcome": "ok", "value": ...}`` or ``{"outcome": "raised", "exception": ...}``, with
    ``warnings`` (``'<built-in category>: <message lead>'``, petastorm's, deduplicated) and ``log``
    (WARNING+ records of petastorm's loggers).
    """
    cap = _LogCapture()
    logging.getLogger().addHandler(cap)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            obs: dict[str, Any] = {"outcome": "ok", "value": behaviour_cases.CASES[name](ctx)}
        except BaseException as e:  # noqa: BLE001 - an exception is what the case observes
            obs = {"outcome": "raised", "exception": describe_raised(e, ctx.stage)}
    logging.getLogger().removeHandler(cap)
    seen: list[str] = []
    for w in caught:
        if issubclass(w.category, IGNORED_WARNINGS):
            continue
        base = next(c.__name__ for c in w.category.__mro__ if c.__module__ == "builtins")
        text = f"{base}: {str(w.message)[:MESSAGE_CHARS]}"
        if text not in seen:
            seen.append(text)
    obs["warnings"] = seen
    obs["log"] = cap.records
    return obs


def child_main(datasets: Path, scratch: Path, names: list[str]) -> None:
    """Run ``names`` one after the other, printing ``@@CASE@@ name`` then ``@@RESULT@@ json`` for each."""
    warnings.filterwarnings("ignore", category=FutureWarning)
    for name in names:
        print(_CASE + name, flush=True)
        case_scratch = scratch / re.sub(r"[^\w.=-]+", "_", name)
        case_scratch.mkdir(parents=True, exist_ok=True)
        obs = run_case(name, behaviour_cases.Ctx(datasets, case_scratch))
        print(_RESULT + json.dumps(obs, default=repr), flush=True)
    sys.stdout.flush()
    os._exit(0)  # a thread left behind by a failing reader must not keep the process alive


# ---------------------------------------------------------------------------------------------------------
# Parent side: our venv
# ---------------------------------------------------------------------------------------------------------


def _pump(stream: Any, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def run_library(python: Path, datasets: Path, names: list[str], work: Path,
                timeout_s: float = CASE_TIMEOUT_S) -> dict[str, dict]:
    """Observations of every case in ``names`` under the library of ``python``.

    One subprocess runs the cases in turn; when one exceeds ``timeout_s`` (or the process dies), it is
    recorded as ``timeout`` (``crashed``) and a new subprocess goes on with the next case.
    """
    results: dict[str, dict] = {}
    todo = list(names)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(PYTHONWARNINGS="ignore::FutureWarning", SPARK_LOCAL_IP="127.0.0.1")
    while todo:
        scratch = Path(tempfile.mkdtemp(prefix="scratch_", dir=work))
        stderr_path = scratch / "stderr.txt"
        with open(stderr_path, "w") as stderr:
            # cwd outside the repository and -P: the rebuild's ./petastorm must not shadow the original.
            proc = subprocess.Popen([str(python), "-P", str(Path(__file__).resolve()), "--child",
                                     "--datasets", str(datasets), "--scratch", str(scratch),
                                     "--cases", json.dumps(todo)],
                                    stdout=subprocess.PIPE, stderr=stderr, text=True, cwd=work, env=env,
                                    start_new_session=True)
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
        current: Optional[str] = None
        while True:
            try:
                line = lines.get(timeout=timeout_s)
            except queue.Empty:
                os.killpg(proc.pid, signal.SIGKILL)
                line, failure = None, {"outcome": "timeout", "timeout_s": timeout_s}
            else:
                failure = None
            if line is None:  # end of output: finished, died, or killed above
                proc.wait()
                pending = [n for n in todo if n not in results]
                if pending and current is None:  # died or hung at start-up or between cases
                    current = pending[0]
                if current is not None:
                    failure = failure or {"outcome": "crashed", "returncode": proc.returncode}
                    failure["stderr_tail"] = stderr_path.read_text()[-1500:]
                    results[current] = failure
                todo = [n for n in todo if n not in results]
                break
            if line.startswith(_CASE):
                current = line[len(_CASE):].strip()
            elif line.startswith(_RESULT) and current is not None:
                results[current] = json.loads(line[len(_RESULT):])
                current = None
    return results


def ensure_original_venv() -> None:
    """Create ``.venv-original`` with ``make_original_venv.sh`` when it is missing."""
    if not ORIGINAL_PY.exists():
        print(f"{ORIGINAL_PY} is missing: running tools_compat/make_original_venv.sh", flush=True)
        subprocess.run(["bash", str(HERE / "make_original_venv.sh")], check=True)


# ---------------------------------------------------------------------------------------------------------
# Comparing and rendering
# ---------------------------------------------------------------------------------------------------------

#: keys shown beside a difference but never compared.
SHOWN_ONLY = ("exception.class", "exception.stage", "stderr_tail", "returncode", "namedtuple_name")
#: keys neither compared nor shown (a check of the tool itself, see tests/compat/test_behaviour_diff.py).
IGNORED = ("exception.in_case_code",)


def flatten(obs: Any, prefix: str = "") -> dict[str, Any]:
    """``{'a': {'b': 1}}`` -> ``{'a.b': 1}``; lists are leaves."""
    if isinstance(obs, dict) and obs:
        out: dict[str, Any] = {}
        for k, v in obs.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: obs}


_NOT_LEAD = r"""['"`<>\[\](){}:;,0-9]|\.(?:\s|$)"""


def lead_phrase(message: str) -> str:
    """The words of ``message`` (past any leading punctuation) before its first quote, number, bracket,
    comma, colon or full stop: ``"('The shape field of '%s' must..."`` -> ``'The shape field of'``."""
    return re.split(_NOT_LEAD, re.sub(r"^\W+", "", message), maxsplit=1)[0].strip()


def _same_message(original: Any, ours: Any) -> bool:
    if not isinstance(original, str) or not isinstance(ours, str):
        return original == ours
    return re.sub(r"^\W+", "", ours).lower().startswith(lead_phrase(original).lower())


def _same_warning(original: str, ours: str) -> bool:
    """``'<category>: <message>'``: the same category, and ours leads with the original's phrase."""
    (cat_a, _, msg_a), (cat_b, _, msg_b) = original.partition(": "), ours.partition(": ")
    return cat_a == cat_b and _same_message(msg_a, msg_b)


def _same_warnings(original: Any, ours: Any) -> bool:
    """As many warnings, and each of the original's matched by one of ours (:func:`_same_warning`)."""
    if not isinstance(original, list) or not isinstance(ours, list) or len(original) != len(ours):
        return original == ours
    return all(any(_same_warning(o, u) for u in ours) for o in original)


def _same(key: str, original: Any, ours: Any) -> bool:
    last = key.rsplit(".", 1)[-1]
    if last == "message":
        return _same_message(original, ours)
    if last in ("warnings", "log"):
        return _same_warnings(original, ours)
    if last == "builtins" and isinstance(original, list) and isinstance(ours, list):
        return set(original) <= set(ours)  # every ``except``/``isinstance`` of the original still holds
    return original == ours


def diff_case(original: dict, ours: dict) -> list[tuple[str, Any, Any]]:
    """The keys (dotted paths) where the two observations of a case differ: ``(key, original, ours)``;
    the shown-only keys come along when anything differs."""
    a, b = flatten(original), flatten(ours)
    keys = [k for k in list(a) + [k for k in b if k not in a] if not k.endswith(IGNORED)]
    rows = [(k, a.get(k, "-"), b.get(k, "-")) for k in keys
            if not k.endswith(SHOWN_ONLY) and not _same(k, a.get(k, "-"), b.get(k, "-"))]
    if rows:
        rows += [(k, a.get(k, "-"), b.get(k, "-")) for k in keys
                 if k.endswith(SHOWN_ONLY) and a.get(k, "-") != b.get(k, "-")]
    return rows


def diff(original: dict[str, dict], ours: dict[str, dict]) -> dict[str, list]:
    """Per case present in either set, its differing keys (cases that agree are left out)."""
    names = list(original) + [n for n in ours if n not in original]
    missing = {"outcome": "not run"}
    out = {n: diff_case(original.get(n, missing), ours.get(n, missing)) for n in names}
    return {n: rows for n, rows in out.items() if rows}


def render(original: dict[str, dict], ours: dict[str, dict], notes: Optional[dict] = None,
           width: int = 100) -> str:
    """A table of the differing cases (case, key, original, ours; lists one item a line) and the line
    ``N cases, M differ``."""
    notes = notes or {}
    differing = diff(original, ours)
    total = len(set(original) | set(ours))

    def cell(v: Any) -> list[str]:
        items = [f"- {x}" for x in v] if isinstance(v, list) and v and all(isinstance(x, str) for x in v) \
            else [v if isinstance(v, str) else json.dumps(v)]
        return [s if len(s) <= width else s[:width - 1] + "…" for s in (x.replace("\n", " ") for x in items)]

    lines = []
    for name, rows in differing.items():
        lines.append(f"== {name}" + (f"   [{notes[name]}]" if name in notes else ""))
        for key, a, b in rows:
            lines.append(f"   {key}")
            for label, value in (("original: ", a), ("ours:     ", b)):
                lines += [f"      {label if i == 0 else ' ' * len(label)}{x}" for i, x in enumerate(cell(value))]
    lines.append(f"{total} cases, {len(differing)} differ")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", type=Path, help="also write both observation sets and the differences here")
    ap.add_argument("--only", default="", help="comma-separated substrings: run only the matching cases")
    ap.add_argument("--timeout", type=float, default=CASE_TIMEOUT_S, help="seconds per case")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--datasets", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--scratch", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--cases", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child_main(args.datasets, args.scratch, json.loads(args.cases))

    names = [n for n in behaviour_cases.CASES
             if not args.only or any(s in n for s in args.only.split(","))]
    ensure_original_venv()
    work = Path(tempfile.mkdtemp(prefix="behaviour_diff_"))
    try:
        datasets = work / "datasets"
        behaviour_cases.build_datasets(datasets)
        observed = {}
        for label, python in (("original", ORIGINAL_PY), ("ours", Path(sys.executable))):
            print(f"running {len(names)} cases with {label} ({python})", flush=True)
            observed[label] = run_library(python, datasets, names, work, args.timeout)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(render(observed["original"], observed["ours"], behaviour_cases.NOTES))
    if args.json:
        args.json.write_text(json.dumps({"original": observed["original"], "ours": observed["ours"],
                                         "differ": diff(observed["original"], observed["ours"]),
                                         "notes": behaviour_cases.NOTES}, indent=1, default=repr) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
