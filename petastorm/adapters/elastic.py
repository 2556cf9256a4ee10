"""``merge_state_dicts``: one job state from the per-rank states of a checkpoint, for an elastic resume.

A rank's state is a reader's ``state_dict()`` or a loader's (``petastorm.pytorch`` ``DataLoader`` /
``BatchedDataLoader``, ``petastorm.jax`` ``JaxIterator``, :class:`~petastorm.adapters.BatchPipeline`).
Reader states merge into the reader job state of :mod:`petastorm.reader_impl.elastic`. A loader state
also holds rows taken from its reader and not yet yielded (shuffling buffer, partial batch, prefetched
batches): the merged state carries them (``held``, in rank order) and deals them to the new ranks ahead
of the rows still to read, so none is lost or repeated and every new rank gets the same number of rows
(at most one apart). Rows waiting at the end of a reader batch that the loader state saves as "re-read
from here" are given back to the job as positions instead (when they are the last positions read).
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import numpy as np

from petastorm.adapters.column_buffer import concat_columns, num_rows, slice_columns
from petastorm.adapters.state_codec import check_digest, decode_state, encode_state
from petastorm.errors import PetastormStateError
from petastorm.reader_impl.elastic import KEY_ELASTIC, is_job_state, take_ranges
from petastorm.reader_impl.elastic_merge import merge_reader_states

__all__ = ["LOADER_JOB_KIND", "merge_state_dicts", "is_loader_job_state", "check_loader_job", "held_share",
           "pipeline_parts"]

#: ``kind`` of a merged loader job state.
LOADER_JOB_KIND = "petastorm.loader_job_state"

_JAX_KIND = "petastorm.jax.JaxIterator"


def is_loader_job_state(state: Any) -> bool:
    """True for a state merged from loader states by :func:`merge_state_dicts`."""
    return isinstance(state, Mapping) and state.get("kind") == LOADER_JOB_KIND


def _give_back(reader_state: dict, rows: int) -> dict:
    """The reader state with its last ``rows`` positions read marked unread (copy)."""
    if not rows:
        return reader_state
    extra = dict(reader_state.get("extra") or {})
    rec = dict(extra[KEY_ELASTIC])
    epochs = {k: dict(v) for k, v in rec["epochs"].items()}
    ep = epochs[str(rec["epoch"])]
    read = ep.get("read")
    if read is None or sum(b - a for a, b in read) < rows:
        raise PetastormStateError(
            f"rank {rec['rank']}: {rows} rows waiting in the loader are not among the positions its reader read "
            f"in epoch {rec['epoch']}: resume at the same world size")
    from petastorm.reader_impl.elastic import normalize_ranges, ranges_size

    read = take_ranges(read, 0, ranges_size(read) - rows)
    ep["read"] = read
    ep["consumed"] = normalize_ranges(list(ep.get("base", [])) + read)
    ep["complete"] = False
    epochs[str(rec["epoch"])] = ep
    rec["epochs"] = epochs
    extra[KEY_ELASTIC] = rec
    out = dict(reader_state)
    out["extra"] = extra
    return out


def _read_ahead_filled(reader_states: list) -> list:
    """The reader states with the epochs a rank's reader read ahead of the slowest rank filled in.

    A loader prefetches: its reader may be several epochs ahead of the batches it served (it holds their rows)
    when an epoch is short next to a few batches. A reader's record keeps only its current and previous epoch;
    the epochs before them, from the slowest rank's epoch ``m`` on, were read to their end: each gets a complete
    record (the rank's range of a normal epoch, or its part of a dealt one, whose deal another rank still
    records), and the record's epoch becomes ``m + 1`` so that the merge takes the checkpoint as the one step of a
    synchronised job it is. (Copies; states without records are left to the merge's checks.)
    """
    from petastorm.reader_impl.elastic import EpochDeal, normalize_ranges
    from petastorm.reader_impl.plan_balanced import balanced_shard_bounds

    recs = [(s.get("extra") or {}).get(KEY_ELASTIC) if isinstance(s, Mapping) else None for s in reader_states]
    if not recs or any(not isinstance(r, Mapping) or "epoch" not in r for r in recs):
        return reader_states
    m = min(int(r["epoch"]) for r in recs)
    deals = {int(k): d for r in recs for k, d in (r.get("deals") or {}).items()}
    out = []
    for state, rec in zip(reader_states, recs):
        epoch = int(rec["epoch"])
        if epoch <= m + 1:
            out.append(state)
            continue
        world, rank, total = int(rec["world"]), int(rec["rank"]), int(rec["total"])
        remainder = (state.get("options") or {}).get("remainder", "drop")
        epochs = {k: dict(v) for k, v in (rec.get("epochs") or {}).items()}
        for e in range(m, epoch):
            if str(e) in epochs:
                continue
            if e in deals:
                deal = EpochDeal.from_dict({**deals[e], "rank": rank})
                read, span, base = deal.ranges(), deal.span, [list(r) for r in deal.base]
            else:
                lo, hi = balanced_shard_bounds(total, world, rank, remainder)
                read, base = ([[lo, hi]] if hi > lo else []), []
                span = total if remainder == "drop" else world * -(-total // world)
            epochs[str(e)] = {"span": span, "consumed": normalize_ranges(base + [list(r) for r in read]),
                              "base": base, "read": [list(r) for r in read], "complete": True}
        extra = dict(state.get("extra") or {})
        extra[KEY_ELASTIC] = {**rec, "epochs": epochs, "epoch": m + 1}
        out.append({**state, "extra": extra})
    return out


def pipeline_parts(state: Mapping) -> tuple[dict, list]:
    """``(reader state, held column batches)`` of a :class:`BatchPipeline` state."""
    batcher = state["batcher"]
    reader_state = batcher["reader"]
    held = []
    buffer = batcher.get("buffer")
    if buffer is not None and num_rows(buffer.get("rows") or {}):
        held.append(dict(buffer["rows"]))
    pending = batcher.get("pending") or {}
    replay = batcher.get("replay")
    if num_rows(pending):
        held.append(dict(pending))  # (a replay is ignored: the rows are carried)
    elif replay:
        reader_state = _give_back(reader_state, int(replay["rows"]) - int(replay["skip"]))
    for batch in state.get("ready") or []:
        if num_rows(batch):
            held.append(dict(batch))
    return reader_state, held


def _loader_parts(state: Mapping, i: int) -> tuple[str, dict, Optional[dict], list, dict]:
    """``(loader name, settings/meta, reader state, held rows, extra)`` of one rank's loader state."""
    check_digest(state, f"states[{i}]")
    if state.get("kind") == _JAX_KIND:
        # (decoded: a JaxIterator state may hold its arrays encoded, as the torch loaders' states do)
        reader_state, held = pipeline_parts(decode_state(state["core"]))
        pass_ended = state.get("pass_ended", False)  # absent from the states saved before it was recorded
        if not isinstance(pass_ended, bool):
            raise PetastormStateError(f"states[{i}]: malformed make_jax_iterator state: 'pass_ended' must be True or "
                                      f"False, got {pass_ended!r}")
        # in_pass and passes_done as the torch loaders': a rank whose loop ended (StopIteration seen) has done its
        # one pass and is between passes (the merged job then resumes with the next pass, as theirs)
        meta = {"settings": state["core"].get("settings"), "in_pass": not pass_ended, "passes_done": int(pass_ended)}
        return "JaxIterator", meta, reader_state, held, {}
    if "batcher" in state and "settings" in state:
        reader_state, held = pipeline_parts(state)
        return "BatchPipeline", {"settings": state.get("settings")}, reader_state, held, {}
    if "loader" in state and "passes_done" in state:
        state = decode_state(state)
        name = state["loader"]
        meta = {"settings": state["settings"], "passes_done": state["passes_done"], "in_pass": state["in_pass"],
                "shuffle_seed": state.get("shuffle_seed")}
        if name == "InMemBatchedDataLoader":
            raise PetastormStateError(f"states[{i}]: an InMemBatchedDataLoader holds the whole shard in memory and "
                                      f"reads it again every epoch; it cannot be resumed at another world size")
        if not state["in_pass"]:
            return name, meta, state["reader"], [], {}
        body = state["body"]
        if name == "BatchedDataLoader" or body.get("path") == "columns":
            reader_state, held = pipeline_parts(body["pipeline"])
            return name, meta, reader_state, held, {}
        if body.get("path") == "rows":  # DataLoader with a custom collate_fn: rows are dicts
            items = list((body.get("buffer") or {}).get("items") or [])
            items += list(body.get("partial_batch") or [])
            return name, meta, body["reader"], items, {"rows": True}
    raise PetastormStateError(f"states[{i}] is not a reader or loader state_dict() of petastorm (keys "
                              f"{sorted(map(str, state))})")


def merge_state_dicts(states: Sequence[Mapping]) -> dict:
    """Merge the ``state_dict()`` of every rank of a checkpoint into one job state.

    Resume it at any world size ``W2``: ``make_reader``/``make_batch_reader(..., cur_shard=r,
    shard_count=W2, shard_mode='balanced', resume_from=job)``, or a loader's ``load_state_dict(job)``
    over such a reader. Over the job, every row of the epoch is read exactly once, and the new ranks get
    the same number of rows of the interrupted epoch (at most one apart).

    Parameters
    ----------
    states : sequence of dict
        The states of ranks ``0..W1-1`` (any order), all readers or all loaders of one class, made with
        ``shard_mode='balanced'``.

    Returns
    -------
    dict
        Plain values only (held rows are encoded as in the torch loaders' states), so ``torch.save`` /
        ``torch.load(weights_only=True)`` and pickle round-trip it.

    Raises
    ------
    PetastormStateError
        A state is missing, repeated, of another kind, dataset or options, or cannot be re-dealt (the
        message says why; see ``docs/architecture.md``, "Elastic resume").
    """
    states = list(states)
    if not states:
        raise PetastormStateError("merge_state_dicts needs the states of every rank, got none")
    for i, s in enumerate(states):
        if not isinstance(s, Mapping):
            raise PetastormStateError(f"states[{i}] must be a dict from state_dict(), got {type(s).__name__}")
        if is_job_state(s) or is_loader_job_state(s):
            raise PetastormStateError(f"states[{i}] is already a merged job state: resume from it, or save the "
                                      f"per-rank states of the resumed job and merge those")
    if all("dataset_fingerprint" in s for s in states):
        return merge_reader_states(states)
    parts = [_loader_parts(s, i) for i, s in enumerate(states)]
    names = {p[0] for p in parts}
    if len(names) != 1:
        raise PetastormStateError(f"the states come from different loaders {sorted(names)}: merge the states of "
                                  f"one loader per rank")
    name = names.pop()
    metas = [p[1] for p in parts]
    if any(m.get("settings") != metas[0].get("settings") for m in metas):
        raise PetastormStateError(f"the ranks' {name} states differ in settings ({[m.get('settings') for m in metas]})"
                                  f": every rank must use the same loader settings")
    passes = [m.get("passes_done") for m in metas]
    if passes[0] is not None:
        low = min(passes)
        # a rank may have ended the pass the others are still in (its share was one row shorter)
        if any(p_ != low and (p_ != low + 1 or m.get("in_pass")) for p_, m in zip(passes, metas)):
            raise PetastormStateError(f"the ranks' {name} states differ in passes_done ({passes}): take every rank's "
                                      f"state at the same step")
        for m in metas:
            m["passes_done"] = low
    reader_states = [p[2] for p in parts]
    if any(r is None for r in reader_states):
        raise PetastormStateError(f"a {name} state holds no reader state: its reader has no state_dict()")
    # held rows in rank order (the rank of each reader state)
    order = sorted(range(len(parts)), key=lambda j: (reader_states[j].get("extra") or {}).get(KEY_ELASTIC, {})
                   .get("rank", j))
    rows_form = any(p[4].get("rows") for p in parts)
    if rows_form:
        held: Any = [row for j in order for row in parts[j][3]]
        n_held = len(held)
    else:
        chunks = [c for j in order for c in parts[j][3]]
        held = concat_columns(chunks) if chunks else {}
        n_held = num_rows(held) if chunks else 0
    job = merge_reader_states(_read_ahead_filled(reader_states), prefix=n_held)
    # the loaders' base shuffling seed (torch loaders over readers made without a seed draw it from the global
    # RNG): the lowest rank's (the ranks' common one when they were seeded alike, so the later passes shuffle as
    # before); every new rank takes it, so resuming the job twice gives the same order (none is drawn anew)
    seed = next((metas[j].get("shuffle_seed") for j in order if metas[j].get("shuffle_seed") is not None), None)
    return {"kind": LOADER_JOB_KIND, "version": 1, "loader": name, "settings": metas[0].get("settings"),
            "passes_done": metas[0].get("passes_done"),
            "shuffle_seed": seed,
            "in_pass": any(m.get("in_pass", True) for m in metas) or bool(n_held),
            "reader": job, "held": encode_state(held), "held_rows": n_held}


def _decoded_held(job: Mapping) -> Any:
    """The held rows of a loader job state, decoded: a columns dict or a list of rows."""
    held = decode_state(job.get("held"))
    if held is not None and not isinstance(held, (list, Mapping)):
        raise PetastormStateError(f"malformed job state: 'held' must hold the rows the loaders held (encoded "
                                  f"columns or a list of rows), got {type(held).__name__} (changed after "
                                  f"merge_state_dicts()?)")
    return held


def check_loader_job(job: Mapping) -> None:
    """The fields of a loader job state that a loader's ``load_state_dict`` uses, checked.

    Raises
    ------
    PetastormStateError
        Naming the field (not a bare KeyError or ValueError from inside the loader's resume).
    """
    if not isinstance(job.get("reader"), Mapping):
        raise PetastormStateError(f"malformed job state: 'reader' must be the merged state of the readers (a dict), "
                                  f"got {type(job.get('reader')).__name__} (changed after merge_state_dicts()?)")
    passes = job.get("passes_done")
    if passes is not None and (isinstance(passes, bool) or not isinstance(passes, int) or passes < 0):
        raise PetastormStateError(f"malformed job state: 'passes_done' must be an integer >= 0 or None, got "
                                  f"{passes!r}")
    if not isinstance(job.get("in_pass", True), bool):
        raise PetastormStateError(f"malformed job state: 'in_pass' must be True or False, got {job['in_pass']!r}")
    _decoded_held(job)


def held_share(job: Mapping, reader: Any) -> Any:
    """The held rows of a loader job state dealt to ``reader``'s rank (columns dict or list of rows).

    Call after ``reader.load_state_dict(job["reader"])``.
    """
    lo, hi = getattr(reader, "_elastic_held", (0, 0))
    held = _decoded_held(job)
    if hi <= lo or not held:
        return [] if isinstance(held, list) else {}
    if isinstance(held, list):
        return held[lo:hi]
    return {k: np.asarray(v) for k, v in slice_columns(held, lo, hi).items()}
