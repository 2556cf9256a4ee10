"""Elastic resume: continue a job checkpointed at ``W1`` ranks on ``W2`` ranks (``shard_mode='balanced'``).

Design ("consumed ranges of one global sequence"; see ``docs/architecture.md``, "Elastic resume"):

* Every epoch of the balanced mode has one *global sequence* of rows (:func:`plan.balanced_sequence`)
  that does not depend on the world size. A *position* is an offset in it; positions at or past its
  total wrap to its start (``balanced_remainder='pad'``).
* A normal epoch deals the contiguous range ``[k * per, (k + 1) * per)`` to rank ``k``. The epoch's
  *span* is the total (``'drop'``: the tail the deal leaves out is still owed) or ``W * per`` (``'pad'``).
* Every rank's ``state_dict()`` carries, in ``extra["elastic"]``, the positions it consumed in its
  current epoch (and all of its previous epoch's) as ``[lo, hi)`` ranges. ``merge_reader_states``
  (:mod:`~petastorm.reader_impl.elastic_merge`) unions them into one *job state*: for the (at most two)
  epochs that are partly read, the span and the consumed ranges.
* On resume, each partly read epoch's *remaining* positions (the span minus the consumed ranges, in
  sequence order), preceded by ``prefix`` rows held by the loaders at the checkpoint (the first epoch
  only), are dealt to the ``W2`` ranks as contiguous slices whose sizes differ by at most one
  (:class:`EpochDeal`). No row is dropped or padded in such an epoch. Later epochs are normal epochs at
  ``W2``.

Limits (each refused with a :class:`PetastormStateError` saying why): only ``shard_mode='balanced'``
readers without ngrams; the states of all ranks ``0..W1-1``, exactly once; all ranks within one epoch of
each other; a row reader (``make_reader``) stopped inside an item with ``shuffle_rows=True`` or a
``predicate`` (the rows read from it are then not a range of positions).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Optional, Sequence

import numpy as np

from petastorm.errors import PetastormStateError

__all__ = [
    "JOB_KIND",
    "JOB_VERSION",
    "KEY_ELASTIC",
    "EpochDeal",
    "check_ranges",
    "checked_epochs",
    "checked_int",
    "normalize_ranges",
    "subtract_ranges",
    "take_ranges",
    "ranges_size",
    "deal_bounds",
    "elastic_plan",
    "is_job_state",
    "shardless_options",
    "state_extra",
    "restore_deals",
    "load_job_state",
    "global_row",
]

#: ``kind`` of a merged job state (reader level).
JOB_KIND = "petastorm.job_state"
#: Layout version of a job state.
JOB_VERSION = 1
#: Key of the per-rank record in a reader state's ``extra``.
KEY_ELASTIC = "elastic"

_LOADER_JOB_KIND = "petastorm.loader_job_state"  # petastorm.adapters.elastic.LOADER_JOB_KIND

# options that may change between the checkpoint and the resume
_SHARD_KEYS = ("cur_shard", "shard_count")

Ranges = list  # list of [lo, hi) pairs, sorted and disjoint once normalised


# --- ranges ---------------------------------------------------------------------------------------------

def normalize_ranges(ranges: Sequence[Sequence[int]]) -> Ranges:
    """Sorted, merged, non-empty ``[lo, hi)`` ranges (lists of two ints)."""
    out: list = []
    for lo, hi in sorted((int(a), int(b)) for a, b in ranges if int(b) > int(a)):
        if out and lo <= out[-1][1]:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return out


def ranges_size(ranges: Sequence[Sequence[int]]) -> int:
    """Positions covered by disjoint ranges."""
    return int(sum(int(b) - int(a) for a, b in ranges))


def subtract_ranges(span: int, consumed: Sequence[Sequence[int]]) -> Ranges:
    """``[0, span)`` minus the normalised ``consumed`` ranges, in position order."""
    out, at = [], 0
    for lo, hi in consumed:
        if lo > at:
            out.append([at, min(lo, span)])
        at = max(at, hi)
    if at < span:
        out.append([at, span])
    return [r for r in out if r[1] > r[0]]


def take_ranges(ranges: Sequence[Sequence[int]], lo: int, hi: int) -> Ranges:
    """Positions ``[lo, hi)`` of the sequence formed by concatenating ``ranges``, as ranges."""
    out, at = [], 0
    for a, b in ranges:
        n = b - a
        s, e = max(lo - at, 0), min(hi - at, n)
        if e > s:
            out.append([a + s, a + e])
        at += n
        if at >= hi:
            break
    return out


def deal_bounds(total: int, world: int, rank: int, offset: int = 0) -> tuple[int, int]:
    """Slice ``[lo, hi)`` of ``total`` rows dealt to ``rank`` of ``world``, contiguous in rank order.

    Every rank gets ``total // world`` rows; the ``total % world`` ranks from ``offset`` on (cyclically) get
    one more. Giving the next dealt epoch the offset where this one's extra rows ended keeps every rank's
    rows over both epochs at most one apart too.
    """
    q, r = divmod(int(total), int(world))

    def extra(k: int) -> int:
        return int((k - offset) % world < r)

    lo = rank * q + sum(extra(k) for k in range(rank))
    return lo, lo + q + extra(rank)


# --- the deal of a partly read epoch ----------------------------------------------------------------------

@dataclass(frozen=True)
class EpochDeal:
    """How a partly read epoch is dealt to the ranks of the resumed job.

    Attributes
    ----------
    epoch : int
    span : int
        Positions of the epoch (``[0, span)``).
    base : tuple of (int, int)
        Positions consumed before this deal (normalised).
    prefix : int
        Rows held by the loaders at the checkpoint, dealt ahead of the remaining positions.
    world, rank : int
        The resumed job's world size and this rank.
    """

    epoch: int
    span: int
    base: tuple
    prefix: int
    world: int
    rank: int
    offset: int = 0

    @property
    def size(self) -> int:
        """Rows dealt in all: held rows and remaining positions."""
        return self.prefix + self.span - ranges_size(self.base)

    def bounds(self) -> tuple[int, int]:
        """This rank's slice of the combined sequence (held rows, then remaining positions)."""
        return deal_bounds(self.size, self.world, self.rank, self.offset)

    def ranges(self) -> Ranges:
        """The positions this rank reads, in reading order."""
        lo, hi = self.bounds()
        p = self.prefix
        return take_ranges(subtract_ranges(self.span, self.base), max(lo, p) - p, max(hi, p) - p)

    def held_slice(self) -> tuple[int, int]:
        """The held rows (indexes into the job's held rows) dealt to this rank."""
        lo, hi = self.bounds()
        return min(lo, self.prefix), min(hi, self.prefix)

    def to_dict(self) -> dict:
        return {"epoch": self.epoch, "span": self.span, "base": [list(r) for r in self.base],
                "prefix": self.prefix, "world": self.world, "rank": self.rank, "offset": self.offset}

    @classmethod
    def from_dict(cls, d: Mapping) -> "EpochDeal":
        try:
            return cls(epoch=int(d["epoch"]), span=int(d["span"]),
                       base=tuple(tuple(r) for r in normalize_ranges(d["base"])), prefix=int(d["prefix"]),
                       world=int(d["world"]), rank=int(d["rank"]), offset=int(d.get("offset", 0)))
        except (KeyError, TypeError, ValueError) as e:
            raise PetastormStateError(f"malformed elastic deal in a reader state: {e!r}") from None


def elastic_plan(rows_per_group: Any, options: Any, deal: EpochDeal) -> list:
    """The WorkItems of this rank in a dealt epoch (positions ``0..n-1``)."""
    from petastorm.reader_impl.plan import items_to_plan
    from petastorm.reader_impl.plan_balanced import dealt_items

    rg, starts, stops, dealt = dealt_items(rows_per_group, options, deal.epoch, deal.ranges())
    return items_to_plan(rg, starts, stops, options, deal.epoch, dealt)


def _normal_span(total: int, world: int, remainder: str) -> int:
    return total if remainder == "drop" else world * -(-total // world)


# --- the reader side ---------------------------------------------------------------------------------------

def is_job_state(state: Any) -> bool:
    """True for a merged job state (from ``merge_reader_states`` / ``merge_state_dicts``), reader or
    loader level (a reader refuses the latter in :func:`load_job_state`)."""
    return isinstance(state, Mapping) and state.get("kind") in (JOB_KIND, _LOADER_JOB_KIND)


def shardless_options(options: Mapping) -> dict:
    """Reader options that must match between a checkpoint and an elastic resume."""
    return {k: v for k, v in dict(options).items() if k not in _SHARD_KEYS}


def _deals(reader: Any) -> dict:
    deals = getattr(reader, "_elastic_deals", None)
    if deals is None:
        deals = {}
        reader._elastic_deals = deals
    return deals


def _elastic_enabled(p: Any) -> bool:
    o = p.plan_options
    return o.sharded and o.shard_mode == "balanced" and p.ngram is None


def _total(p: Any) -> int:
    total = getattr(p, "_elastic_total", None)
    if total is None:
        total = int(np.asarray(p.plan_rows, dtype=np.int64).sum())
        p._elastic_total = total
    return total


def _deal_offsets(reader: Any, deal: EpochDeal) -> np.ndarray:
    cache = reader.__dict__.setdefault("_elastic_offsets", {})
    offsets = cache.get(deal.epoch)
    if offsets is None:
        from petastorm.reader_impl.plan import plan_row_offsets

        p = reader._p
        offsets = plan_row_offsets(elastic_plan(p.plan_rows, p.plan_options, deal))
        cache[deal.epoch] = offsets
    return offsets


def global_row(reader: Any, cursor: Any) -> Optional[int]:
    """Balanced mode: offset of the cursor's next row in its epoch's global sequence (None past the last
    epoch), as :func:`plan.locate_global_row`, with the epoch's item offsets cached on the reader (the
    plan of the running epoch is not kept, and regenerating it costs time per item at every call)."""
    from petastorm.reader_impl.plan import balanced_shard_bounds, make_epoch_plan, plan_row_offsets

    p = reader._p
    if p.epoch_limit is not None and cursor.epoch >= p.epoch_limit:
        return None
    cached = reader.__dict__.get("_elastic_row_offsets")
    if cached is None or cached[0] != cursor.epoch or cached[1] is not p.plan_options:
        plan = p.plans.get(cursor.epoch)
        if plan is None:
            plan = make_epoch_plan(p.plan_rows, p.plan_options, cursor.epoch)
        cached = (cursor.epoch, p.plan_options, plan_row_offsets(plan))
        reader._elastic_row_offsets = cached
    offsets = cached[2]
    n = len(offsets) - 1
    rows = cursor.rows_into_item
    in_plan = 0 <= cursor.position <= n
    item_rows = int(offsets[cursor.position + 1] - offsets[cursor.position]) if in_plan and cursor.position < n \
        else 0
    if not in_plan or rows > item_rows:
        raise PetastormStateError(f"reader cursor (epoch {cursor.epoch}, item {cursor.position}, {rows} rows "
                                  f"into it) is outside its plan of {n} items")
    if p.is_batched and rows:
        rows = item_rows  # a batch reader yields an item's rows in one batch
    o = p.plan_options
    start, _ = balanced_shard_bounds(_total(p), o.shard_count, o.cur_shard, o.balanced_remainder)
    return start + int(offsets[cursor.position]) + int(rows)


def _epoch_record(reader: Any, epoch: int, rows_done: Optional[int], global_row: Optional[int]) -> dict:
    """``{"span", "consumed"}`` of this rank in ``epoch``; ``rows_done`` None: the whole epoch."""
    p = reader._p
    o = p.plan_options
    deal = _deals(reader).get(epoch)
    if deal is not None:
        mine = deal.ranges()
        n = ranges_size(mine) if rows_done is None else rows_done
        read = take_ranges(mine, 0, n)
        return {"span": deal.span, "consumed": normalize_ranges(list(deal.base) + read),
                "base": [list(r) for r in deal.base], "read": read, "complete": n >= ranges_size(mine)}
    from petastorm.reader_impl.plan import balanced_shard_bounds

    total = _total(p)
    lo, hi = balanced_shard_bounds(total, o.shard_count, o.cur_shard, o.balanced_remainder)
    end = hi if rows_done is None and global_row is None else (global_row if global_row is not None
                                                                 else lo + rows_done)
    read = [[lo, end]] if end > lo else []
    return {"span": _normal_span(total, o.shard_count, o.balanced_remainder), "consumed": read, "base": [],
            "read": read, "complete": end >= hi}


def state_extra(reader: Any, cursor: Any, global_row: Optional[int]) -> dict:
    """The ``extra`` entries of a reader state for elastic resume (empty when the reader cannot).

    ``{"elastic": {"world", "rank", "epoch", "epochs": {str(epoch): {"span", "consumed"}}, "deals": {...},
    "exact": True | reason}}``: the positions consumed in the cursor's epoch and the previous one, and
    the deals of the dealt epochs not finished yet (a same-world-size resume rebuilds their plans).
    """
    p = reader._p
    if not _elastic_enabled(p):
        return {}
    o = p.plan_options
    epoch = cursor.epoch
    deals = _deals(reader)
    rec: dict = {"world": int(o.shard_count), "rank": int(o.cur_shard), "epoch": epoch, "exact": True,
                 "total": _total(p),
                 "epochs": {}, "deals": {str(e): d.to_dict() for e, d in deals.items() if e >= epoch - 1}}
    limit = p.epoch_limit
    if limit is not None and epoch >= limit:
        rec["epoch"] = int(limit)
        return {KEY_ELASTIC: rec}
    rows = cursor.rows_into_item
    deal = deals.get(epoch)
    if deal is not None:
        offsets = _deal_offsets(reader, deal)
        if rows and cursor.position < len(offsets) - 1:
            item_rows = int(offsets[cursor.position + 1] - offsets[cursor.position])
            if p.is_batched:
                rows = item_rows
            elif rows < item_rows:
                rec["exact"] = _inexact_reason(reader)
        done = int(offsets[min(cursor.position, len(offsets) - 1)]) + rows
        rec["epochs"][str(epoch)] = _epoch_record(reader, epoch, done, None)
    else:
        if rows and not p.is_batched:
            rec["exact"] = _inexact_reason(reader)
        rec["epochs"][str(epoch)] = _epoch_record(reader, epoch, None if global_row is None else 0, global_row)
    if epoch >= 1:
        rec["epochs"][str(epoch - 1)] = _epoch_record(reader, epoch - 1, None, None)
    for e in sorted(deals):
        if e > epoch:  # a later, partly read epoch of the job this reader resumed: its consumed positions too
            rec["epochs"][str(e)] = _epoch_record(reader, e, 0, None)
    return {KEY_ELASTIC: rec}


def _inexact_reason(reader: Any) -> Any:
    o = reader._p.plan_options
    opts = reader._options or {}
    why = []
    if o.shuffle_rows:
        why.append("shuffle_rows=True")
    if opts.get("predicate") is not None:
        why.append("a predicate")
    if not why:
        return True
    return (f"rank {o.cur_shard} stopped inside a work item of a make_reader reader with {' and '.join(why)}: "
            f"the rows it read from that item are not a range of positions, so they cannot be dealt to "
            f"another number of ranks. Resume at the same world size, or use make_batch_reader, or "
            f"shuffle_rows=False and no predicate (a loader's shuffling buffer shuffles rows instead)")


def checked_int(value: object, where: str, low: int = 0) -> int:
    """``value`` as an int ``>= low`` (bools refused), else a PetastormStateError naming ``where``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise PetastormStateError(f"{where} must be an integer >= {low}, got {value!r}: the state was changed after "
                                  f"state_dict() or comes from another petastorm version")
    return value


def check_ranges(ranges: object, span: int, where: str) -> None:
    """``ranges`` is a list of ``[start, stop]`` int pairs within ``[0, span]``, else a PetastormStateError naming
    ``where``."""
    if not isinstance(ranges, (list, tuple)) or any(
            not isinstance(r, (list, tuple)) or len(r) != 2 or any(isinstance(x, bool) or not isinstance(x, int)
                                                                   for x in r) or not 0 <= r[0] <= r[1] <= span
            for r in ranges):
        raise PetastormStateError(f"{where} must be a list of [start, stop] positions within [0, {span}], got "
                                  f"{ranges!r}: the state was changed after state_dict() or comes from another "
                                  f"petastorm version")


def checked_epochs(epochs: object, where: str) -> Iterator[tuple[str, Mapping, int]]:
    """Each epoch record of a state's ``epochs`` (``{epoch number: {'span': int, 'consumed': ranges, ...}}``),
    checked: ``(where it is, the record, its span)``; else a PetastormStateError naming ``where``."""
    if not isinstance(epochs, Mapping):
        raise PetastormStateError(f"{where} must be a dict, got {type(epochs).__name__}")
    for key, ep in epochs.items():
        at = f"{where}[{key!r}]"
        if not str(key).isdigit() or not isinstance(ep, Mapping) or "span" not in ep or "consumed" not in ep:
            raise PetastormStateError(f"{at} must be an epoch number's record with 'span' and 'consumed', got "
                                      f"{ep!r}")
        yield at, ep, checked_int(ep["span"], f"{at}['span']")


def _check_job(job: Mapping) -> None:
    """The fields of a job state that the resume uses, checked (a PetastormStateError naming the field, not a
    bare KeyError or TypeError from inside the resume)."""
    for key in ("next_epoch", "epochs"):
        if key not in job:
            raise PetastormStateError(f"malformed job state: no {key!r} (changed after merge_state_dicts()?)")
    checked_int(job["next_epoch"], "job state['next_epoch']")
    checked_int(job.get("held", 0), "job state['held']")
    if job.get("epoch_limit") is not None:
        checked_int(job["epoch_limit"], "job state['epoch_limit']")
    for at, ep, span in checked_epochs(job["epochs"], "job state['epochs']"):
        check_ranges(ep["consumed"], span, f"{at}['consumed']")


def restore_deals(reader: Any, extra: Mapping) -> None:
    """Same-world-size resume of a rank that was reading a dealt epoch: rebuild its deals and plans."""
    rec = extra.get(KEY_ELASTIC) if isinstance(extra, Mapping) else None
    if not isinstance(rec, Mapping) or not rec.get("deals"):
        return
    p = reader._p
    deals = _deals(reader)
    for d in rec["deals"].values():
        deal = EpochDeal.from_dict(d)
        deals[deal.epoch] = deal
        p.may_be_empty.add(deal.epoch)
        p.plans[deal.epoch] = elastic_plan(p.plan_rows, p.plan_options, deal)


def load_job_state(reader: Any, job: Mapping) -> None:
    """Make ``reader`` (rank ``cur_shard`` of ``shard_count``) continue a merged job state."""
    from petastorm.reader_impl.reader_state import fingerprint

    if job.get("kind") == _LOADER_JOB_KIND:
        raise PetastormStateError(
            f"this job state was merged from {job.get('loader')} states: resume it with that loader's "
            f"load_state_dict() over this reader (the rows its loaders held are only dealt there)")
    p = reader._p
    o = p.plan_options
    if not _elastic_enabled(p):
        raise PetastormStateError(
            "resume_from is a merged job state (from petastorm.merge_state_dicts): resuming it needs "
            "cur_shard, shard_count and shard_mode='balanced' (and no ngram)")
    if job.get("version") != JOB_VERSION:
        raise PetastormStateError(f"unknown job state version {job.get('version')!r}; this petastorm reads "
                                  f"version {JOB_VERSION}")
    _check_job(job)
    if job.get("dataset_fingerprint") != reader.dataset.fingerprint():
        raise PetastormStateError(
            f"job state was saved for a different dataset (dataset fingerprint {job.get('dataset_fingerprint')}, "
            f"this reader's is {reader.dataset.fingerprint()}): resume with the same dataset, selectors and "
            f"filters")
    mine = shardless_options(reader._options)
    if job.get("options_fingerprint") != fingerprint(mine):
        from petastorm.reader_impl.reader_state import differing_options, older_layout_hint

        diffs = differing_options(job.get("options") or {}, mine)
        raise PetastormStateError(
            "job state was saved with different reader options (cur_shard and shard_count may change, "
            "nothing else)" + (": " + "; ".join(diffs) + older_layout_hint(job.get("options") or {}, mine)
                               if diffs else "") +
            ". Resume with the options the checkpoint was saved with")
    if reader._explicit_seed is None and job.get("seed") is not None and o.shuffle_rows:
        import dataclasses

        p.plan_options = dataclasses.replace(o, seed=int(job["seed"]))
    o = p.plan_options
    p.plans.clear()
    deals = _deals(reader)
    deals.clear()
    reader.__dict__.pop("_elastic_offsets", None)
    world, rank = int(o.shard_count), int(o.cur_shard)
    first = int(job["next_epoch"])
    prefix = int(job.get("held", 0))
    partial = sorted(int(e) for e in job.get("epochs", {}))
    start, offset = first, 0
    for i, e in enumerate(partial):
        ep = job["epochs"][str(e)]
        deal = EpochDeal(epoch=e, span=int(ep["span"]), base=tuple(tuple(r) for r in normalize_ranges(ep["consumed"])),
                         prefix=prefix if i == 0 else 0, world=world, rank=rank, offset=offset)
        offset = (offset + deal.size % world) % world  # the next epoch's extra rows go to the other ranks
        deals[e] = deal
        p.may_be_empty.add(e)
        plan = elastic_plan(p.plan_rows, o, deal)
        if not plan and start == e:
            start = e + 1  # nothing of this epoch for this rank: start at the next one
        else:
            p.plans[e] = plan
    # the loaders' held rows: dealt with the first partly read epoch, or alone when none is left
    reader._elastic_held = deals[partial[0]].held_slice() if partial else deal_bounds(prefix, world, rank)
    p.epoch, p.position, p.skip_first = start, 0, 0
    p.epoch_limit = job.get("epoch_limit", p.epoch_limit)
    if p.epoch_limit is not None and start < p.epoch_limit and start not in p.plans:
        from petastorm.reader_impl.plan import make_epoch_plan

        p.plans[start] = make_epoch_plan(p.plan_rows, o, start)
