"""JAX adapter: batches of ``jax.Array`` placed on device (and sharded across devices) ahead of use.

Example, data-parallel over every local device::

    import jax
    import numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec
    from petastorm import make_batch_reader
    from petastorm.jax import make_jax_iterator

    mesh = Mesh(np.array(jax.devices()), ("data",))
    sharding = NamedSharding(mesh, PartitionSpec("data"))
    with make_batch_reader(url, num_epochs=None) as reader, \\
            make_jax_iterator(reader, batch_size=256, sharding=sharding, drop_last=True) as batches:
        for step, batch in zip(range(1000), batches):
            state = train_step(state, batch["x"], batch["y"])   # batch[...] is a jax.Array, already sharded
            if step % 100 == 0:
                save(batches.state_dict())                        # exact resume point

Batching, shuffling, the background prefetch and the resume state are petastorm's shared batching core
(:mod:`petastorm.adapters`), the same as the PyTorch loaders'; this module adds placement: on the prefetch
thread, every batch is checked (numbers only), moved to the devices with the sharding in a few transfers,
and waited for, so the training step finds it on device.

**The last short batch.** A pass that does not divide into ``batch_size`` rows ends with a shorter batch,
as in the PyTorch loaders (``drop_last=False``, the default); with ``drop_last=True`` it is dropped. With a
``sharding`` whose batch dimension is cut into ``n`` shards, a short last batch whose row count is a multiple
of ``n`` is placed sharded like the others; one that is not cannot be split, and raises a
:class:`~petastorm.errors.PetastormArgumentError` (naming both numbers and ``drop_last=True``) when it is
reached, after every full batch was yielded. For ``jit``-compiled steps, ``drop_last=True`` also avoids one
recompilation for the shorter shape.

**Several processes** (multi-host training, after ``jax.distributed.initialize``): give a sharding over the
job's global mesh and, in each process, a reader of that process's shard (``cur_shard=jax.process_index(),
shard_count=jax.process_count(), shard_mode='balanced'``, so every process has the same number of rows per
epoch). ``batch_size`` is then the rows of *this process*; each yielded array is the global batch (the rows
of every process along the batch axis), of which this process's devices hold its own rows
(``jax.make_array_from_process_local_data``). Every process must yield the same number of batches, or the
training step's collectives wait forever: balanced shards do that, ``drop_last=True`` makes it certain.

**Speed.** JAX has fixed costs that do not depend on the size of the data: per array created from the
host (``jax.device_put``), per jitted call, and (much smaller) per array a jitted call returns. Small batches
of many columns therefore cost more in placement than in reading, and the iterator amortises what it can
(the figures per batch are in ``benchmarks/README.md``, "Design measurements quoted by the code"):

- in reader order without ``transform_fn``, on one CPU device, the whole batches lying in one
  reader batch come from the shared core as one block (up to 64 batches): their columns of at most 32 KiB
  per batch are copied into pages on the host (reused, aligned so that a CPU device takes them without a
  copy), each moved in one transfer, and one jitted call cuts ``G = 96 // columns`` batches (1..8) from a page
  (:mod:`petastorm.jax_impl.chunks`): nearly all of the cost is then the output arrays;
- otherwise (shuffling, ``transform_fn``, a batch straddling two reader batches, the last short batch, a
  sharding over several devices, a GPU or TPU, wider columns) small columns of one dtype and row shape are
  stacked on the host, moved in one transfer and split by one jitted call per batch
  (:mod:`petastorm.jax_impl.transfer`): a transfer and a jitted call per batch on top of the output arrays.

The floor is the arrays themselves, however they are made (see ``docs/jax.md``). So the cost is per
*array*: a ``transform_fn`` that stacks scalar
features into one matrix (``{"x": np.stack([b[f] for f in features], axis=1), "y": b["label"]}``) yields
2 arrays instead of 20, and larger batches divide the per-array cost by their rows. The first batches of
a new column layout also pay JAX's compilation (seconds on a small CPU host, once per process and layout).

**Types.** JAX holds numbers and booleans only: string, bytes, Decimal and date fields and variable-shape
fields raise :class:`~petastorm.errors.PetastormTypeError` naming the field (up front from the reader's schema
when no ``transform_fn`` is given); a numeric field with nulls arrives as floats with NaN for the nulls, as the
torch loaders give it. ``datetime64`` columns arrive as
``int64`` nanoseconds (a missing one, NaT, raises :class:`~petastorm.errors.PetastormTypeError` naming the field;
one that int64 nanoseconds cannot hold, such as 9999-12-31, :class:`~petastorm.errors.PetastormSchemaError`).
With JAX's 64-bit mode off (its default), ``float64`` becomes ``float32`` and
``int64`` becomes ``int32`` as everywhere in JAX; an integer column whose values would wrap raises
:class:`~petastorm.errors.PetastormSchemaError` naming the field instead of arriving corrupted, and so does an
integer column with nulls whose values ``float32`` would round (beyond 2**24).
"""
from __future__ import annotations

import functools
import threading
from typing import Any, Callable, Dict, Optional

import numpy as np

from petastorm.adapters.checks import OWN_THREAD_PREFIXES, ensure_int
from petastorm.adapters.state_codec import check_digest, decode_state, encode_state, with_digest
from petastorm.errors import (
    PetastormArgumentError,
    PetastormArgumentTypeError,
    PetastormStateError,
    PetastormTypeError,
    PetastormWorkerError,
)
from petastorm.jax_impl.columns import FieldHints, check_schema_fields, field_hints
from petastorm.jax_impl.placement import DevicePlacer, check_batch_size, ensure_sharding

__all__ = ["JaxIterator", "make_jax_iterator"]

_STATE_KIND = "petastorm.jax.JaxIterator"
_KIND = "kind"
_CORE = "core"
_PASS_ENDED = "pass_ended"  # the pass had ended (StopIteration) when the state was saved


def _import_jax() -> Any:
    try:
        import jax
    except ImportError as error:
        raise ImportError(f"petastorm.jax needs JAX, which cannot be imported ({error}): install it with "
                          f"pip install 'petastorm[jax]' (CPU) or as https://docs.jax.dev/en/latest/installation.html "
                          f"says for GPUs and TPUs") from error
    return jax


def _ensure_flag(name: str, value: Any) -> bool:
    """``value`` as a bool: True/False (numpy's too), the integers 0 and 1, or None (False); anything else (a
    string from a config file or the command line: ``'False'`` is truthy) is refused naming the argument."""
    if value is None or isinstance(value, (bool, np.bool_)) or \
            (isinstance(value, (int, np.integer)) and value in (0, 1)):
        return bool(value)
    raise PetastormArgumentTypeError(f"{name} must be True or False, got {value!r}")


def _no_stop_iteration(transform_fn: Callable) -> Callable:
    """``transform_fn`` with a ``StopIteration`` it raises turned into an error: re-raised by ``next()``, it would
    end the caller's loop as if the pass had ended (PEP 479 does the same for generators)."""

    @functools.wraps(transform_fn)
    def call(batch: Dict[str, Any]) -> Dict[str, Any]:
        try:
            return transform_fn(batch)
        except StopIteration as error:
            raise PetastormWorkerError(f"transform_fn raised StopIteration ({error!r}): a next() on an exhausted "
                                       f"iterator inside it?") from error

    return call


class JaxIterator:
    """Iterator of batches ``{field name: jax.Array of shape (batch_size,) + field shape}``.

    Build it with :func:`make_jax_iterator`. It makes one pass over the reader and ends when the reader ends
    (never, with a reader made with ``num_epochs=None``; for several epochs give the reader ``num_epochs``).
    A context manager: leaving it (or :meth:`close`) stops the prefetch thread and
    stops and joins the reader. Abandoned without ``close()``, it stops its thread when garbage-collected.
    Several threads may call ``next()`` on it: they take turns (each row goes to one of them, once).
    """

    def __init__(self, reader: Any, batch_size: int, sharding: Any = None, prefetch: int = 2, *,
                 shuffling_queue_capacity: int = 0, min_after_retrieve: Optional[int] = None,
                 seed: Optional[int] = None, drop_last: bool = False,
                 transform_fn: Optional[Callable[[Dict[str, Any]], Dict[str, Any]]] = None) -> None:
        from petastorm.adapters import BatchPipeline

        _import_jax()
        batch_size = ensure_int("batch_size", batch_size, 1)
        prefetch = ensure_int("prefetch", prefetch, 0)
        shuffling_queue_capacity = ensure_int("shuffling_queue_capacity", shuffling_queue_capacity, 0)
        if seed is not None:  # any integer, as the torch loaders take it (negative ones folded, as they fold them)
            seed = ensure_int("seed", seed, -(1 << 127)) % (1 << 128)
        if transform_fn is not None and not callable(transform_fn):
            raise PetastormTypeError(f"transform_fn must be callable, got {type(transform_fn).__name__}")
        if transform_fn is not None:
            transform_fn = _no_stop_iteration(transform_fn)
        sharding = ensure_sharding(sharding)
        shards = check_batch_size(batch_size, sharding)
        if not hasattr(reader, "__iter__") or not callable(getattr(reader, "stop", None)) or \
                not callable(getattr(reader, "join", None)):  # close() stops and joins it
            raise PetastormTypeError(f"reader: make_jax_iterator needs a petastorm reader (make_reader / "
                                     f"make_batch_reader), got {type(reader).__name__}")
        if getattr(reader, "last_row_consumed", False) is True:  # the pass would yield nothing, silently
            raise PetastormArgumentError(
                "reader: its rows were all read already (by an earlier pass or loop over it), so make_jax_iterator "
                "would yield no batch: call reader.reset() first, make a new reader, or make the reader with "
                "num_epochs=... for several passes in one iterator")
        if transform_fn is None and getattr(reader, "schema", None) is not None:
            check_schema_fields(reader.schema)
        self.reader = reader
        self.batch_size = batch_size
        self.sharding = sharding
        self.drop_last = _ensure_flag("drop_last", drop_last)
        # in reader order without a transform_fn, the whole batches of a reader batch come as one block: placed
        # with one transfer per page and cut on the device several per call (petastorm.jax_impl.chunks)
        whole = shuffling_queue_capacity == 0 and transform_fn is None
        hints = field_hints(reader) if transform_fn is None else FieldHints()  # a transform_fn may rename fields
        placer = DevicePlacer(sharding, shards, batch_size if whole else None, transformed=transform_fn is not None,
                              hints=hints)
        self._new_pipeline = functools.partial(
            BatchPipeline, reader, batch_size, shuffling_queue_capacity=shuffling_queue_capacity,
            min_after_retrieve=min_after_retrieve, seed=seed, drop_last=self.drop_last, transform_fn=transform_fn,
            convert=placer, prefetch=prefetch, convert_block=placer.convert_block)
        self._pipeline = self._new_pipeline()
        self._closed = False
        self._pass_ended = False  # next() found the end of the pass (saved in the state: see load_state_dict)
        self._lock = threading.RLock()  # re-entrant: a transform_fn calling next() (prefetch=0) gets the core's error

    # --- iteration -------------------------------------------------------------------------------------------

    def __iter__(self) -> "JaxIterator":
        return self

    def __next__(self) -> Dict[str, Any]:
        thread = threading.current_thread().name
        if thread.startswith(OWN_THREAD_PREFIXES):  # it would wait for the very thread it runs on
            raise PetastormWorkerError(f"next() on the iterator was called from the loader's or the reader's own "
                                       f"thread {thread!r} (inside a transform_fn or TransformSpec): it would wait "
                                       f"forever; take batches in the training loop only")
        with self._lock:  # threads sharing the iterator take turns: the batching core serves one consumer
            try:
                return next(self._pipeline)
            except StopIteration:
                self._pass_ended = True
                raise

    def explain(self, epoch: Optional[int] = None, *, row_counts: bool = False) -> Any:
        """The reader's :class:`~petastorm.reader_impl.explain.ReadPlan` with this iterator's shuffling buffer
        and batch size simulated on row ids. Reads no data."""
        return self._pipeline.explain(epoch, row_counts=row_counts)

    # --- state -----------------------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """The exact position: the reader's state, the rows held for shuffling and batching with the shuffle
        RNG, and the batches prefetched but not yet yielded (their rows are served again after a resume).

        Returns
        -------
        dict
            Plain values only (the rows held are encoded as the torch loaders' are: lists, bytes, tagged dicts):
            save it with ``pickle``, ``torch.save`` (``torch.load(weights_only=True)`` reads it back) or JSON
            where the rows hold no bytes. Its ``digest`` lets :meth:`load_state_dict` refuse a state changed or
            cut after it was saved.
        """
        if threading.current_thread().name.startswith(OWN_THREAD_PREFIXES):
            # not under the lock of __next__: a transform_fn calling state_dict() on the prefetch thread while
            # next() holds the lock waiting for it would wait forever (the core refuses that call with its error)
            core = self._pipeline.state_dict()
        else:
            # under it: another thread's next() changes the rows held while they are saved (a state taken by a
            # checkpointing thread then resumed with rows lost or repeated)
            with self._lock:
                core = self._pipeline.state_dict()
        return with_digest(encode_state({_KIND: _STATE_KIND, _CORE: core, _PASS_ENDED: self._pass_ended}))

    def load_state_dict(self, state: dict) -> None:
        """Continue from :meth:`state_dict`; call before the first batch, on an iterator over a fresh reader
        of the same dataset with the same settings. A job state from ``petastorm.merge_state_dicts`` (every
        rank's state of a checkpoint, balanced readers) continues the job at any world size.

        At the very end of a pass, as the torch loaders: a state saved after the loop over the iterator ended
        (``StopIteration`` seen) continues with the next pass (the restored reader is ``reset()``: its next
        epochs are served in full); a state saved after the last batch but before ``StopIteration`` resumes that
        pass, which has nothing left: the iterator yields no batch. The same for a job state merged from states
        all saved after the loop ended (its ``in_pass`` is False): the new ranks serve the next pass, as
        ``BatchedDataLoader`` does from such a job state.

        Raises
        ------
        PetastormStateError
            Naming each setting that differs (``batch_size``, ``drop_last``, ``shuffling_queue_capacity``,
            ``min_after_retrieve``; the reader names its own: dataset, reader options), when the state is
            not one of this iterator's, or was changed or cut after ``state_dict()``.
        """
        from petastorm.adapters.elastic import is_loader_job_state

        if is_loader_job_state(state):  # merged by petastorm.merge_state_dicts: elastic resume
            if state.get("loader") != "JaxIterator":
                raise PetastormStateError(f"the job state was merged from {state.get('loader')} states, this is a "
                                          f"JaxIterator")
            self._pipeline.load_job_state(state)
            if not state.get("in_pass", True):  # every rank's pass had ended (merged from their pass_ended)
                self._start_next_pass()
            return
        if not isinstance(state, dict) or state.get(_KIND) != _STATE_KIND or _CORE not in state:
            got = f"a {state['loader']} state" if isinstance(state, dict) and isinstance(state.get("loader"), str) \
                else type(state).__name__
            raise PetastormStateError(f"not a state of make_jax_iterator (expected a dict from "
                                      f"JaxIterator.state_dict(), got {got})")
        check_digest(state, "make_jax_iterator state")
        pass_ended = state.get(_PASS_ENDED, False)  # absent from the states saved before it was recorded
        if not isinstance(pass_ended, bool):
            raise PetastormStateError(f"malformed make_jax_iterator state: {_PASS_ENDED!r} must be True or False, "
                                      f"got {pass_ended!r}")
        self._pipeline.load_state_dict(decode_state(state[_CORE]))  # a state saved raw (before 1.0) passes as is
        if pass_ended:
            self._start_next_pass()

    def _start_next_pass(self) -> None:
        """After a state saved once the pass had ended: read the restored reader's end and ``reset()`` it, so this
        iterator serves the reader's next pass, as a torch loader's next ``iter()`` does after such a state."""
        for _ in self.reader:
            raise PetastormStateError("the reader restored from a state saved at the end of the pass still had "
                                      "rows: resume with the reader options the state was saved with")
        self.reader.reset()
        ended, self._pipeline = self._pipeline, self._new_pipeline()  # the restored one holds the ended pass
        ended.close()  # never started: no thread to stop

    # --- lifecycle -------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the prefetch thread, then stop and join the reader. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self._pipeline.close()
        finally:
            self.reader.stop()
            self.reader.join()

    def __enter__(self) -> "JaxIterator":
        return self

    def __exit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        self.close()


def make_jax_iterator(reader: Any, batch_size: int, sharding: Any = None, prefetch: int = 2, *,
                      shuffling_queue_capacity: int = 0, min_after_retrieve: Optional[int] = None,
                      seed: Optional[int] = None, drop_last: bool = False,
                      transform_fn: Optional[Callable[[Dict[str, Any]], Dict[str, Any]]] = None) -> JaxIterator:
    """Batches of ``jax.Array`` from a petastorm reader, on device ahead of use, optionally sharded.

    Parameters
    ----------
    reader : Reader
        From :func:`petastorm.make_reader` (rows are gathered into columns) or
        :func:`petastorm.make_batch_reader`; any ``num_epochs`` (None: the iterator never ends).
    batch_size : int
        Rows per batch (>= 1), across all devices: each of ``n`` shards gets ``batch_size // n`` rows. With a
        sharding over several processes' devices: the rows of this process (see the module docs).
    sharding : jax.sharding.Sharding or jax.Device, optional
        Applied to every field (the batch dimension is axis 0), e.g.
        ``NamedSharding(Mesh(jax.devices(), ('data',)), PartitionSpec('data'))``. ``batch_size`` must be a
        multiple of the number of shards of axis 0. None: JAX's default device.
    prefetch : int
        Hand-offs converted and placed ahead by the background thread (0: synchronously, in ``next()``): one
        batch each, or in reader order without ``transform_fn`` the whole batches of one reader batch (up to 64).
    shuffling_queue_capacity : int
        Rows held in the column shuffling buffer (0: reader order).
    min_after_retrieve : int, optional
        Rows left in the buffer after each batch while the reader has more (default
        ``shuffling_queue_capacity - batch_size``).
    seed : int, optional
        Seed of the shuffling buffer (same seed, same reader order: same batches).
    drop_last : bool
        Drop a last batch shorter than ``batch_size``. Without it and with a sharding, a short last batch
        that the shards cannot split evenly raises :class:`~petastorm.errors.PetastormArgumentError` when
        reached (see the module docs).
    transform_fn : callable, optional
        ``dict[str, np.ndarray] -> dict[str, np.ndarray]``, applied to each numpy batch on the prefetch thread
        before placement (the place to drop, encode or pad non-numeric fields).

    Returns
    -------
    JaxIterator
        Yields ``dict[str, jax.Array]``; each array of shape ``(rows,) + field shape``.

    Raises
    ------
    PetastormArgumentError
        ``batch_size`` or ``prefetch`` out of range, or ``batch_size`` not divisible by the shard count
        (the message names both numbers).
    PetastormTypeError
        A field JAX cannot hold (strings, Decimal, variable shape...), naming the field.
    """
    return JaxIterator(reader, batch_size, sharding, prefetch, shuffling_queue_capacity=shuffling_queue_capacity,
                       min_after_retrieve=min_after_retrieve, seed=seed, drop_last=drop_last,
                       transform_fn=transform_fn)
