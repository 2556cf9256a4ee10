"""Merging the reader states of every rank of a balanced job into one job state (elastic resume).

See :mod:`petastorm.reader_impl.elastic` for the design; ``petastorm.merge_state_dicts`` is the public
entry point (it also merges loader states).
"""
from __future__ import annotations

import json
from typing import Mapping, Sequence

from petastorm.errors import PetastormStateError
from petastorm.reader_impl.elastic import (
    JOB_KIND,
    JOB_VERSION,
    KEY_ELASTIC,
    check_ranges,
    checked_epochs,
    checked_int,
    normalize_ranges,
    ranges_size,
    shardless_options,
)

__all__ = ["merge_reader_states"]


def _ended(rec: Mapping, limit: int) -> bool:
    """Whether a rank's record says its reader read all of its epochs (``limit`` of them)."""
    if int(rec["epoch"]) >= limit:
        return True
    last = (rec.get("epochs") or {}).get(str(limit - 1))
    return int(rec["epoch"]) == limit - 1 and bool(last and last.get("complete"))


def _check_record(state: Mapping, rec: Mapping, i: int) -> None:
    """The fields of a rank's elastic record that the merge uses, checked (a PetastormStateError naming
    ``states[i]`` and the field, not a bare KeyError or TypeError from inside the merge)."""
    where = f"states[{i}]['extra'][{KEY_ELASTIC!r}]"
    for key in ("world", "rank", "epoch", "total", "epochs"):
        if key not in rec:
            raise PetastormStateError(f"{where} has no {key!r}: the state was changed after state_dict() or comes "
                                      f"from another petastorm version")
    world = checked_int(rec["world"], f"{where}['world']", 1)
    if checked_int(rec["rank"], f"{where}['rank']") >= world:
        raise PetastormStateError(f"{where}['rank'] is {rec['rank']}, not a rank of shard_count={world}")
    checked_int(rec["epoch"], f"{where}['epoch']")
    checked_int(rec["total"], f"{where}['total']")
    for at, ep, span in checked_epochs(rec["epochs"], f"{where}['epochs']"):
        for part in ("consumed", "base", "read"):
            if part in ep:
                check_ranges(ep[part], span, f"{at}[{part!r}]")
    limit = (state.get("extra") or {}).get("epoch_limit")
    if limit is not None:
        checked_int(limit, f"states[{i}]['extra']['epoch_limit']")


def merge_reader_states(states: Sequence[Mapping], prefix: int = 0) -> dict:
    """Merge the reader states of every rank of a balanced job into one job state.

    Parameters
    ----------
    states : sequence of dict
        ``reader.state_dict()`` of ranks ``0..W-1`` (any order), taken at the same checkpoint.
    prefix : int
        Rows held by the loaders over these readers (dealt first on resume).

    Returns
    -------
    dict
        A JSON-serialisable job state (``kind == JOB_KIND``).

    Raises
    ------
    PetastormStateError
        See the module docstring (each message says which rank and why).
    """
    from petastorm.reader_impl.reader_state import fingerprint

    states = list(states)
    if not states:
        raise PetastormStateError("merge_state_dicts needs the states of every rank, got none")
    recs = []
    for i, s in enumerate(states):
        if not isinstance(s, Mapping) or "dataset_fingerprint" not in s:
            raise PetastormStateError(f"states[{i}] is not a reader state_dict() (got {type(s).__name__})")
        extra = s.get("extra")
        if extra is not None and not isinstance(extra, Mapping):
            raise PetastormStateError(f"states[{i}]['extra'] must be a dict, got {type(extra).__name__}")
        if not isinstance(s.get("options") or {}, Mapping):
            raise PetastormStateError(f"states[{i}]['options'] must be a dict, got {type(s['options']).__name__}")
        rec = (extra or {}).get(KEY_ELASTIC)
        if not isinstance(rec, Mapping):
            raise PetastormStateError(
                f"states[{i}] cannot be resumed at another world size: its reader was not made with "
                f"cur_shard, shard_count and shard_mode='balanced' (or it reads ngrams)")
        if rec.get("exact") is not True:
            raise PetastormStateError(f"states[{i}]: {rec.get('exact')}")
        _check_record(s, rec, i)
        recs.append(rec)
    first = states[0]
    for i, s in enumerate(states):
        if s["dataset_fingerprint"] != first["dataset_fingerprint"]:
            raise PetastormStateError(f"states[{i}] was saved for another dataset than states[0] (dataset "
                                      f"fingerprints {s['dataset_fingerprint']} and {first['dataset_fingerprint']})")
        if json.dumps(shardless_options(s.get("options") or {}), sort_keys=True, default=str) != \
                json.dumps(shardless_options(first.get("options") or {}), sort_keys=True, default=str):
            raise PetastormStateError(f"states[{i}] was saved with other reader options than states[0]: all ranks "
                                      f"must use the same options (only cur_shard differs)")
    worlds = {int(r["world"]) for r in recs}
    if len(worlds) != 1:
        raise PetastormStateError(f"the states come from jobs of different world sizes {sorted(worlds)}")
    world = worlds.pop()
    ranks = sorted(int(r["rank"]) for r in recs)
    if ranks != list(range(world)):
        missing = sorted(set(range(world)) - set(ranks))
        twice = sorted({r for r in ranks if ranks.count(r) > 1})
        raise PetastormStateError(
            f"merge_state_dicts needs the state of every rank 0..{world - 1} exactly once (shard_count={world}): "
            + (f"missing ranks {missing}" if missing else "") + ("; " if missing and twice else "")
            + (f"ranks given more than once {twice}" if twice else ""))
    limits = [(s.get("extra") or {}).get("epoch_limit") for s in states]
    limit = None if None in limits else max(limits)
    for s, r, lim in zip(states, recs, limits):
        # a reader whose loader has not reset it for the next pass yet: it ended its epochs
        if lim != limit and not (lim is not None and _ended(r, lim)):
            raise PetastormStateError(f"the ranks' readers were made with different num_epochs or reset() a "
                                      f"different number of times (epoch limits {limits})")
    m = min(int(r["epoch"]) for r in recs)
    late = [int(r["rank"]) for r in recs if int(r["epoch"]) > m + 1]
    if late:
        raise PetastormStateError(
            f"ranks {late} are more than one epoch ahead of rank(s) at epoch {m}: the checkpoint is not of one "
            f"step of a synchronised job (their earlier epochs are not in their states)")
    epochs: dict = {}
    for r in recs:
        for key, ep in (r.get("epochs") or {}).items():
            e = int(key)
            if e < m:
                continue
            cur = epochs.setdefault(e, {"span": int(ep["span"]), "consumed": [], "complete": 0})
            cur["complete"] += bool(ep.get("complete"))
            if cur["span"] != int(ep["span"]):
                raise PetastormStateError(f"the ranks disagree on the size of epoch {e} ({cur['span']} and "
                                          f"{ep['span']} positions): states of different checkpoints?")
            cur["consumed"].extend(ep["consumed"])
    partial = {}
    for e, ep in sorted(epochs.items()):
        consumed = normalize_ranges(ep["consumed"])
        # complete: every position read, or every rank read its whole range (a normal epoch that ran to its
        # end leaves out the 'drop' tail, as an uninterrupted job does)
        ep["done"] = ranges_size(consumed) >= ep["span"] or ep["complete"] == world
        if ep["done"] or (not consumed and e != m):
            continue  # complete, or a later epoch not started: a normal epoch
        partial[str(e)] = {"span": ep["span"], "consumed": consumed}
    if partial:
        next_epoch = min(int(e) for e in partial)
    else:
        done = [e for e, ep in epochs.items() if ep["done"]]
        next_epoch = max(done) + 1 if done else m
    if limit is not None and next_epoch >= int(limit):
        next_epoch, partial = int(limit), {}
    if prefix and not partial and (limit is None or next_epoch < int(limit)):
        # held rows at an epoch boundary: deal them ahead of the next epoch, which is dealt too (no padding)
        partial[str(next_epoch)] = {"span": int(recs[0]["total"]), "consumed": []}
    opts = shardless_options(first.get("options") or {})
    # the seed of the lowest rank that has one (ranks made with seed=None each drew their own): a recorded seed,
    # whatever the order of ``states``, so that resuming the job twice plans the same epochs
    by_rank = sorted(zip((int(r["rank"]) for r in recs), states), key=lambda pair: pair[0])
    seed = next((s.get("seed") for _, s in by_rank if s.get("seed") is not None), None)
    return {"kind": JOB_KIND, "version": JOB_VERSION, "dataset_fingerprint": first["dataset_fingerprint"],
            "options_fingerprint": fingerprint(opts), "options": opts, "seed": seed,
            "world_size": world, "epoch_limit": limit, "next_epoch": next_epoch, "epochs": partial,
            "held": int(prefix)}

