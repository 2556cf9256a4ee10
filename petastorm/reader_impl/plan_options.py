"""The planner's inputs, checked: :class:`PlanOptions` and the checks of row counts, epochs and seeds.

Every check raises :class:`~petastorm.errors.PetastormArgumentError` naming the argument and the value;
the sharding messages start with the original's wording, which user code matches on.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from petastorm.errors import PetastormArgumentError

__all__ = [
    "PlanOptions",
    "SHARD_MODES",
    "BALANCED_REMAINDERS",
    "BOTH_SHARD_ARGS",
    "check_shard_args",
    "ensure_rows",
    "ensure_epoch",
    "is_int",
    "seed_entropy",
]

#: Accepted values of ``PlanOptions.shard_mode``.
SHARD_MODES = ("original", "balanced")
#: Accepted values of ``PlanOptions.balanced_remainder``.
BALANCED_REMAINDERS = ("drop", "pad")

# The original's wording, kept at the start of our messages (user code matches on it).
BOTH_SHARD_ARGS = "partition and num_partitions must be ints and both specified to use partitioning"


def seed_entropy(value: int) -> int:
    """A non-negative int for ``SeedSequence`` (which refuses negative entropy); injective on 128 bits."""
    return int(value) % (1 << 128)


def is_int(value: Any) -> bool:
    """True when ``operator.index`` takes ``value`` (``int``, ``bool``, numpy integers; not floats)."""
    try:
        operator.index(value)
    except TypeError:
        return False
    return True


@dataclass(frozen=True)
class PlanOptions:
    """Options that decide the plan; see :func:`make_epoch_plan`.

    Attributes
    ----------
    seed : int
        Seed of the row-group and row order. The reader resolves ``seed=None`` to a random int before
        planning, so the planner always gets an int (any sign, any size).
    shuffle_row_groups : bool
        Shuffle the order of the items (row groups or their drop partitions) every epoch.
    shuffle_rows : bool
        Give each item a ``row_seed`` so the worker permutes its rows.
    shuffle_row_drop_partitions : int
        Split every row group into this many contiguous row slices, each a separate item (>= 1).
    cur_shard, shard_count : int or None
        This shard and the number of shards; both or neither.
    shard_seed : int or None
        ``'original'`` mode: a non-zero value reorders the shard's row groups as the original does (the
        assignment itself never changes). ``'balanced'`` mode: seed of the global order that is dealt to
        the shards (the same on every rank). 0 and None mean the same.
    shard_mode : str
        ``'original'`` or ``'balanced'``.
    balanced_remainder : str
        ``'drop'`` (shards get ``floor(total / shard_count)`` rows) or ``'pad'`` (``ceil``, the
        remainder padded with rows from the start of the epoch's global sequence). Balanced mode only.
    """

    seed: int
    shuffle_row_groups: bool = True
    shuffle_rows: bool = False
    shuffle_row_drop_partitions: int = 1
    cur_shard: Optional[int] = None
    shard_count: Optional[int] = None
    shard_seed: Optional[int] = None
    shard_mode: str = "original"
    balanced_remainder: str = "drop"

    @property
    def sharded(self) -> bool:
        """True when ``cur_shard``/``shard_count`` are set."""
        return self.shard_count is not None

    def validate(self) -> "PlanOptions":
        """Check every option; raise :class:`PetastormArgumentError` naming the argument and value.

        Returns ``self`` so it can be chained.
        """
        if not is_int(self.seed):
            raise PetastormArgumentError(
                f"seed must be an int for planning, got {self.seed!r} ({type(self.seed).__name__})")
        if not is_int(self.shuffle_row_drop_partitions) or self.shuffle_row_drop_partitions < 1:
            raise PetastormArgumentError(
                f"shuffle_row_drop_partitions must be a positive integer, got "
                f"{self.shuffle_row_drop_partitions!r}")
        check_shard_args(self.cur_shard, self.shard_count, self.shard_seed)
        if self.shard_mode not in SHARD_MODES:
            raise PetastormArgumentError(
                f"shard_mode must be one of {', '.join(map(repr, SHARD_MODES))}, got {self.shard_mode!r}")
        if self.balanced_remainder not in BALANCED_REMAINDERS:
            raise PetastormArgumentError(
                f"balanced_remainder must be one of {', '.join(map(repr, BALANCED_REMAINDERS))}, got "
                f"{self.balanced_remainder!r}")
        return self


def check_shard_args(cur_shard: Any, shard_count: Any, shard_seed: Any) -> None:
    """Refuse (naming the argument) a ``cur_shard``/``shard_count`` given alone, out of range or not an integer,
    and a ``shard_seed`` that is not an integer or None."""
    if (cur_shard is None) != (shard_count is None):
        given, missing = ("cur_shard", "shard_count") if shard_count is None else ("shard_count", "cur_shard")
        raise PetastormArgumentError(
            f"{BOTH_SHARD_ARGS}: {given}={cur_shard if given == 'cur_shard' else shard_count!r} was given "
            f"without {missing}; pass both cur_shard and shard_count, or neither")
    if shard_count is None:
        if shard_seed is not None and not is_int(shard_seed):
            raise PetastormArgumentError(f"shard_seed must be an int or None, got {shard_seed!r}")
        return
    if not is_int(shard_count) or shard_count < 1:
        raise PetastormArgumentError(
            f"{BOTH_SHARD_ARGS}: shard_count must be a positive integer, got shard_count={shard_count!r}")
    if not is_int(cur_shard):
        raise PetastormArgumentError(
            f"{BOTH_SHARD_ARGS}: cur_shard must be an integer, got cur_shard={cur_shard!r}")
    if not 0 <= cur_shard < shard_count:
        raise PetastormArgumentError(
            f"cur_shard must be an integer in [0, shard_count) = [0, {shard_count}), got cur_shard="
            f"{cur_shard!r}")
    if shard_seed is not None and not is_int(shard_seed):
        raise PetastormArgumentError(f"shard_seed must be an int or None, got {shard_seed!r}")


def ensure_rows(rows_per_group: Any) -> np.ndarray:
    """``rows_per_group`` as a 1-D array of non-negative integers (rows of each row group), or an error naming it."""
    rows = np.asarray(rows_per_group)
    if rows.ndim != 1:
        raise PetastormArgumentError(
            f"rows_per_group must be a 1-D array of row counts, got shape {rows.shape}")
    if rows.size and not np.issubdtype(rows.dtype, np.integer):
        raise PetastormArgumentError(f"rows_per_group must hold integers, got dtype {rows.dtype}")
    rows = rows.astype(np.int64, copy=False)
    if rows.size and rows.min() < 0:
        bad = int(np.flatnonzero(rows < 0)[0])
        raise PetastormArgumentError(
            f"rows_per_group[{bad}] is {int(rows[bad])}: row counts cannot be negative")
    return rows


def ensure_epoch(epoch: Any) -> int:
    """``epoch`` as a non-negative ``int``, or an error naming it."""
    if not is_int(epoch) or epoch < 0:
        raise PetastormArgumentError(f"epoch must be a non-negative integer, got {epoch!r}")
    return int(epoch)
