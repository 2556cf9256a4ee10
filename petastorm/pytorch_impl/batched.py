"""``BatchedDataLoader`` and ``InMemBatchedDataLoader``: batches of tensors cut from whole columns.

Both follow the original's API and semantics (recorded from petastorm 0.12.1 as a black box):

- batches are dicts ``field name -> torch.Tensor`` of shape ``(rows, ...)``, from ``make_batch_reader`` and
  from ``make_reader`` (rows are gathered into columns); the original's promotions (``bool -> uint8``,
  ``uint16 -> int32``, ``uint32 -> int64`` for batch columns and array cells; ``make_reader`` scalar fields
  keep ``uint16``/``uint32``);
- ``transform_fn`` is applied **per column** (one call per field) to each column batch as the reader gives
  it, before batching and shuffling, and returns the new column (numpy array or tensor) - as the original
  (over ``make_reader`` it gets the column of the rows gathered so far, an array where the original passed a
  list of row values);
- string, bytes, Decimal and other object columns raise the original's ``TypeError`` ("Pytorch does not
  support arrays of string or object classes. Found in field name.") with what to do about it;
- a ``shuffling_queue_capacity`` smaller than ``batch_size`` works (the buffer holds at least one batch);
- ``InMemBatchedDataLoader`` loads at most ``rows_capacity`` rows, serves ``num_epochs`` epochs from memory
  (the last batch of each epoch may be short) and can be iterated once (the original's ``RuntimeError``).

New: ``device=``, ``pin_memory=``, a bounded background ``prefetch`` (default 2: batching, tensor
conversion, pinning and the device copy run on a thread, so the training step never waits on them), ``seed=``,
``len()`` of ``InMemBatchedDataLoader``, exact resume with ``state_dict()`` / ``load_state_dict()``, and clear
errors where the original hung or failed obscurely (``batch_size <= 0``, ``num_epochs=None`` readers in
memory, ``device='cuda'`` without CUDA).
"""
from __future__ import annotations

import math
import warnings
from typing import Any, Callable, Dict, Iterator, Mapping, Optional

import numpy as np

from petastorm.adapters.buffer_quality import pass_seed
from petastorm.adapters.checks import ensure_int
from petastorm.errors import PetastormArgumentError, PetastormArgumentTypeError, PetastormStateError
from petastorm.pytorch_impl.column_checks import is_batch_reader, make_chunk_fn
from petastorm.pytorch_impl.device import TensorConverter, resolve_device
from petastorm.pytorch_impl.inmem_table import InMemTable
from petastorm.pytorch_impl.loader_base import LoaderBase, ensure_reader
from petastorm.reader_impl.reader_state import describe_differences

__all__ = ["BatchedDataLoader", "InMemBatchedDataLoader", "INMEM_REUSE_ERROR"]

#: The original's message when an ``InMemBatchedDataLoader`` is iterated a second time (its spaces kept).
INMEM_REUSE_ERROR = ("InMemBatchedDataLoader couldn't be used multiple times, please                    "
                     "specify total number of epochs using num_epochs in constructor.")

_K_PIPELINE = "pipeline"
_K_GLOBAL_ROW = "global_row"
_K_ROWS_HELD = "rows_held"
_K_EPOCH = "epoch"
_K_BATCH = "batch"
_K_ROWS = "rows"
_K_DATASET = "dataset_fingerprint"
_K_READER_START = "reader_start"


def _thread_worth_it(loader: "BatchedDataLoader") -> bool:
    """Whether a pass of ``loader`` gains from its prefetch thread.

    Not when all it would run is cutting views of the batches a batch reader's own workers have read ahead (a row
    reader's rows are gathered into columns on the thread: it stays): CPU
    tensors made in ``next()`` anyway (no pinning, no device copy), no shuffling buffer to fill, no
    ``transform_fn`` (user code that may be slow), and a reader with a thread or process pool (a ``dummy`` pool
    reads and decodes in the thread that iterates it: there the thread overlaps the reading). The thread's
    wake-ups and GIL hand-offs then cost more CPU than the cutting they would hide (``benchmarks/README.md``,
    "Design measurements").
    """
    pool = getattr(loader.reader, "reader_pool_type", None)  # None: a reader without one (a ReaderMock)
    return not (loader._converter.convert_block is not None and not loader.shuffling_queue_capacity
                and loader.transform_fn is None and pool in ("thread", "process") and is_batch_reader(loader.reader))


class BatchedDataLoader(LoaderBase):
    """Batches of ``batch_size`` rows as dicts of tensors, batched and shuffled on whole columns.

    Parameters
    ----------
    reader : petastorm Reader
        ``make_batch_reader`` (columns re-cut by slicing) or ``make_reader`` (rows gathered into columns).
    batch_size : int
        Rows per batch (>= 1); the last batch of a pass may be shorter.
    transform_fn : callable, optional
        Called per field with the field's column (numpy array, shape ``(rows, ...)``) of each batch the
        reader yields, before batching and shuffling; returns the new column (numpy array or tensor with
        the same number of rows). As the original.
    shuffling_queue_capacity : int
        0: reader order. > 0: rows are shuffled through a column buffer of ``max(capacity, batch_size)``
        rows (preallocated arrays, random index blocks).
    device : None, str or torch.device
        Where the tensors are placed (``'cpu'``, ``'cuda'``, ``'cuda:1'``, a ``torch.device``); None: CPU.
    pin_memory : bool
        Pin CPU tensors before the copy to the GPU (ignored with a warning without an accelerator).
    prefetch : int
        Hand-offs prepared ahead on a background thread (batching, tensors, pinning, device copy); 0: none.
        A hand-off is one batch, or on the CPU up to 64 batches lying in one reader batch (16 of 20 columns;
        views of it: ``petastorm.adapters.BatchPipeline``'s chunks), cut on the thread and made tensors
        together in ``next()`` (tensors made and freed in one thread cost less than across threads).
        Where the thread would have nothing to overlap - CPU tensors without ``pin_memory``, no shuffling, no
        ``transform_fn``, a reader reading ahead on its own thread or process pool - the batches are cut in
        ``next()`` instead (slicing views costs less than waking a thread: see :func:`_thread_worth_it`).
    seed : int, optional
        Seed of the shuffling. Default: the reader's seed (so a reader with a seed gives reproducible
        batches); over a reader made without one, a seed drawn once from torch's global RNG, as the original
        shuffled (``torch.manual_seed(...)`` makes the order reproducible; recorded from 0.12.1). Varied per pass.

    Raises
    ------
    PetastormArgumentError
        (a ``ValueError``) for ``batch_size < 1`` (the original hung), a negative capacity or prefetch, an
        unknown device or a CUDA device without CUDA.
    """

    def __init__(self, reader: Any, batch_size: int = 1, transform_fn: Optional[Callable] = None,
                 shuffling_queue_capacity: int = 0, *, device: Any = None, pin_memory: bool = False,
                 prefetch: int = 2, seed: Optional[int] = None) -> None:
        super().__init__()
        ensure_reader(reader, "BatchedDataLoader")
        # 0.12.1 took batch_size=8.0 over make_reader (its make_batch_reader path raised TypeError): recorded
        self.batch_size = ensure_int("batch_size", batch_size, 1, integral_float=not is_batch_reader(reader))
        self.shuffling_queue_capacity = ensure_int("shuffling_queue_capacity", shuffling_queue_capacity, 0)
        self.prefetch = ensure_int("prefetch", prefetch, 0)
        if transform_fn is not None and not callable(transform_fn):
            raise PetastormArgumentTypeError(f"transform_fn must be callable or None, got {transform_fn!r}")
        if seed is not None:
            ensure_int("seed", seed, -(1 << 127))
        self.reader = reader
        self.transform_fn = transform_fn
        self.seed = seed
        self.device = resolve_device(device)
        self.pin_memory = bool(pin_memory)
        self._converter = TensorConverter(self.device, self.pin_memory, row_values=not is_batch_reader(reader))
        self._current: Any = None

    # --- one pass ------------------------------------------------------------------------------------------

    def _new_pass(self) -> Any:
        from petastorm.adapters import BatchPipeline

        seed = self._pass_buffer_seed() if self.shuffling_queue_capacity > 0 else None
        prefetch = self.prefetch if _thread_worth_it(self) else 0
        return BatchPipeline(self.reader, self.batch_size, shuffling_queue_capacity=self.shuffling_queue_capacity,
                             seed=seed, convert=self._converter, prefetch=prefetch,
                             chunk_fn=make_chunk_fn(self.transform_fn, self.reader),
                             convert_block=self._converter.convert_block)

    def _pass_buffer_seed(self) -> Optional[list]:
        return pass_seed(self._shuffle_seed(self._own_seed()), self._passes_done)

    def _own_seed(self) -> Optional[int]:
        return self.seed

    def _draw_global_seed(self) -> int:
        """Torch's global RNG, as the original ``BatchedDataLoader`` shuffled with (recorded from 0.12.1)."""
        import torch

        return int(torch.randint(0, (1 << 63) - 1, (), dtype=torch.int64))

    def _iter_impl(self) -> Iterator[Any]:
        if self._current is None or not self._resume_in_pass:
            self._close_pass()
            self._current = self._new_pass()
        if not self._converter.on_cuda:  # nothing to wait for: the batches as they come
            yield from self._current
            return
        ready = self._converter.ready
        for item in self._current:
            yield ready(item)

    def _pass_rows_held(self) -> int:
        return self._current.rows_held if self._current is not None else 0

    def _close_pass(self) -> None:
        if self._current is not None:
            self._current.close()

    # --- state ---------------------------------------------------------------------------------------------

    def _settings(self) -> Dict[str, Any]:
        return {"batch_size": self.batch_size, "shuffling_queue_capacity": self.shuffling_queue_capacity,
                "reader": "make_batch_reader" if is_batch_reader(self.reader) else "make_reader"}

    def _pass_state(self) -> dict:
        if self._current is None:
            self._current = self._new_pass()
        state = self._current.state_dict()
        reader_state = state["batcher"]["reader"] or {}
        return {_K_PIPELINE: state, _K_ROWS_HELD: state["rows_held"],
                _K_GLOBAL_ROW: (reader_state.get("extra") or {}).get("global_row")}

    def _load_job_pass(self, job: Mapping[str, Any]) -> None:
        current = self._new_pass()
        current.load_job_state({**job, "settings": current.settings})
        self._current = current

    def _load_pass_state(self, body: Mapping[str, Any]) -> None:
        if not isinstance(body, Mapping) or _K_PIPELINE not in body:
            raise PetastormStateError("not a BatchedDataLoader pass state: key 'pipeline' is missing")
        current = self._new_pass()
        current.load_state_dict(body[_K_PIPELINE])
        self._close_pass()
        self._current = current


class InMemBatchedDataLoader(LoaderBase):
    """Reads the reader once into memory (at most ``rows_capacity`` rows) and serves ``num_epochs`` epochs
    of batches from there, reshuffled every epoch when ``shuffle``.

    Parameters
    ----------
    reader : petastorm Reader
        A finite reader (``num_epochs`` an int): its rows are loaded on the first iteration (or ``len()``).
    batch_size : int
        Rows per batch (>= 1); the last batch of each epoch may be shorter.
    transform_fn : callable, optional
        Called per field on each column batch the reader yields, before it is stored (as the original).
    num_epochs : int or None
        Epochs served from memory; None: endless (``len()`` then raises ``TypeError``).
    seed : int
        Seed of the per-epoch shuffles (epoch ``e`` uses ``default_rng([seed, e])``).
    rows_capacity : int
        Most rows loaded; rows past it are not read (as the original).
    shuffle : bool
        Reshuffle the rows every epoch.

    Raises
    ------
    PetastormArgumentError
        (a ``ValueError``) for a reader made with ``num_epochs=None`` (it would never end), or an argument out
        of range (``batch_size < 1``, ``rows_capacity < 1``, ``num_epochs < 1``).
    """

    def __init__(self, reader: Any, batch_size: int = 1, transform_fn: Optional[Callable] = None,
                 num_epochs: Optional[int] = 1, seed: int = 0, rows_capacity: int = 1024,
                 shuffle: bool = False) -> None:
        super().__init__()
        ensure_reader(reader, "InMemBatchedDataLoader")
        reader_epochs = getattr(getattr(reader, "_p", None), "num_epochs", 1)
        if reader_epochs is None:
            raise PetastormArgumentError(
                "reader: InMemBatchedDataLoader reads the reader to its end once, but the reader was made with "
                "num_epochs=None (endless). Make it with num_epochs=1 and give the number of epochs to "
                "InMemBatchedDataLoader(num_epochs=...)")
        self.batch_size = ensure_int("batch_size", batch_size, 1)
        self.num_epochs = ensure_int("num_epochs", num_epochs, 1, allow_none=True)
        self.rows_capacity = ensure_int("rows_capacity", rows_capacity, 1)
        self.seed = ensure_int("seed", seed if seed is not None else 0, -(1 << 127))
        if transform_fn is not None and not callable(transform_fn):
            raise PetastormArgumentTypeError(f"transform_fn must be callable or None, got {transform_fn!r}")
        self.reader = reader
        self.transform_fn = transform_fn
        self.shuffle = bool(shuffle)
        self._data: Optional[InMemTable] = None
        self._loading = False
        self._load_error: Optional[Exception] = None  # the error of a failed load, raised again by every later one
        self._rows = 0
        self._dataset_fingerprint: Optional[str] = None
        self._reader_start: Optional[dict] = None  # reader.state_dict() before the rows were loaded
        self._epoch = 0
        self._batch = 0          # batches of self._epoch already yielded

    # --- loading -------------------------------------------------------------------------------------------

    def _load(self) -> None:
        if self._data is not None:
            return
        if self._loading:  # state_dict() or len() from the transform_fn, while the rows load
            raise PetastormStateError("InMemBatchedDataLoader is loading its rows (state_dict() or len() was called "
                                      "from inside transform_fn): call it from the training loop")
        if self._load_error is not None:
            # a failed load consumed part of the reader: loading again would serve the rows left silently (after
            # ``list(loader)``, whose length hint swallows a TypeError raised by len(), the pass had no rows)
            raise self._load_error
        self._loading = True
        try:
            self._load_rows()
        except Exception as e:
            # len() loads too, outside a pass: stop and join the reader here (a pass that fails does it as well)
            self._load_error = e
            self._stop_reader()
            raise
        finally:
            self._loading = False

    def _load_rows(self) -> None:
        from petastorm.adapters import ReaderSource

        try:
            # the reader's position before the load (its seed too: a reader made with seed=None draws one): a state
            # of this loader restores it first, so the resumed loader loads the same rows in the same order
            self._reader_start = self.reader.state_dict()
            self._dataset_fingerprint = self._reader_start.get("dataset_fingerprint")
        except Exception:  # noqa: BLE001 - readers without a state
            self._reader_start, self._dataset_fingerprint = None, None
        source = ReaderSource(self.reader)
        chunk_fn = make_chunk_fn(self.transform_fn, self.reader)
        parts, rows, stored, more = [], 0, 0, False  # rows read from the reader, rows stored
        while rows < self.rows_capacity:
            chunk = source.next_chunk(min(self.rows_capacity - rows, 4096))
            if chunk is None:
                break
            n = len(next(iter(chunk.values()))) if chunk else 0
            if n > self.rows_capacity - rows:
                chunk = {k: v[:self.rows_capacity - rows] for k, v in chunk.items()}
                n, more = self.rows_capacity - rows, True
            rows += n
            if chunk_fn is not None:
                chunk = chunk_fn(chunk)
                n = len(next(iter(chunk.values()))) if chunk else 0  # a transform_fn may drop or add rows
            parts.append(chunk)
            stored += n
        if rows >= self.rows_capacity and (more or source.next_chunk(1) is not None):
            warnings.warn(f"InMemBatchedDataLoader loaded rows_capacity={self.rows_capacity} rows and leaves the "
                          f"reader's other rows out (as petastorm 0.12.1 did): raise rows_capacity to use them",
                          UserWarning, stacklevel=4)
        # each reader batch is freed once copied; shuffled epochs gather rows, ordered ones copy whole batches
        self._data = InMemTable(parts, row_major=self.shuffle, row_values=not is_batch_reader(self.reader),
                                batch_rows=self.batch_size)
        self._rows = stored

    def _length(self) -> Optional[int]:
        if self.num_epochs is None:
            return None
        if self._data is None and not self._in_iter and self._passes_started == 0:
            # loading reads the reader to its end: from now on the state is that of the (unstarted) pass
            self._resume_in_pass = True
        self._load()
        return math.ceil(self._rows / self.batch_size) * self.num_epochs

    # --- iteration -----------------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Any]:
        # recorded from 0.12.1: a second iterator, during the pass or after it, raises the reuse message
        if self._passes_done > 0 or self._passes_started > 0:
            raise RuntimeError(INMEM_REUSE_ERROR)
        return super().__iter__()

    def _order(self, epoch: int) -> Optional[np.ndarray]:
        if not self.shuffle:
            return None
        return np.random.default_rng([int(self.seed) % (1 << 128), epoch]).permutation(self._rows)

    def _iter_impl(self) -> Iterator[Any]:
        self._load()
        table, rows, bs = self._data, self._rows, self.batch_size
        if not rows:
            return
        batches = table.batches
        while self.num_epochs is None or self._epoch < self.num_epochs:
            order = self._order(self._epoch)
            if order is None and batches is not None:  # in order: whole batches of the batch-major table
                for out in table.batches_from(self._batch):
                    self._batch += 1
                    yield out
                self._epoch += 1
                self._batch = 0
                continue
            for start in range(self._batch * bs, rows, bs):
                # new tensors every batch (users may write to them): one copy per block of columns
                out = table.batch(slice(start, start + bs) if order is None else order[start:start + bs])
                self._batch += 1
                yield out
            self._epoch += 1
            self._batch = 0

    # --- state ---------------------------------------------------------------------------------------------

    def _settings(self) -> Dict[str, Any]:
        return {"batch_size": self.batch_size, "num_epochs": self.num_epochs, "seed": self.seed,
                "rows_capacity": self.rows_capacity, "shuffle": self.shuffle}

    def _pass_state(self) -> dict:
        self._load()
        return {_K_EPOCH: self._epoch, _K_BATCH: self._batch, _K_ROWS: self._rows,
                _K_DATASET: self._dataset_fingerprint, _K_READER_START: self._reader_start}

    @staticmethod
    def _check_dataset(saved_fp: Optional[str], fingerprint: Optional[str]) -> None:
        if saved_fp is not None and fingerprint is not None and saved_fp != fingerprint:
            raise PetastormStateError(f"InMemBatchedDataLoader state was saved for a different dataset (dataset "
                                      f"fingerprint {saved_fp}, this reader's is {fingerprint})")

    def _load_reader_state(self, reader_state: Mapping[str, Any]) -> None:
        if self._data is None:
            super()._load_reader_state(reader_state)
            return
        # len() loaded the rows already (an LR schedule's step count, taken before the checkpoint is loaded): a
        # state saved before the first pass starts that pass from memory, if the saved reader reads the same rows
        # (a seed of its own, drawn by seed=None, only orders the row groups: the same rows are served once each)
        saved, now = dict(reader_state), dict(self._reader_start or {})
        saved.pop("seed", None)
        now.pop("seed", None)
        differs = describe_differences(saved, now, "in this reader's state")
        if differs:
            raise PetastormStateError(
                f"InMemBatchedDataLoader loaded its rows (len() was called) before load_state_dict(), and the saved "
                f"reader differs from this one: {'; '.join(differs)}. Call load_state_dict() before len(), or make "
                f"the reader with the same arguments (a seed=...)")
        self._epoch, self._batch = 0, 0

    def _load_pass_state(self, body: Mapping[str, Any]) -> None:
        try:
            epoch, batch, rows = int(body[_K_EPOCH]), int(body[_K_BATCH]), int(body[_K_ROWS])
        except (KeyError, TypeError, ValueError):
            raise PetastormStateError("malformed InMemBatchedDataLoader pass state: integers 'epoch', 'batch' and "
                                      "'rows' expected") from None
        start = body.get(_K_READER_START)
        if start is not None and self._data is not None and dict(start) != dict(self._reader_start or {}):
            # mid-pass the rows' order matters: rows loaded by len() in another order would be served from the saved
            # batch index with rows lost and repeated
            raise PetastormStateError(
                "InMemBatchedDataLoader loaded its rows (len() was called) before load_state_dict() of a state saved "
                "mid-pass, by a reader whose rows load in another order: call load_state_dict() before len(), or "
                "make the reader with seed=...")
        if start is not None and self._data is None:
            if not isinstance(start, Mapping):
                raise PetastormStateError(f"malformed InMemBatchedDataLoader pass state: {_K_READER_START!r} must be a "
                                          f"dict from reader.state_dict(), got {type(start).__name__}")
            self._check_dataset(body.get(_K_DATASET), self.reader.state_dict().get("dataset_fingerprint"))
            # the reader's checks name an option (fields, seed, shuffle...) that differs; a reader made with
            # seed=None takes the seed the saved one drew, so the rows load in the saved order
            self.reader.load_state_dict(start)
        self._load()
        self._check_dataset(body.get(_K_DATASET), self._dataset_fingerprint)
        if rows != self._rows:
            raise PetastormStateError(f"InMemBatchedDataLoader state was saved with {rows} rows in memory, this "
                                      f"reader gives {self._rows}: resume with a reader made with the same "
                                      f"arguments")
        batches = math.ceil(rows / self.batch_size)
        if not 0 <= epoch <= (epoch if self.num_epochs is None else self.num_epochs) or not 0 <= batch <= batches:
            raise PetastormStateError(f"malformed InMemBatchedDataLoader state: epoch {epoch}, batch {batch} is not a "
                                      f"position of {self.num_epochs} epochs of {batches} batches")
        self._epoch, self._batch = epoch, batch
