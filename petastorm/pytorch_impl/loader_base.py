"""``LoaderBase``: what every torch loader shares - the original's re-iteration rules, ``len()``, the context
manager, error handling and the frame of ``state_dict()`` / ``load_state_dict()``.

Re-iteration rules (recorded from petastorm 0.12.1):

- ``iter(loader)`` returns a generator; the checks below run when it is first advanced (as the original's).
- A pass that ran to its end may be followed by another: the reader is ``reset()`` first.
- Advancing a second iterator while a pass is running raises ``RuntimeError`` with the original's wording
  (:data:`PARALLEL_ITER_ERROR`); the first iterator keeps working.
- An iterator abandoned mid-pass (closed or garbage-collected) ends its pass; the next pass asks the reader
  to ``reset()``, which refuses (``NotImplementedError``: the reader is in the middle of an epoch); where
  the pass had read the reader to its end ahead of the batches it served, the loader refuses alike
  (:data:`MID_PASS_RESET_ERROR`), so the rule does not depend on the dataset's size.
  ``state_dict()`` still describes the abandoned pass (the position after its last batch served), so a loader
  left with ``break`` can be checkpointed and resumed exactly.
- After an error during a pass, every later pass raises the original's ``RuntimeError``
  ("Cannot start a new iteration because last time iteration failed with error ..."). Unlike the original,
  the reader is also stopped and joined at once, so no worker is left running.

One deliberate difference: the original kept the last, short batch of a pass and served it again at the
start of the next pass (rows repeated); here each pass yields each row once.

State layout (``state_dict()``: plain values only - numpy arrays, numpy scalars, Decimals and dates are
encoded by :mod:`~petastorm.adapters.state_codec` - so ``torch.save`` / ``torch.load`` with its default
``weights_only=True`` round-trip it, as do pickle and JSON-like checkpoint stores that take bytes)::

    {"version": 1, "loader": "DataLoader", "settings": {...}, "passes_done": 1, "in_pass": True,
     "body": {...subclass state of the pass...} | None, "reader": reader.state_dict() | None,
     "shuffle_seed": int | None, "digest": "..."}

``shuffle_seed`` is the base seed of the loader's shuffling (:meth:`LoaderBase._shuffle_seed`), taken by the
restored loader; a state without it (saved before it existed) continues with the seed of the reader it
restores, per pass, as the code that saved it did.

``digest`` (:func:`~petastorm.adapters.state_codec.with_digest`) lets :meth:`LoaderBase.load_state_dict` refuse a
state changed or cut after it was saved (a ``PetastormStateError``) instead of resuming with rows lost or repeated.

``body`` is the subclass's state of the running pass (reader cursor, buffered rows, RNG, partial batch);
between passes only the reader's state is kept, so the next pass starts where the saved one would have.
"""
from __future__ import annotations

import logging
from typing import Any, Iterator, Mapping, Optional

from petastorm.adapters.checks import ensure_outside
from petastorm.adapters.state_codec import check_digest, decode_state, encode_state, with_digest
from petastorm.errors import PetastormReaderError, PetastormStateError

__all__ = ["LoaderBase", "PARALLEL_ITER_ERROR", "MID_PASS_RESET_ERROR", "LOADER_STATE_VERSION", "reader_seed",
           "ensure_reader", "reader_made_without_seed"]

logger = logging.getLogger("petastorm.pytorch")

#: A new pass after one left with rows not served: the reader's reset() message (0.12.1), and why.
MID_PASS_RESET_ERROR = ("Currently do not support resetting a reader while in the middle of iteration. You can call "
                        "reset only after all samples were consumed. (The loader's last pass was left before its "
                        "end with rows it had read not served: finish the pass, or make a new reader and loader.)")

#: The original's message when a second pass is started during a pass (its missing space kept).
PARALLEL_ITER_ERROR = ("You must finish a full pass of Petastorm DataLoader before making another pass from "
                       "the beginning.If you do need to terminate early and restart from beginning, please "
                       "re-create the reader and the data loader.")

#: Version of the layout written by :meth:`LoaderBase.state_dict`.
LOADER_STATE_VERSION = 1

_K_VERSION = "version"
_K_LOADER = "loader"
_K_SETTINGS = "settings"
_K_PASSES = "passes_done"
_K_IN_PASS = "in_pass"
_K_BODY = "body"
_K_READER = "reader"
_K_SHUFFLE_SEED = "shuffle_seed"


def ensure_reader(reader: Any, loader: str) -> None:
    """Refuse what is no reader (``None``, a number) or an ngram reader when the loader is made, naming the
    argument (instead of a bare ``TypeError`` / ``AttributeError`` at the first batch or at ``stop()``).

    Raises
    ------
    PetastormTypeError
        ``reader`` cannot be iterated.
    PetastormArgumentError
        ``reader`` was made with an ngram.
    """
    from petastorm.errors import PetastormArgumentError, PetastormTypeError

    if reader is None or not hasattr(reader, "__iter__"):
        raise PetastormTypeError(f"reader: {loader} needs a petastorm reader (make_reader / make_batch_reader), "
                                 f"got {type(reader).__name__}")
    if getattr(reader, "ngram", None) is not None:
        raise PetastormArgumentError(f"reader: {loader} does not support readers with an ngram")


def reader_seed(reader: Any) -> Optional[int]:
    """The seed the reader plans with (an int even for a reader made with ``seed=None``: its state records the
    seed it drew), or None for a reader without a usable ``state_dict()`` (shuffling is then unseeded)."""
    state_dict = getattr(reader, "state_dict", None)
    if state_dict is None:
        return None
    try:
        seed = state_dict().get("seed")
    except Exception:  # noqa: BLE001 - a reader without a usable state (a mock): unseeded shuffling
        return None
    return None if seed is None else int(seed)


def reader_made_without_seed(reader: Any) -> bool:
    """True for a petastorm reader made with ``seed=None`` (its plan's seed was drawn from the OS: the reader's
    ``state_dict()`` holds it, but it is another one on every run)."""
    return getattr(reader, "seeded", None) is False


class LoaderBase:
    """Base of the torch loaders: iteration rules, ``len()``, context manager and resumable state.

    Subclasses set ``self.reader`` and implement :meth:`_iter_impl`; ``self._passes_done`` (passes run to their
    end, restored by :meth:`load_state_dict`) is the 0-based number of the running pass. To support ``len()``,
    :meth:`_length`; to support resume, :meth:`_settings`, :meth:`_pass_state` and :meth:`_load_pass_state`
    (and may override :meth:`_close_pass` to release what a pass holds, e.g. a prefetch thread).
    """

    reader: Any = None

    def __init__(self) -> None:
        self._in_iter: bool = False
        self._error: Optional[BaseException] = None
        self._passes_started = 0
        self._passes_done = 0
        self._resume_in_pass = False      # load_state_dict() restored a running pass: continue it, no reset
        self._drain_before_reset = False  # load_state_dict() restored a reader at the end of a pass
        self._left_early = False          # the last pass was left before its end (break, close, Ctrl-C)
        self._left_rows = False           # ... with rows read ahead from a reader at its end, not served
        self._base_seed: Optional[int] = None  # see _shuffle_seed()
        self._seed_from_reader = False  # restored from a state without shuffle_seed: see _shuffle_seed()

    # --- to implement ------------------------------------------------------------------------------------

    def _iter_impl(self) -> Iterator[Any]:
        """Yield the batches of one pass (continuing a restored pass when ``self._resume_in_pass``)."""
        raise NotImplementedError

    def _length(self) -> Optional[int]:
        """Number of batches of one pass, or None when it is not known (``len()`` then raises TypeError)."""
        return None

    def _settings(self) -> dict:
        """Settings a saved state must match (JSON-like values), e.g. ``{"batch_size": 8}``."""
        return {}

    def _pass_state(self) -> dict:
        """State of the running pass: enough to continue it with no row lost or repeated."""
        raise NotImplementedError(f"{type(self).__name__} does not support state_dict() during a pass")

    def _load_pass_state(self, body: Mapping[str, Any]) -> None:
        """Restore :meth:`_pass_state` into this loader over a fresh reader (before iterating)."""
        raise NotImplementedError(f"{type(self).__name__} does not support load_state_dict() of a running pass")

    def _close_pass(self) -> None:
        """Release what the current pass holds (threads, buffers); must be idempotent."""

    def _pass_rows_held(self) -> int:
        """Rows the current pass took from the reader and has not served (0 where unknown)."""
        return 0

    def _load_job_pass(self, job: Mapping[str, Any]) -> None:
        """Start a pass that continues a merged job state (elastic resume): the reader takes its share of the
        positions left and the pass its share of the rows the loaders held (``petastorm.adapters.elastic``)."""
        raise PetastormStateError(f"{type(self).__name__} cannot be resumed at another world size")

    # --- iteration ---------------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Any]:
        if self._error is not None:
            raise RuntimeError(f"Cannot start a new iteration because last time iteration failed with error "
                               f"{self._error!r}.")
        if self._in_iter:
            raise RuntimeError(PARALLEL_ITER_ERROR)
        if not self._resume_in_pass and (self._passes_started > 0 or self._drain_before_reset):
            if self._left_rows:
                raise NotImplementedError(MID_PASS_RESET_ERROR)
            self._reset_reader()
        resumed = self._resume_in_pass
        self._in_iter = True
        self._left_early = False
        self._passes_started += 1
        inner = self._iter_impl()
        ended = False
        try:
            yield from inner
            ended = True
            self._passes_done += 1
            if resumed:
                # a pass restored from a state saved once the reader had been read to its end never reads that
                # end again: read it before the next reset() (a resumed pass that did read it finds nothing)
                self._drain_before_reset = True
        except Exception as e:
            self._error = e
            logger.error("Iteration on Petastorm DataLoader raise error: %r", e)
            self._stop_reader()
            raise
        finally:
            inner.close()
            # a pass left early keeps its position: state_dict() describes it (rows held included), so "break,
            # then checkpoint" resumes exactly; the pass itself cannot go on (the next iter() resets the reader)
            self._left_early = not ended and self._error is None
            self._left_rows = self._left_early and self._rows_left_unserved()
            self._resume_in_pass = False
            self._in_iter = False
            self._close_pass()

    def _rows_left_unserved(self) -> bool:
        """Whether the pass just left holds rows of a reader it read to its end that 0.12.1 would not have read.
        The reader's own ``reset()`` refuses a pass left mid-epoch; this one it would accept, only because the
        pass read ahead. 0.12.1 filled its shuffling buffer to ``shuffling_queue_capacity`` rows, then served a
        batch and read again: its reader had met its end where the rows left fit in the buffer beside one batch
        (recorded over 10 rows, ``batch_size=4``, one batch served: a new pass followed with capacities 10, 12
        and 16, and was refused with 0, 4, 6 and 8). The next pass refuses alike, so the rule does not depend on
        the read-ahead."""
        if not getattr(self.reader, "last_row_consumed", False):
            return False  # reset() decides (a ReaderMock's accepts)
        try:
            held = self._pass_rows_held()
        except Exception:  # noqa: BLE001 - runs in the pass's finally: never hide why the pass ended
            return False
        return held > 0 and held + getattr(self, "batch_size", 1) > getattr(self, "shuffling_queue_capacity", 0)

    def _reset_reader(self) -> None:
        if self._drain_before_reset:
            # the reader was restored at the end of its pass: read that end, so reset() accepts it
            self._drain_before_reset = False
            for _ in self.reader:
                raise PetastormStateError("the reader restored from a state saved between passes still had rows: "
                                          "resume with the reader options the state was saved with")
        self.reader.reset()

    def _stop_reader(self) -> None:
        reader = self.reader
        if reader is None:
            return
        try:
            reader.stop()
            reader.join()
        except Exception:  # pragma: no cover - stopping must not hide the error being raised
            logger.debug("stopping the reader after an error failed", exc_info=True)

    def __len__(self) -> int:
        length = self._length()
        if length is None:
            raise TypeError(f"object of type '{type(self).__name__}' has no len()")
        return length

    def __bool__(self) -> bool:  # ``if loader:`` must not call __len__ (which may raise)
        return True

    def explain(self, epoch: Optional[int] = None, *, row_counts: bool = False) -> Any:
        """``reader.explain()`` with this loader's shuffling buffer (``shuffling_queue_capacity``) and
        ``batch_size`` simulated on row ids: a :class:`~petastorm.reader_impl.explain.ReadPlan` whose
        ``buffered_quality`` is the quality of the order the loader's next pass serves. Reads no data."""
        from petastorm.adapters.buffer_quality import loader_buffer
        from petastorm.reader_impl.explain import explain_reader

        if getattr(self.reader, "explain", None) is None:
            raise TypeError(f"{type(self.reader).__name__} has no explain(): build the reader with make_reader or "
                            f"make_batch_reader")
        if epoch is None and not self._in_iter and not self._resume_in_pass and self._passes_done > 0:
            # between passes: the next pass reads the epochs after those of the passes done (reset() moves on)
            epoch = self._passes_done * (getattr(self.reader, "num_epochs", None) or 1)
        capacity = int(getattr(self, "shuffling_queue_capacity", 0) or 0)
        buffer = None
        if capacity:
            buffer = loader_buffer(capacity, int(getattr(self, "batch_size", 1) or 1), seed=self._pass_buffer_seed())
        return explain_reader(self.reader, epoch, row_counts=row_counts, buffer_order=buffer)

    def _pass_buffer_seed(self) -> Any:
        """The seed the next pass gives its shuffling buffer (None: the reader's seed, as a first pass)."""
        return None

    def _draw_global_seed(self) -> int:
        """A seed drawn from the global RNG the original's loader shuffled with (numpy's; see
        :meth:`_shuffle_seed`)."""
        import numpy as np

        return int(np.random.randint(0, (1 << 63) - 1, dtype=np.int64))

    def _shuffle_seed(self, own: Optional[int] = None) -> Optional[int]:
        """The base seed of this loader's shuffling, fixed by the first pass that shuffles: ``own`` (a loader
        argument), else the reader's seed when it was made with one, else a seed drawn from the global RNG of the
        original's loader (:meth:`_draw_global_seed`). A loader restored by :meth:`load_state_dict` takes the
        saved one (so its later passes shuffle as the uninterrupted run's, even over a reader made without the
        seed the saved run's reader had).

        Recorded from 0.12.1: over a reader made without a seed, ``DataLoader``'s order followed
        ``numpy.random.seed`` and ``BatchedDataLoader``'s ``torch.manual_seed``, so a script that sets them got
        the same order on every run.
        """
        if self._base_seed is None:
            if own is None and self._seed_from_reader:
                # a state saved before ``shuffle_seed`` existed: its later passes were seeded from the reader's
                # seed, read per pass (the restored reader holds the saved run's), so that is what continues it
                return reader_seed(self.reader)
            if own is not None:
                self._base_seed = own
            elif reader_made_without_seed(self.reader):
                self._base_seed = self._draw_global_seed()
            else:
                self._base_seed = reader_seed(self.reader)
        return self._base_seed

    def _saved_shuffle_seed(self) -> Optional[int]:
        """``shuffle_seed`` of :meth:`state_dict`: the base seed, or the reader's seed for a loader restored from a
        state saved without it (the seed its later passes use)."""
        if self._base_seed is None and self._seed_from_reader:
            return self._shuffle_seed(self._own_seed())
        return self._base_seed

    def _own_seed(self) -> Optional[int]:
        """The seed argument of the loader that :meth:`_shuffle_seed` takes first (None: it has none)."""
        return None

    # --- lifecycle ---------------------------------------------------------------------------------------

    def __enter__(self) -> "LoaderBase":
        return self

    def __exit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        """Release the current pass, then stop and join the reader."""
        self._close_pass()
        if self.reader is not None:
            self.reader.stop()
            self.reader.join()

    # --- state -------------------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """Where this loader is: continue with ``load_state_dict()`` on a new loader over a new reader made
        with the same arguments. Take it between two batches (in the training loop, after a step), or after
        leaving the loop early (``break``): the position is then right after the last batch served.

        Returns
        -------
        dict
            See the module docstring; holds numpy arrays when rows are buffered.

        Raises
        ------
        PetastormStateError
            The last pass failed with an error (its rows cannot be saved exactly).
        """
        if self._error is not None:
            raise PetastormStateError(f"the last pass failed with {self._error!r}: the rows it held cannot be saved "
                                      f"exactly. Resume from a state saved before the error")
        if self._in_iter:
            ensure_outside("state_dict()")
        in_pass = self._in_iter or self._resume_in_pass or self._left_early
        return with_digest(encode_state({
            _K_VERSION: LOADER_STATE_VERSION,
            _K_LOADER: type(self).__name__,
            _K_SETTINGS: dict(self._settings()),
            _K_PASSES: self._passes_done,
            _K_IN_PASS: in_pass,
            _K_BODY: self._pass_state() if in_pass else None,
            _K_READER: None if in_pass else self.reader.state_dict(),
            _K_SHUFFLE_SEED: self._saved_shuffle_seed(),
        }))

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from :meth:`state_dict`; call before iterating, on a loader over a fresh reader.

        ``state`` may also be a job state from ``petastorm.merge_state_dicts`` (the states of every rank of a
        checkpoint, readers with ``shard_mode='balanced'``): this loader then continues the job as its reader's
        rank, at any world size (``docs/elastic_resume.md``).

        Raises
        ------
        PetastormStateError
            The state is malformed (the message names the part), was changed or cut after ``state_dict()``,
            comes from another loader class, was saved with other loader settings (the message names each
            one), or its reader state does not fit this reader (another dataset or other reader options: the
            reader's message says which). The loader is then left half-restored: make a new one.
        PetastormReaderError
            Called during a pass.
        """
        from petastorm.adapters.checks import check_settings, state_int, state_part

        if self._in_iter or self._passes_started:
            raise PetastormReaderError("load_state_dict() must be called on a new loader, before iterating it")
        if not isinstance(state, Mapping):
            raise PetastormStateError(f"a loader state must be a dict from state_dict(), got {type(state).__name__}")
        from petastorm.adapters.elastic import is_loader_job_state

        if is_loader_job_state(state):  # merged by petastorm.merge_state_dicts: elastic resume
            self._load_job_state(state)
            return
        name = type(self).__name__
        missing = [k for k in (_K_VERSION, _K_LOADER, _K_SETTINGS, _K_PASSES, _K_IN_PASS, _K_BODY, _K_READER)
                   if k not in state]
        if missing:
            if state.get("kind") == "petastorm.jax.JaxIterator":
                raise PetastormStateError(f"loader: the state was saved from make_jax_iterator, this is a {name}")
            raise PetastormStateError(f"not a {name} state: keys {missing} are missing")
        if state[_K_VERSION] != LOADER_STATE_VERSION:
            raise PetastormStateError(f"loader state version {state[_K_VERSION]!r} is not supported "
                                      f"(expected {LOADER_STATE_VERSION})")
        if state[_K_LOADER] != name:
            raise PetastormStateError(f"loader: the state was saved from a {state[_K_LOADER]}, this is a {name}")
        check_settings(state[_K_SETTINGS], self._settings(), name)
        check_digest(state, f"{name} state")
        state = decode_state(state)
        passes_done = state_int(state, _K_PASSES, f"{name} state")
        in_pass = state[_K_IN_PASS]
        if not isinstance(in_pass, bool):
            raise PetastormStateError(f"malformed {name} state: 'in_pass' must be True or False, got {in_pass!r}")
        part = _K_BODY if in_pass else _K_READER
        if not isinstance(state[part], Mapping):
            raise PetastormStateError(f"malformed {name} state: {part!r} must be a dict "
                                      f"{'of the running pass' if in_pass else 'from reader.state_dict()'}, got "
                                      f"{type(state[part]).__name__}")
        base_seed = state.get(_K_SHUFFLE_SEED)
        if base_seed is not None and (isinstance(base_seed, bool) or not isinstance(base_seed, int)):
            raise PetastormStateError(f"malformed {name} state: {_K_SHUFFLE_SEED!r} must be an integer or None, got "
                                      f"{base_seed!r}")
        self._base_seed = base_seed  # before _load_pass_state: its pass is seeded with it
        # a state saved before shuffle_seed existed (its key missing, not None): the reader's seed, as it was saved
        self._seed_from_reader = _K_SHUFFLE_SEED not in state
        self._passes_done = passes_done  # before _load_pass_state: it may seed by the pass number
        with state_part(f"{name} state ({part!r})"):
            if in_pass:
                self._load_pass_state(state[_K_BODY])
            else:
                self._load_reader_state(state[_K_READER])
        if in_pass:
            self._resume_in_pass = True
        else:
            self._drain_before_reset = self._passes_done > 0

    def _load_reader_state(self, reader_state: Mapping[str, Any]) -> None:
        """Restore the reader of a state saved between passes (a loader may override: see InMem)."""
        self.reader.load_state_dict(reader_state)

    def _load_job_state(self, job: Mapping[str, Any]) -> None:
        from petastorm.adapters.checks import check_settings
        from petastorm.adapters.elastic import check_loader_job

        check_loader_job(job)
        if job.get("loader") != type(self).__name__:
            raise PetastormStateError(f"loader: the job state was merged from {job.get('loader')} states, this is a "
                                      f"{type(self).__name__}")
        check_settings(job.get("settings"), self._settings(), type(self).__name__)
        base_seed = job.get("shuffle_seed")
        if base_seed is not None and (isinstance(base_seed, bool) or not isinstance(base_seed, int)):
            raise PetastormStateError(f"malformed job state: {_K_SHUFFLE_SEED!r} must be an integer or None, got "
                                      f"{base_seed!r}")
        self._base_seed = base_seed  # the ranks' common base seed (petastorm.merge_state_dicts), else drawn anew
        self._passes_done = int(job.get("passes_done") or 0)
        if job.get("in_pass"):
            self._load_job_pass(job)
            self._resume_in_pass = True
        else:
            self.reader.load_state_dict(job["reader"])
            self._drain_before_reset = self._passes_done > 0
