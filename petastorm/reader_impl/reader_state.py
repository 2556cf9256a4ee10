"""The resumable cursor of a reader and its serialised form (``Reader.state_dict()``).

A reader's position is ``(epoch, position, rows_into_item)``: the plan (``plan.make_epoch_plan``) is a pure
function of the dataset, the options, the seed and the epoch, so resuming only needs to regenerate the
plan and skip. The state dict holds nothing else but fingerprints that refuse a state from another
dataset or other options::

    {"version": 1, "dataset_fingerprint": "...", "options_fingerprint": "...", "options": {...},
     "seed": 42, "epoch": 1, "position": 17, "rows_into_item": 250, "extra": {}}
"""
from __future__ import annotations

import hashlib
import json
import operator
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from petastorm.errors import PetastormStateError, PetastormTypeError

__all__ = [
    "STATE_VERSION",
    "KEY_VERSION",
    "KEY_DATASET_FINGERPRINT",
    "KEY_OPTIONS_FINGERPRINT",
    "KEY_OPTIONS",
    "KEY_SEED",
    "KEY_EPOCH",
    "KEY_POSITION",
    "KEY_ROWS_INTO_ITEM",
    "KEY_EXTRA",
    "ReaderCursor",
    "fingerprint",
    "dataset_fingerprint",
    "make_state_dict",
    "check_state_dict",
    "check_cursor_in_plan",
]

#: Version of the state dict layout written by :func:`make_state_dict`.
STATE_VERSION = 1

KEY_VERSION = "version"
KEY_DATASET_FINGERPRINT = "dataset_fingerprint"
KEY_OPTIONS_FINGERPRINT = "options_fingerprint"
KEY_OPTIONS = "options"
KEY_SEED = "seed"
KEY_EPOCH = "epoch"
KEY_POSITION = "position"
KEY_ROWS_INTO_ITEM = "rows_into_item"
KEY_EXTRA = "extra"

_FINGERPRINT_HEX_CHARS = 16
# Integers beyond this are stored as decimal strings: many JSON parsers read numbers as doubles.
_JSON_SAFE_INT = 2 ** 53


@dataclass
class ReaderCursor:
    """Where the next row comes from.

    Attributes
    ----------
    epoch : int
        0-based epoch.
    position : int
        Position in the epoch's plan of the item the next row comes from (``len(plan)``: epoch done).
    rows_into_item : int
        Rows already yielded from that item (after predicates; batches count their rows).
    seed : int or None
        The seed the plan was made with (a reader created with ``seed=None`` resolves it to an int,
        which a resumed reader must reuse).
    extra : dict
        JSON-serialisable per-reader details saved with the state (for example an ngram window).
    """

    epoch: int = 0
    position: int = 0
    rows_into_item: int = 0
    seed: Optional[int] = None
    extra: dict = field(default_factory=dict)


def _to_json_native(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=lambda v: json.dumps(v, sort_keys=True, default=_to_json_native))
    if isinstance(obj, bytes):
        return obj.hex()
    raise PetastormTypeError(f"cannot fingerprint a {type(obj).__name__} ({obj!r}): give a JSON-like value "
                    f"(dict, list, str, int, float, bool, None, numpy scalar or array)")


def _canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      default=_to_json_native)


def fingerprint(obj: Any) -> str:
    """A stable short hash of a JSON-like value: the first 16 hex digits of sha256 of canonical JSON.

    Dict key order does not matter; tuples hash like lists; numpy scalars/arrays like their Python values.
    The same value gives the same fingerprint in every process, Python version and machine.

    Raises
    ------
    TypeError
        ``obj`` holds a value with no JSON form (the message names its type).
    """
    return hashlib.sha256(_canonical_json(obj).encode("ascii")).hexdigest()[:_FINGERPRINT_HEX_CHARS]


def dataset_fingerprint(paths: Sequence[str], rows_per_group: Sequence[int] | np.ndarray) -> str:
    """Fingerprint of a dataset: its file paths (dataset order) and the row count of every row group."""
    return fingerprint({"paths": [str(p) for p in paths],
                        "rows_per_group": np.asarray(rows_per_group, dtype=np.int64).tolist()})


def _encode_int(value: Optional[int]) -> Any:
    if value is None:
        return None
    value = operator.index(value)
    return value if abs(value) < _JSON_SAFE_INT else str(value)


def make_state_dict(cursor: ReaderCursor, dataset_fingerprint: str, options_fingerprint: str,
                    seed: Optional[int], extra: Optional[Mapping] = None,
                    options: Optional[Mapping] = None) -> dict:
    """The small JSON-serialisable state of a reader.

    Parameters
    ----------
    cursor : ReaderCursor
        Where the next row comes from.
    dataset_fingerprint, options_fingerprint : str
        From :func:`fingerprint` / :func:`dataset_fingerprint`.
    seed : int or None
        The resolved seed (stored as a decimal string when its magnitude is 2**53 or more).
    extra : dict, optional
        JSON-serialisable details (default: ``cursor.extra``).
    options : dict, optional
        The options that ``options_fingerprint`` hashes; stored so a refused resume can say which differ.

    Raises
    ------
    PetastormStateError
        ``extra`` or ``options`` is not JSON-serialisable (the message names it).
    """
    extra = dict(cursor.extra if extra is None else extra)
    state = {
        KEY_VERSION: STATE_VERSION,
        KEY_DATASET_FINGERPRINT: str(dataset_fingerprint),
        KEY_OPTIONS_FINGERPRINT: str(options_fingerprint),
        KEY_SEED: _encode_int(seed),
        KEY_EPOCH: int(cursor.epoch),
        KEY_POSITION: int(cursor.position),
        KEY_ROWS_INTO_ITEM: int(cursor.rows_into_item),
        KEY_EXTRA: extra,
    }
    if options is not None:
        state[KEY_OPTIONS] = dict(options)
    for key in (KEY_EXTRA, KEY_OPTIONS):
        if key in state:
            try:
                state[key] = json.loads(_canonical_json(state[key]))
            except (TypeError, ValueError) as e:
                raise PetastormStateError(f"reader state '{key}' is not JSON-serialisable: {e}") from e
    return state


def _get_int(state: Mapping, key: str, minimum: Optional[int] = 0, allow_str: bool = False) -> int:
    if key not in state:
        raise PetastormStateError(f"malformed reader state: key '{key}' is missing "
                                  f"(keys present: {sorted(map(str, state))})")
    value = state[key]
    if allow_str and isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            raise PetastormStateError(
                f"malformed reader state: '{key}' must be an integer, got {state[key]!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise PetastormStateError(
            f"malformed reader state: '{key}' must be an integer, got {value!r} ({type(value).__name__})")
    if minimum is not None and value < minimum:
        raise PetastormStateError(f"malformed reader state: '{key}' must be >= {minimum}, got {value}")
    return int(value)


def _get_str(state: Mapping, key: str) -> str:
    if key not in state:
        raise PetastormStateError(f"malformed reader state: key '{key}' is missing "
                                  f"(keys present: {sorted(map(str, state))})")
    if not isinstance(state[key], str):
        raise PetastormStateError(
            f"malformed reader state: '{key}' must be a string, got {state[key]!r}")
    return state[key]


def describe_differences(saved: Mapping, current: Mapping, noun: str) -> list[str]:
    """One phrase per key whose value differs between a saved state and now, in key order:
    ``"batch_size (saved 8, now 16)"``; a key only saved is "not {noun}", one only current "not in the saved
    state"."""
    out = []
    for key in sorted(set(saved) | set(current)):
        if key not in current:
            out.append(f"{key} (saved {saved[key]!r}, not {noun})")
        elif key not in saved:
            out.append(f"{key} (not in the saved state, now {current[key]!r})")
        elif saved[key] != current[key]:
            out.append(f"{key} (saved {saved[key]!r}, now {current[key]!r})")
    return out


def differing_options(saved: Mapping, current: Mapping) -> list[str]:
    """:func:`describe_differences` of two readers' options, compared as their JSON forms."""
    return describe_differences(json.loads(_canonical_json(dict(saved))), json.loads(_canonical_json(dict(current))),
                                "an option of this reader")


def _same_but_field_order(saved: Any, current: Optional[Mapping], saved_fp: str, current_fp: str) -> bool:
    """True when the saved options are this reader's but for the order of ``fields`` (the same fields), and both
    fingerprints are those of the options: the order of the fields changes no row nor its place in the plan
    (a state of an earlier petastorm that listed a plain store's Hive partition keys last resumes)."""
    if not isinstance(saved, Mapping) or current is None:
        return False
    saved_fields, now_fields = saved.get("fields"), current.get("fields")
    if not (isinstance(saved_fields, list) and isinstance(now_fields, list)
            and sorted(map(str, saved_fields)) == sorted(map(str, now_fields))):
        return False
    try:
        return fingerprint(dict(saved)) == saved_fp and fingerprint(dict(saved, fields=now_fields)) == current_fp
    except Exception:  # options of another layout: compared as usual
        return False


def older_layout_hint(saved: Mapping, current: Mapping) -> str:
    """Why a state of an earlier petastorm with the same arguments is refused (its plan differs), or ''."""
    hints = []
    if "drop_slices" in current and "drop_slices" not in saved and saved.get("drop") == current.get("drop"):
        hints.append("a state saved by an earlier petastorm cut row groups into shuffle_row_drop_partitions "
                     "slices the other way round (0.12.1's cut: the earlier slices take the extra rows)")
    now_rg, saved_rg = str(current.get("row_groups", "")), str(saved.get("row_groups", ""))
    if "/" in now_rg and "/" not in saved_rg:
        hints.append("a state saved by an earlier petastorm sharded and planned after the rowgroup_selector and "
                     "the predicate on partition keys (0.12.1's order: sharding first)")
    if not hints:
        return ""
    return (" (if the arguments are the same: " + "; ".join(hints) + "; resuming from it would lose or repeat "
            "rows: start the epoch again without resume_from)")


def check_state_dict(state: Any, dataset_fingerprint: str, options_fingerprint: str,
                     options: Optional[Mapping] = None, seed: Optional[int] = None) -> ReaderCursor:
    """Validate a saved state against this reader and return its cursor.

    Parameters
    ----------
    state : dict
        From :func:`make_state_dict` (possibly through a JSON round trip).
    dataset_fingerprint, options_fingerprint : str
        This reader's fingerprints.
    options : dict, optional
        This reader's options (what ``options_fingerprint`` hashes), to name the options that differ.
    seed : int, optional
        The seed this reader was given explicitly; None accepts the saved seed.

    Returns
    -------
    ReaderCursor
        With ``seed`` and ``extra`` from the state.

    Raises
    ------
    PetastormStateError
        Not a dict, unknown version, a key missing or of the wrong type, a different dataset, different
        options (naming them when the state holds its options), or a seed other than the saved one.
    """
    if not isinstance(state, Mapping):
        raise PetastormStateError(
            f"reader state must be a dict from Reader.state_dict(), got {type(state).__name__}")
    version = _get_int(state, KEY_VERSION, minimum=None)
    if version != STATE_VERSION:
        newer = ""
        if version > STATE_VERSION:
            newer = " (written by a newer petastorm: upgrade to resume from it)"
        raise PetastormStateError(
            f"unknown reader state version {version}; this petastorm reads version {STATE_VERSION}{newer}")
    saved_dataset = _get_str(state, KEY_DATASET_FINGERPRINT)
    saved_options = _get_str(state, KEY_OPTIONS_FINGERPRINT)
    epoch = _get_int(state, KEY_EPOCH)
    position = _get_int(state, KEY_POSITION)
    rows_into_item = _get_int(state, KEY_ROWS_INTO_ITEM)
    if KEY_SEED not in state:
        raise PetastormStateError(f"malformed reader state: key '{KEY_SEED}' is missing")
    saved_seed = None if state[KEY_SEED] is None else _get_int(state, KEY_SEED, minimum=None, allow_str=True)
    extra = state.get(KEY_EXTRA, {})
    if not isinstance(extra, Mapping):
        raise PetastormStateError(f"malformed reader state: '{KEY_EXTRA}' must be a dict, got {extra!r}")

    if saved_dataset != dataset_fingerprint:
        raise PetastormStateError(
            f"reader state was saved for a different dataset (dataset fingerprint {saved_dataset}, this "
            f"reader's dataset is {dataset_fingerprint}): the files, their row groups or the selected "
            f"row groups differ. Resume with the same dataset and the same selectors/filters")
    if saved_options != options_fingerprint and not _same_but_field_order(state.get(KEY_OPTIONS), options,
                                                                          saved_options, options_fingerprint):
        detail = ""
        saved_opts = state.get(KEY_OPTIONS)
        if options is not None and isinstance(saved_opts, Mapping):
            diffs = differing_options(saved_opts, options)
            if diffs:
                detail = ": " + "; ".join(diffs) + older_layout_hint(saved_opts, options)
        raise PetastormStateError(
            f"reader state was saved with different reader options (options fingerprint {saved_options}, "
            f"this reader's is {options_fingerprint}){detail}. Resume with the options the state was "
            f"saved with")
    if seed is not None and saved_seed is not None and int(seed) != saved_seed:
        raise PetastormStateError(
            f"reader state was saved with seed={saved_seed}, this reader has seed={seed}: resume with "
            f"seed={saved_seed} or seed=None")
    return ReaderCursor(epoch=epoch, position=position, rows_into_item=rows_into_item, seed=saved_seed,
                        extra=dict(extra))


def check_cursor_in_plan(cursor: ReaderCursor, plan: Sequence) -> None:
    """Refuse a cursor that points outside its epoch's plan (a list of ``WorkItem``).

    ``position == len(plan)`` with ``rows_into_item == 0`` is the end of the epoch and is allowed.
    ``rows_into_item`` may not exceed the item's rows before predicates.
    """
    n = len(plan)
    if cursor.position > n:
        raise PetastormStateError(
            f"reader state points at item {cursor.position} of epoch {cursor.epoch}, whose plan has only "
            f"{n} items")
    limit = plan[cursor.position].num_rows if cursor.position < n else 0
    if cursor.rows_into_item > limit:
        raise PetastormStateError(
            f"reader state says {cursor.rows_into_item} rows were read from item {cursor.position} of "
            f"epoch {cursor.epoch}, which has {limit} rows")
