"""Moving a batch of numpy columns to JAX devices in a few calls instead of one per column.

``jax.device_put`` costs tens of microseconds per array whatever its size (dispatch, buffer creation, and
on GPUs one host-to-device copy each). A batch of 1,024 rows of 20 ``float32`` columns is 20 arrays of 4 KiB:
put one by one, the fixed cost dominates and caps the loader far below what the reader delivers. So the
small columns of one dtype and one row shape are stacked on the host into one ``(k, rows, ...)`` array
(a copy of a few KiB), moved in one transfer and split back into ``k`` arrays on the device by one jitted
function (compiled once per batch layout). Large columns (over ``GROUP_MAX_BYTES``, where the fixed cost is
small next to the copy and stacking would double host memory traffic) go through one ``jax.device_put``.

The split function takes the stacks with the sharding extended by a leading unsharded axis
(``PartitionSpec(None, *spec)``) and returns every column with the caller's sharding, so each device gets
only its rows of each stack. Shardings other than ``NamedSharding`` and ``SingleDeviceSharding`` (whose
spec cannot be extended) are served by ``jax.device_put`` of the whole batch.

On one CPU device the split's outputs are chained (:func:`~petastorm.jax_impl.chunks.chain_link`): unchained,
XLA's CPU runtime hands each small copy to its intra-op threads, whose wake-ups cost more CPU than the copies.

A sharding over the devices of several processes (multi-host training) takes each process's batch as its
part of a global array, column by column, with ``jax.make_array_from_process_local_data``: no jitted split
there, since a computation on global arrays must be launched by every process in step.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import numpy as np

from petastorm.jax_impl.chunks import KEEP

__all__ = ["BatchTransfer", "GROUP_MAX_BYTES"]

#: Columns up to this many bytes per batch are stacked with the columns of the same dtype and row shape.
GROUP_MAX_BYTES = 1 << 20
_MAX_LAYOUTS = 32  # batch layouts (field dtypes and shapes) kept compiled; a new one beyond it clears them

_Layout = Tuple[Tuple[str, np.dtype, Tuple[int, ...], bool], ...]


class _Plan:
    """How one batch layout is moved: stacked groups (names per group) + a jitted split, the rest put."""

    def __init__(self, groups: List[List[str]], singles: List[str], split: Optional[Callable],
                 chained: bool = False) -> None:
        self.groups = groups
        self.singles = singles
        self.split = split
        self.chained = chained  # split takes the always-true predicate first


def _stacked_sharding(sharding: Any) -> Any:
    """The sharding of a ``(k, rows, ...)`` stack whose rows are split as ``sharding`` splits a column; None
    where it cannot be written (then no stacking)."""
    from jax.sharding import NamedSharding, PartitionSpec, SingleDeviceSharding

    if isinstance(sharding, SingleDeviceSharding):
        return sharding
    if isinstance(sharding, NamedSharding):
        return NamedSharding(sharding.mesh, PartitionSpec(None, *sharding.spec), memory_kind=sharding.memory_kind)
    return None


def _from_process_local(sharding: Any, name: str, column: np.ndarray) -> Any:
    """One column of a sharding that spans several processes: this process's rows become its devices' part
    of a global array (``jax.make_array_from_process_local_data``)."""
    import jax

    from petastorm.errors import PetastormArgumentError

    try:
        return jax.make_array_from_process_local_data(sharding, column)
    except (ValueError, IndexError, TypeError) as error:
        raise PetastormArgumentError(f"field {name!r} (local batch shape {column.shape}) cannot be placed with "
                                     f"sharding {sharding}: {error}") from error


@functools.lru_cache(maxsize=64)
def _split_fn(sizes: Tuple[int, ...], sharding: Any, stack_sharding: Any, chained: bool = False) -> Callable:
    """The jitted ``(*stacks) -> ((arrays of stack 0), (arrays of stack 1), ...)``, shared by every iterator
    with the same group sizes and sharding so that JAX compiles it once per process and batch shapes.

    ``chained`` (one CPU device): ``(keep, *stacks)``, ``keep`` always True, each output chained on the one before
    (:func:`~petastorm.jax_impl.chunks.chain_link`) so that XLA's CPU runtime makes them one after another on one
    thread instead of handing each small copy to its intra-op threads."""
    import jax

    def split(*stacks: Any) -> tuple:
        return tuple(tuple(stack[i] for i in range(size)) for stack, size in zip(stacks, sizes))

    def split_chained(keep: Any, *stacks: Any) -> tuple:
        from petastorm.jax_impl.chunks import chain_link

        out, prev = [], None
        for stack, size in zip(stacks, sizes):
            group = []
            for i in range(size):
                prev = chain_link(stack[i], prev, keep)
                group.append(prev)
            out.append(tuple(group))
        return tuple(out)

    if chained:
        if sharding is None:
            return jax.jit(split_chained)
        return jax.jit(split_chained, in_shardings=(stack_sharding,) + tuple(stack_sharding for _ in sizes),
                       out_shardings=sharding)
    if sharding is None:
        return jax.jit(split)
    return jax.jit(split, in_shardings=tuple(stack_sharding for _ in sizes), out_shardings=sharding)


class BatchTransfer:
    """``dict[str, np.ndarray] -> dict[str, jax.Array]`` placed with ``sharding`` (None: JAX's default
    device), in one transfer per group of small same-typed columns plus one ``device_put`` for the rest.

    Parameters
    ----------
    sharding : jax.sharding.Sharding or None
    group_max_bytes : int
        Columns of at most this many bytes per batch are grouped (0 disables grouping).
    chain : bool
        Chain the outputs of the split (on one CPU device only: there XLA otherwise hands each small copy to
        its intra-op threads, whose wake-ups cost more CPU than the copies). Ignored for other shardings.
    copy : bool
        Never let a ``jax.Array`` share the memory of a numpy column: for columns their producer may write
        again (a ``transform_fn``'s buffers). On a CPU device ``jax.device_put`` takes aligned host memory
        without a copy, so a batch placed from a buffer that is rewritten afterwards would change after it
        was yielded. Stacked columns are copies already; the others are copied on the host first.
    """

    def __init__(self, sharding: Any = None, group_max_bytes: int = GROUP_MAX_BYTES, copy: bool = False,
                 chain: bool = False) -> None:
        from jax.sharding import SingleDeviceSharding

        self.sharding = sharding
        self.chain = chain and (sharding is None or isinstance(sharding, SingleDeviceSharding))
        self.group_max_bytes = group_max_bytes
        self.copy = copy
        self._stack_sharding = _stacked_sharding(sharding) if sharding is not None else None
        self._multi_process = sharding is not None and not sharding.is_fully_addressable
        self._can_group = group_max_bytes > 0 and not self._multi_process and \
            (sharding is None or self._stack_sharding is not None)
        self._plans: Dict[_Layout, _Plan] = {}

    def __call__(self, columns: Mapping[str, np.ndarray]) -> Dict[str, Any]:
        if not self._can_group:
            return self._put(columns)
        layout = tuple((name, col.dtype, col.shape, type(col) is np.ndarray) for name, col in columns.items())
        plan = self._plans.get(layout)
        if plan is None:
            plan = self._make_plan(columns)
            if len(self._plans) >= _MAX_LAYOUTS:
                self._plans.clear()
            self._plans[layout] = plan
        if plan.split is None:
            return self._put(columns)
        stacks = [np.stack([columns[name] for name in names]) for names in plan.groups]
        split_out = plan.split(KEEP, *stacks) if plan.chained else plan.split(*stacks)
        placed = self._put({name: columns[name] for name in plan.singles}) if plan.singles else {}
        for names, arrays in zip(plan.groups, split_out):
            placed.update(zip(names, arrays))
        return {name: placed[name] for name in columns}

    def _put(self, columns: Mapping[str, np.ndarray]) -> Dict[str, Any]:
        import jax

        if self._multi_process:
            host = np.array if self.copy else np.asarray
            return {name: _from_process_local(self.sharding, name, host(col)) for name, col in columns.items()}
        if self.copy:  # a copy of our own (jax.Arrays are immutable: taken as they are); may_alias=False is not
            # enough: jax 0.10's CPU client still takes aligned numpy memory without a copy
            columns = {name: np.array(col) if isinstance(col, np.ndarray) else col for name, col in columns.items()}
        columns = dict(columns)
        return jax.device_put(columns, self.sharding) if self.sharding is not None else jax.device_put(columns)

    def _make_plan(self, columns: Mapping[str, np.ndarray]) -> _Plan:

        by_kind: Dict[Tuple[np.dtype, Tuple[int, ...]], List[str]] = {}
        singles: List[str] = []
        for name, col in columns.items():
            if type(col) is np.ndarray and col.nbytes <= self.group_max_bytes:
                by_kind.setdefault((col.dtype, col.shape), []).append(name)  # not dtype.str: int4 = float8 there
            else:
                singles.append(name)
        groups = [names for names in by_kind.values() if len(names) > 1]
        singles += [names[0] for names in by_kind.values() if len(names) == 1]
        if not groups:
            return _Plan([], list(columns), None)
        fn = _split_fn(tuple(len(names) for names in groups), self.sharding, self._stack_sharding, self.chain)
        return _Plan(groups, singles, fn, self.chain)
