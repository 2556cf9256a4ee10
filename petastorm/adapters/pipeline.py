"""BatchPipeline: a reader -> column batches -> ``transform_fn`` -> ``convert``, with a bounded background
prefetch and an exact, resumable state.

The producer (a daemon thread when ``prefetch > 0``) runs the :class:`Batcher`, ``transform_fn`` and
``convert`` and appends chunks (converted batches and the numpy rows they came from) to a deque of at most
``prefetch`` chunks. A chunk is one batch or, with a ``convert_block`` (the torch loaders on the CPU), up to
:data:`CHUNK_BATCHES` whole batches of one reader batch (and at most half the garbage collector's first
threshold of Python objects: 16 batches of 20 tensors), cut by the producer and converted at once by the
consumer when it takes the chunk: the checks and calls per column are paid once per block; the consumer
locks once per chunk, wakes the producer only once it has emptied the deque of blocks (refilled in one go:
one GIL hand-off per ``prefetch`` blocks) and serves its batches with no lock (a hand-off per batch cost as
much as the batching); and a batch's tensors are made and freed in one thread (freed in another, each object costs
cross-core cache traffic: ``benchmarks/README.md``, "Design measurements"). ``state_dict()`` pauses the
producer between two chunks (and refuses after a pass that failed), so the batcher's
state (reader cursor, rows pending, shuffling buffer, RNG) plus the numpy batches not yet yielded (the rest
of the consumer's chunk, then the deque's) describe exactly the batches not yet received.

The thread refers only to a :class:`SharedProducer` object, never to the pipeline, so a pipeline (and the loader
holding it) abandoned mid-epoch is freed by reference counting, and its ``__del__`` stops the thread.
"""
from __future__ import annotations

import os
import threading
from typing import Any, Callable, Iterator, Mapping, Optional

from petastorm.adapters.batcher import Batcher, ReaderSource
from petastorm.adapters.checks import (
    check_settings,
    ensure_int,
    ensure_outside,
    state_batches,
    state_int,
    state_part,
)
from petastorm.adapters.chunk import Chunk
from petastorm.adapters.column_buffer import num_rows
from petastorm.adapters.producer import CHUNK_BATCHES, SharedProducer
from petastorm.errors import (
    PetastormArgumentTypeError,
    PetastormReaderError,
    PetastormStateError,
)

__all__ = ["BatchPipeline", "STATE_VERSION", "CHUNK_BATCHES"]

#: Version of the state layout written by :meth:`BatchPipeline.state_dict`.
STATE_VERSION = 1

_KEY_VERSION = "version"
_KEY_SETTINGS = "settings"
_KEY_BATCHER = "batcher"
_KEY_READY = "ready"
_KEY_ROWS_HELD = "rows_held"
_KEY_BATCHES_SERVED = "batches_served"

_JOIN_TIMEOUT_S = 10.0
_NOTHING: tuple = ()


class BatchPipeline:
    """Column batches of exactly ``batch_size`` rows from a petastorm reader, prefetched in the background.

    Parameters
    ----------
    reader : petastorm Reader
        ``make_batch_reader`` (column batches are re-cut by slicing) or ``make_reader`` (rows are gathered
        into columns). The pipeline reads it once, to its end (``num_epochs`` epochs).
    batch_size : int
        Rows per batch (>= 1); the last batch is shorter unless ``drop_last``.
    shuffling_queue_capacity : int
        0: reader order. > 0: rows are shuffled through a column buffer of this many rows (see
        :class:`petastorm.adapters.batcher.Batcher`).
    min_after_retrieve : int, optional
        Rows kept in the buffer after a retrieval while the reader has more (default ``capacity -
        batch_size``).
    seed : int, optional
        Seed of the shuffling buffer (its RNG state is part of :meth:`state_dict` either way).
    drop_last : bool
        Drop a last batch shorter than ``batch_size``.
    transform_fn : callable, optional
        ``dict[str, np.ndarray] -> Any``, run on each numpy batch in the producer.
    convert : callable, optional
        Run after ``transform_fn`` in the producer (e.g. numpy -> torch tensors, pinning, ``.to(device)``,
        ``jax.device_put``). Its result is what iteration yields.
    prefetch : int
        Hand-offs (chunks) prepared ahead by a background thread (bounded); 0: everything runs in ``next()``.
        A chunk is one batch, or with ``convert_block`` up to :data:`CHUNK_BATCHES` whole batches (and at most
        half of ``gc.get_threshold()[0]`` Python objects: a batch counts its columns + 1) cut from one
        reader batch (views of it, so the memory held stays that of the reader batches).
    stop_reader_on_error : bool
        When the reader, ``transform_fn`` or ``convert`` raises, stop the reader before re-raising.
    chunk_fn : callable, optional
        ``dict[str, np.ndarray] -> dict[str, np.ndarray]`` run (in the producer) on each column batch from the
        reader, before batching and shuffling (where the original torch loaders ran ``transform_fn``).
    convert_block : callable, optional
        ``(columns of k * batch_size rows, k) -> list of k converted batches`` (None: not applicable), what
        ``convert`` gives for each of the ``k`` equal row ranges. Without shuffling and ``transform_fn``, the
        whole batches in one reader batch are cut, handed over and converted ``k`` at a time with it, in the
        consumer's thread (``next()``). If it raises, the block is converted again batch by batch with
        ``convert``, so an error comes with its own batch.

    Notes
    -----
    Errors of the reader, ``transform_fn`` or ``convert`` are re-raised by ``next()`` in the consumer's thread;
    the pipeline is then closed. ``close()`` (idempotent, run on garbage collection) stops the thread, not the reader.
    """

    def __init__(self, reader: Any, batch_size: int, *, shuffling_queue_capacity: int = 0,
                 min_after_retrieve: Optional[int] = None, seed: Optional[int] = None, drop_last: bool = False,
                 transform_fn: Optional[Callable] = None, convert: Optional[Callable] = None, prefetch: int = 2,
                 stop_reader_on_error: bool = True, chunk_fn: Optional[Callable] = None,
                 convert_block: Optional[Callable] = None) -> None:
        batch_size = ensure_int("batch_size", batch_size, 1)
        shuffling_queue_capacity = ensure_int("shuffling_queue_capacity", shuffling_queue_capacity, 0)
        if min_after_retrieve is not None:
            min_after_retrieve = ensure_int("min_after_retrieve", min_after_retrieve, 0)
        prefetch = ensure_int("prefetch", prefetch, 0)
        for name, fn in (("transform_fn", transform_fn), ("convert", convert), ("chunk_fn", chunk_fn),
                         ("convert_block", convert_block)):
            if fn is not None and not callable(fn):
                raise PetastormArgumentTypeError(f"{name} must be callable or None, got {fn!r}")
        self._reader = reader
        self._settings = {"batch_size": batch_size, "shuffling_queue_capacity": shuffling_queue_capacity,
                          "min_after_retrieve": min_after_retrieve, "drop_last": bool(drop_last)}
        self._seed = seed
        self._prefetch = prefetch
        self._stop_reader_on_error = stop_reader_on_error
        batcher = Batcher(ReaderSource(reader), batch_size, shuffling_queue_capacity, min_after_retrieve,
                          seed, drop_last, chunk_fn)
        self._shared = SharedProducer(batcher, transform_fn, convert, prefetch, convert_block)
        self._thread: Optional[threading.Thread] = None
        self._thread_pid = os.getpid()
        self._started = False
        self._closed = False
        self._ended = False
        self._batches_served = 0
        self._chunk: Optional[Chunk] = None   # the chunk being served (consumer side)
        self._outs: Any = _NOTHING             # its converted batches; self._pos: the next one to yield
        self._pos = 0

    # --- settings -------------------------------------------------------------------------------------------

    @property
    def settings(self) -> dict:
        """The settings a state must match: batch_size, shuffling_queue_capacity, min_after_retrieve, drop_last."""
        return dict(self._settings)

    @property
    def reader(self) -> Any:
        return self._reader

    def explain(self, epoch: Optional[int] = None, *, row_counts: bool = False) -> Any:
        """The reader's :class:`~petastorm.reader_impl.explain.ReadPlan` with this pipeline's shuffling buffer
        simulated on row ids (``buffered_quality``: the order the batches hold). Reads no data."""
        from petastorm.adapters.buffer_quality import loader_buffer
        from petastorm.errors import PetastormTypeError
        from petastorm.reader_impl.explain import explain_reader

        if not hasattr(self._reader, "explain"):
            raise PetastormTypeError(f"{type(self._reader).__name__} has no explain(): build the reader with "
                                     f"make_reader or make_batch_reader")
        s = self._settings
        buffer = None
        if s["shuffling_queue_capacity"]:
            buffer = loader_buffer(s["shuffling_queue_capacity"], s["batch_size"],
                                   min_after_retrieve=s["min_after_retrieve"], seed=self._seed)
        return explain_reader(self._reader, epoch, row_counts=row_counts, buffer_order=buffer)

    # --- iteration -------------------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Any]:
        return self

    def _start(self) -> None:
        self._started = True
        if self._prefetch > 0:
            self._thread = threading.Thread(target=self._shared.run, name="petastorm-batch-prefetch", daemon=True)
            self._thread.start()
            self._thread_pid = os.getpid()

    def _dead_thread_message(self) -> str:
        if os.getpid() != self._thread_pid:  # a fork copies only the forking thread
            return (f"this loader's pass was started in process {self._thread_pid} and cannot go on in process "
                    f"{os.getpid()}, a child made by os.fork(): its prefetch thread is the parent's. Make the reader "
                    f"and the loader in the process that reads them")
        return "the prefetch thread ended unexpectedly"

    def __next__(self) -> Any:
        pos = self._pos
        outs = self._outs
        if pos < len(outs):  # the common case: the next batch of the chunk being served, no lock
            self._pos = pos + 1
            self._batches_served += 1
            out = outs[pos]
            outs[pos] = None  # freed once the consumer drops it (not kept alive, and tracked, by the chunk)
            return out
        return self._next_chunk()

    def _next_chunk(self) -> Any:
        """The first batch of the next chunk (or the end of the pass)."""
        if self._ended:
            raise StopIteration
        if self._closed:
            raise PetastormReaderError("the batch pipeline was closed")
        chunk = self._chunk
        if chunk is None or not chunk.end:
            if not self._started:
                self._start()
            chunk = self._take_chunk()
            if chunk.outs is None:
                try:
                    self._shared.convert_chunk(chunk)
                except BaseException:  # Ctrl-C: the chunk is not served, and a state taken now still holds it
                    chunk.outs = None
                    with self._shared.cond:
                        self._shared.ready.appendleft(chunk)
                    raise
            self._chunk, self._outs, self._pos = chunk, chunk.outs, 0
            if chunk.outs:
                return self.__next__()
        self._ended = True
        self._outs = _NOTHING
        self.close()
        if chunk.error is not None:
            if self._stop_reader_on_error:
                self._stop_reader()
            if isinstance(chunk.error, StopIteration):  # raised as it is, it would end the caller's loop silently
                from petastorm.errors import PetastormWorkerError

                raise PetastormWorkerError(f"transform_fn or convert raised StopIteration ({chunk.error!r}); the "
                                           f"pass ends here (as PEP 479 makes it in a generator)") from chunk.error
            raise chunk.error
        raise StopIteration

    def _take_chunk(self) -> Chunk:
        sh = self._shared
        if self._thread is None:
            return sh.ready.popleft() if sh.ready else sh.produce_one(reraise_interrupt=True)
        with sh.cond:
            while not sh.ready:
                if not self._thread.is_alive() and not sh.ready:
                    return Chunk([], end=True, error=PetastormReaderError(self._dead_thread_message()))
                sh.waiting += 1
                try:
                    sh.cond.wait(0.5)
                finally:
                    sh.waiting -= 1
            chunk = sh.ready.popleft()
            # a block of batches taken: the producer is woken once the deque is empty and refills it in one go (one
            # wake-up and GIL hand-off per `capacity` blocks, each block enough batches to hide the refill); a single
            # batch (the device path, transform_fn): at once, to keep `capacity` batches ready
            if not sh.ready or chunk.n <= 1:
                sh.cond.notify_all()
        return chunk

    def _stop_reader(self) -> None:
        for name in ("stop", "join"):
            fn = getattr(self._reader, name, None)
            if fn is not None:
                try:
                    fn()
                except Exception:  # noqa: BLE001 - the original error matters more
                    pass

    @property
    def rows_held(self) -> int:
        """Rows taken from the reader and not yet yielded (buffer, partial batch, prefetched batches)."""
        with self._paused() as ready:
            return self._shared.batcher.rows_held + sum(num_rows(b) for b in self._unserved(ready))

    def _unserved(self, ready: list) -> list:
        """The numpy batches handed over or prefetched and not yet yielded (call while paused)."""
        batches = []
        for chunk, start in self._unserved_chunks(ready):
            batches.extend(chunk.numpy_batches(start))
        return batches

    def _unserved_chunks(self, ready: list) -> list:
        """``[(chunk, first batch not yielded)]``: the consumer's chunk, then the deque's."""
        current = [(self._chunk, self._pos)] if self._chunk is not None else []
        return current + [(chunk, 0) for chunk in ready]

    def _batcher_state(self, ready: list) -> tuple:
        """``(batcher state, numpy batches not yet yielded to carry as copies)``, while paused.

        From the first block not yet yielded whose reader batch the batcher can re-read, the state re-reads
        (``Batcher.state_dict(replay_from=...)``): those batches and every row taken after them are not
        copied into it (up to ``prefetch + 1`` chunks of batches otherwise); batches before it are copies."""
        batcher = self._shared.batcher
        chunks = [(c, start) for c, start in self._unserved_chunks(ready) if start < c.n]
        for i, (chunk, start) in enumerate(chunks):
            if chunk.origin is not None and batcher.can_replay_from(chunk.origin):
                serial, offset = chunk.origin
                origin = (serial, offset + start * (num_rows(chunk.block) // chunk.n))
                copies = []
                for c, first in chunks[:i]:
                    copies.extend(c.numpy_batches(first))
                return batcher.state_dict(replay_from=origin), copies
        copies = []
        for c, first in chunks:
            copies.extend(c.numpy_batches(first))
        return batcher.state_dict(), copies

    class _Pause:
        def __init__(self, shared: SharedProducer, threaded: bool) -> None:
            self.shared, self.threaded = shared, threaded

        def __enter__(self) -> list:
            sh = self.shared
            if not self.threaded:
                return list(sh.ready)
            with sh.cond:
                sh.paused += 1
                while sh.busy:
                    sh.cond.wait()
                return list(sh.ready)

        def __exit__(self, *exc: Any) -> None:
            if self.threaded:
                with self.shared.cond:
                    self.shared.paused -= 1
                    self.shared.cond.notify_all()

    def _paused(self) -> "_Pause":
        return self._Pause(self._shared, self._thread is not None and self._thread.is_alive())

    def state_dict(self) -> dict:
        """Everything needed to continue exactly after the last batch yielded.

        Returns
        -------
        dict
            ``{"version", "settings", "batcher": {reader state, rows pending, shuffling buffer rows and RNG},
            "ready": [numpy batches prefetched and not yet yielded], "rows_held", "batches_served"}``.
            Holds numpy arrays (the buffered rows): save it with ``pickle``/``torch.save``.
        """
        if self._ended and self._chunk is not None and self._chunk.error is not None:
            raise PetastormStateError(f"the pass failed with {self._chunk.error!r}: the rows it held cannot be saved "
                                      f"exactly. Resume from a state saved before the error")
        ensure_outside("state_dict()")
        with self._paused() as ready:
            held = self._shared.batcher.rows_held + sum(num_rows(b) for b in self._unserved(ready))
            batcher_state, batches = self._batcher_state(ready)
        return {_KEY_VERSION: STATE_VERSION, _KEY_SETTINGS: dict(self._settings), _KEY_BATCHER: batcher_state,
                _KEY_READY: [dict(b) for b in batches], _KEY_ROWS_HELD: held,
                _KEY_BATCHES_SERVED: self._batches_served}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from :meth:`state_dict`; call before iterating, on a pipeline over a reader not read yet.

        A job state from ``petastorm.merge_state_dicts`` is continued with :meth:`load_job_state`.

        Raises
        ------
        PetastormStateError
            Another version, other settings (the message names each one that differs) or, from the
            reader, another dataset or other reader options.
        """
        if self._started:
            raise PetastormReaderError("load_state_dict must be called before the first batch is read")
        from petastorm.adapters.elastic import is_loader_job_state

        if is_loader_job_state(state):  # merged by petastorm.merge_state_dicts: elastic resume
            self.load_job_state(state)
            return
        if not isinstance(state, Mapping):
            raise PetastormStateError(f"loader state must be a dict from state_dict(), got {type(state).__name__}")
        version = state.get(_KEY_VERSION)
        if version != STATE_VERSION:
            raise PetastormStateError(f"unknown batch pipeline state version {version!r}; this petastorm reads "
                                      f"version {STATE_VERSION}")
        check_settings(state.get(_KEY_SETTINGS), self._settings, what="loader")
        ready = state_batches(state.get(_KEY_READY), self._settings["batch_size"], "loader state ('ready')")
        served = state_int(state, _KEY_BATCHES_SERVED, "loader state", default=0)
        with state_part("loader state ('batcher')"):
            self._shared.batcher.load_state_dict(state[_KEY_BATCHER])
        self._shared.ready.extend(Chunk([self._shared._one(batch)], [batch]) for batch in ready)
        self._batches_served = served

    def load_job_state(self, job: Mapping[str, Any]) -> None:
        """Continue a merged job state (``petastorm.merge_state_dicts``) as this reader's rank: the reader
        takes its share of the positions left, and this pipeline its share of the rows the loaders held.

        Raises
        ------
        PetastormStateError
            Other settings (named), or from the reader: another dataset or options, not a balanced reader.
        """
        from petastorm.adapters.elastic import check_loader_job, held_share

        if self._started:
            raise PetastormReaderError("load_state_dict must be called before the first batch is read")
        check_loader_job(job)
        check_settings(job.get("settings"), self._settings, what="loader")
        if isinstance(job.get("held"), list) and job.get("held"):
            raise PetastormStateError("the job state holds rows of a DataLoader with a custom collate_fn (row "
                                      "dicts): resume it with such a DataLoader")
        self._shared.batcher.source.load_state_dict(job["reader"])
        share = held_share(job, self._reader)
        if share and num_rows(share):
            batcher = self._shared.batcher
            batcher._pending, batcher._pending_ids, batcher._pending_rows = [share], [0], num_rows(share)

    # --- lifecycle -------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the prefetch thread (idempotent). The reader is left as it is."""
        if self._closed:
            return
        self._closed = True
        self._outs = _NOTHING
        sh = self._shared
        with sh.cond:
            sh.stop = True
            sh.cond.notify_all()
        thread = self._thread
        # ident None: a Ctrl-C came before the thread started (joining it would raise RuntimeError instead)
        if thread is not None and thread is not threading.current_thread() and thread.ident is not None:
            thread.join(_JOIN_TIMEOUT_S)

    def __enter__(self) -> "BatchPipeline":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass
