"""Placing numpy column batches on JAX devices: the ``convert`` callable the shared batching core runs on its
prefetch thread, and the checks of ``batch_size`` against a sharding.

A sharding splits the batch dimension (axis 0) of every field into ``n`` equal pieces, one per group of
devices; ``n`` is read from the sharding itself (for ``NamedSharding(mesh, PartitionSpec('data'))`` it is
``mesh.shape['data']``), so any :class:`jax.sharding.Sharding` works, not only named meshes.

The placer runs on the prefetch thread, which does not inherit JAX's thread-local settings
(``with jax.default_device(d):``, ``with jax.enable_x64(True):``): those of the thread that made the iterator
are captured then and applied to every placement. Blocks of whole batches (:mod:`~petastorm.jax_impl.chunks`)
are placed only on a CPU device: they are placed in ``next()`` (the consumer's thread) and waited for there,
which on an accelerator would wait for every step already dispatched to it and hold all the block's batches
(up to 64) on the device at once; elsewhere every batch is placed ahead, by the prefetch thread, ``prefetch``
batches at most.

Placing batches is the loader's job, so its host-to-device transfers are allowed under a transfer guard
(``jax.config.update('jax_transfer_guard', 'disallow')`` or ``with jax.transfer_guard('disallow'):``, the
way JAX users catch the implicit transfers of a training step): some of them hand numpy stacks to a jitted
split, which the guard counts as implicit. The guard still applies to the user's own code.
"""
from __future__ import annotations

import contextlib
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np

from petastorm.errors import PetastormArgumentError, PetastormTypeError
from petastorm.jax_impl.chunks import BlockPlacer
from petastorm.jax_impl.columns import FieldHints, jax_ready_columns
from petastorm.jax_impl.transfer import BatchTransfer

__all__ = ["DevicePlacer", "batch_shard_count", "check_batch_size", "describe_batch_axis", "ensure_sharding"]

_MAX_RANK = 8


def ensure_sharding(sharding: Any) -> Any:
    """``None``, a :class:`jax.sharding.Sharding` or a :class:`jax.Device` (-> ``SingleDeviceSharding``).

    Raises
    ------
    PetastormTypeError
        For anything else, naming the argument and its type.
    PetastormArgumentError
        For a sharding over an ``AbstractMesh`` (no devices), or with an ``UNCONSTRAINED`` axis.
    """
    if sharding is None:
        return None
    import jax
    from jax.sharding import Sharding, SingleDeviceSharding

    if isinstance(sharding, jax.Device):
        return SingleDeviceSharding(sharding)
    if not isinstance(sharding, Sharding):
        raise PetastormTypeError(f"sharding must be a jax.sharding.Sharding (e.g. NamedSharding(Mesh(devices, "
                                 f"('data',)), PartitionSpec('data'))), a jax.Device or None, got "
                                 f"{type(sharding).__name__}")
    abstract = getattr(jax.sharding, "AbstractMesh", None)  # JAX >= 0.4.31
    if abstract is not None and isinstance(getattr(sharding, "mesh", None), abstract):
        raise PetastormArgumentError(f"sharding {sharding} is over an AbstractMesh, which has no devices to place "
                                     f"batches on: make it over a Mesh of devices, e.g. Mesh(np.array(jax.devices()), "
                                     f"('data',))")
    spec = getattr(sharding, "spec", None) or ()
    if any(axis is getattr(jax.sharding.PartitionSpec, "UNCONSTRAINED", ()) for axis in spec):
        raise PetastormArgumentError(f"sharding {sharding} has an UNCONSTRAINED axis, which only "
                                     f"jax.lax.with_sharding_constraint takes (jax.device_put raises a bare "
                                     f"KeyError): name the mesh axes to split, or None for a replicated one")
    return sharding


def batch_shard_count(sharding: Any) -> int:
    """Number of pieces this process's devices hold of the batch dimension (axis 0) under ``sharding``: the
    pieces a local batch is cut into (all of them when the sharding spans only this process's devices); 1
    when ``sharding`` is None."""
    if sharding is None:
        return 1
    n = int(sharding.num_devices)
    for rank in range(1, _MAX_RANK + 1):  # the smallest rank the sharding applies to; each axis a multiple of n
        shape = (n,) * rank
        try:
            sharding.shard_shape(shape)
            indices = sharding.addressable_devices_indices_map(shape)
        except (ValueError, IndexError, TypeError):
            continue
        return max(1, len({idx[0].indices(n) if isinstance(idx[0], slice) else idx[0]
                           for idx in indices.values()}))
    raise PetastormArgumentError(f"sharding {sharding} cannot be applied to arrays of rank 1 to {_MAX_RANK}")


def describe_batch_axis(sharding: Any) -> str:
    """``"mesh axis 'data'"`` for a NamedSharding, the sharding itself otherwise (for error messages)."""
    spec = getattr(sharding, "spec", None)
    if spec is not None and len(spec) and spec[0] is not None:
        names = spec[0] if isinstance(spec[0], tuple) else (spec[0],)
        sizes = ", ".join(f"{name!r} ({sharding.mesh.shape[name]})" for name in names)
        return f"mesh axis {sizes}" if len(names) == 1 else f"mesh axes {sizes}"
    return f"sharding {sharding}"


def check_batch_size(batch_size: int, sharding: Any) -> int:
    """The number of shards of the batch dimension, after checking that ``batch_size`` divides into it.

    Raises
    ------
    PetastormArgumentError
        Naming ``batch_size``, the shard count and the mesh axis.
    """
    shards = batch_shard_count(sharding)
    if batch_size % shards:
        where = "" if sharding.is_fully_addressable else " on this process's devices"
        raise PetastormArgumentError(
            f"batch_size {batch_size} is not divisible by the {shards} shards of the batch dimension{where} "
            f"({describe_batch_axis(sharding)}): use a batch_size that is a multiple of {shards}")
    return shards


def _single_device(sharding: Any) -> bool:
    """None or a sharding over one device of this process."""
    if sharding is None:
        return True
    from jax.sharding import SingleDeviceSharding

    return isinstance(sharding, SingleDeviceSharding)


def _platform(sharding: Any, default_device: Any) -> str:
    """The platform (``'cpu'``, ``'gpu'``, ``'tpu'``...) the batches go to."""
    import jax

    if sharding is not None:
        return next(iter(sharding.device_set)).platform
    if isinstance(default_device, str):  # jax_default_device may name a platform
        return jax.devices(default_device)[0].platform
    return (default_device or jax.devices()[0]).platform


def _may_alias_host(sharding: Any, default_device: Any) -> bool:
    """Whether ``jax.device_put`` may take a numpy array's memory without a copy: on a CPU device (XLA's CPU
    client aliases aligned host memory), or into an accelerator's host memory kinds."""
    if _platform(sharding, default_device) == "cpu":
        return True
    kind = getattr(sharding, "memory_kind", None)
    return kind is not None and "host" in kind


class DevicePlacer:
    """The ``convert`` step: a numpy column batch -> a dict of ``jax.Array`` on device (sharded if asked).

    Runs on the core's prefetch thread: checks the columns, moves them in a few transfers
    (:class:`~petastorm.jax_impl.transfer.BatchTransfer`: small columns of one dtype stacked, the rest in one
    ``jax.device_put``) and waits for them, so the batch is on device before the training step asks for it
    and the numpy buffers may be reused by the core afterwards.

    Parameters
    ----------
    sharding : jax.sharding.Sharding or None
        None places on JAX's default device.
    shards : int
        ``batch_shard_count(sharding)``.
    batch_size : int, optional
        Given (with a sharding of one device or none), blocks of whole batches of one reader batch are placed a
        block at a time (:class:`~petastorm.jax_impl.chunks.BlockPlacer`): see :attr:`convert_block`, the
        core's ``convert_block``.
    transformed : bool
        The batches come from a user's ``transform_fn``: their numpy arrays are copied when placed (the
        function may write into them again; see :class:`~petastorm.jax_impl.transfer.BatchTransfer`'s
        ``copy``), and a row count the shards cannot split is blamed on it.
    hints : FieldHints
        What the reader's schema says of the batches' fields (:func:`~petastorm.jax_impl.columns.field_hints`;
        empty with a ``transform_fn``).
    """

    def __init__(self, sharding: Optional[Any], shards: int, batch_size: Optional[int] = None, *,
                 transformed: bool = False, hints: FieldHints = FieldHints()) -> None:
        import jax

        self.sharding = sharding
        self.shards = shards
        self.transformed = transformed
        self.hints = hints
        # the caller's thread-local JAX settings, applied on the prefetch thread too (see the module docs)
        self._default_device = jax.config.jax_default_device
        self._x64 = bool(jax.config.jax_enable_x64)
        self._checked_shapes: Dict[Tuple[str, Tuple[int, ...]], bool] = {}
        # an accelerator's device memory never aliases numpy memory: copying there would only cost a host copy
        on_cpu = _platform(sharding, self._default_device) == "cpu"
        self._transfer = BatchTransfer(sharding, copy=transformed and _may_alias_host(sharding, self._default_device),
                                       chain=on_cpu and _single_device(sharding))
        self._blocks: Optional[BlockPlacer] = None
        if batch_size is not None and _single_device(sharding) and on_cpu:
            self._blocks = BlockPlacer(batch_size, sharding)

    def _settings(self) -> Any:
        """A context applying the JAX settings of the thread that made the placer, and allowing the placer's
        own host-to-device transfers under a transfer guard (see the module docs)."""
        import jax

        enable_x64 = getattr(jax, "enable_x64", None)
        if enable_x64 is None:  # JAX before jax.enable_x64 (the pyproject allows 0.4.30)
            from jax.experimental import enable_x64
        stack = contextlib.ExitStack()
        stack.enter_context(jax.default_device(self._default_device))
        stack.enter_context(enable_x64(self._x64))
        if getattr(jax.config, "jax_transfer_guard_host_to_device", None) not in (None, "allow"):
            stack.enter_context(jax.transfer_guard_host_to_device("allow"))
        return stack

    @property
    def convert_block(self) -> Optional[Any]:
        """The core's ``convert_block`` (``(columns of k batches, k) -> k placed batches``), or None when blocks
        are not placed at once (no ``batch_size`` given, or a sharding over several devices)."""
        return self._convert_block if self._blocks is not None else None

    def __call__(self, batch: Mapping[str, Any]) -> Dict[str, Any]:
        import jax

        with self._settings():
            if self.transformed and isinstance(batch, Mapping) and len({type(name) for name in batch}) > 1:
                # JAX sorts a dict's keys to flatten it: its own bare error ("Comparator raised exception")
                raise PetastormTypeError(f"transform_fn returned a batch whose field names are of several types "
                                         f"({sorted({type(name).__name__ for name in batch})}): JAX needs keys it "
                                         f"can sort, e.g. all str")
            columns = jax_ready_columns(batch, hints=self.hints)
            if self.sharding is not None and columns:
                self._check_rows(columns)
                if self.sharding.is_fully_addressable:  # else the global shape is JAX's to check, per field
                    self._check_shapes(columns)
            return jax.block_until_ready(self._transfer(columns))

    def _convert_block(self, block: Mapping[str, Any], k: int) -> Optional[List[Dict[str, Any]]]:
        """The ``k`` batches of ``block`` placed (on one device, so no shape checks), or None when no column
        of it is stacked (the core then converts batch by batch). An error (a column JAX cannot hold) is
        raised here and again by ``__call__`` at its own batch, where the core reports it."""
        with self._settings():
            return self._place_block(block, k)

    def _place_block(self, block: Mapping[str, Any], k: int) -> Optional[List[Dict[str, Any]]]:
        import jax

        blocks = self._blocks
        columns = jax_ready_columns(block, hints=self.hints)
        placed = blocks(columns, k) if columns and blocks is not None else None
        if placed is None:
            return None
        order = tuple(columns)
        rest = blocks.plan(columns).rest
        if rest:
            bs = blocks.batch_size
            for i, batch in enumerate(placed):
                batch.update(jax.block_until_ready(self._transfer({n: columns[n][i * bs:(i + 1) * bs] for n in rest})))
        if tuple(placed[0]) != order:  # the fields in the reader's order, as the per-batch path gives them
            placed = [{name: batch[name] for name in order} for batch in placed]
        return placed

    def _check_rows(self, columns: Mapping[str, np.ndarray]) -> None:
        for name, column in columns.items():
            if not np.ndim(column):
                raise PetastormArgumentError(
                    f"field {name!r} is a scalar (shape ()), which the sharding cannot split along the batch "
                    f"dimension (axis 0): transform_fn must return arrays of shape (rows, ...)")
        rows = len(next(iter(columns.values())))
        if rows % self.shards and self.transformed:
            raise PetastormArgumentError(
                f"transform_fn returned a batch of {rows} row{'s' if rows != 1 else ''}, which the {self.shards} "
                f"shards of the batch dimension ({describe_batch_axis(self.sharding)}) cannot split evenly: make it "
                f"return a multiple of {self.shards} rows (and pass drop_last=True if the pass ends with a short "
                f"batch)")
        if rows % self.shards:
            raise PetastormArgumentError(
                f"the last batch has {rows} row{'s' if rows != 1 else ''}, which the {self.shards} shards of the "
                f"batch dimension ({describe_batch_axis(self.sharding)}) cannot split evenly: pass "
                f"drop_last=True to drop a last short batch, or read a number of rows that is a multiple of "
                f"{self.shards}")

    def _check_shapes(self, columns: Mapping[str, np.ndarray]) -> None:
        for name, column in columns.items():
            key = (name, column.shape)
            if key in self._checked_shapes:
                continue
            try:
                check_rank = getattr(self.sharding, "check_compatible_aval", None)
                if check_rank is not None:  # a spec of more axes than the field has (shard_shape lets it pass)
                    check_rank(column.shape)
                self.sharding.shard_shape(column.shape)
            except (ValueError, IndexError, TypeError) as error:
                raise PetastormArgumentError(
                    f"field {name!r} (batch shape {column.shape}) cannot be split by sharding {self.sharding}: "
                    f"{error}") from error
            self._checked_shapes[key] = True
