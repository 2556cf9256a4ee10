"""Synchronous batching: reader output -> column batches of exactly ``batch_size`` rows.

:class:`ReaderSource` turns what a reader yields into column batches (``dict`` of numpy arrays): a
``make_batch_reader`` namedtuple of columns as it is, ``make_reader`` rows gathered ``max_rows`` at a time
into columns (``np.stack`` per field). :class:`Batcher` re-cuts them to ``batch_size`` rows, through a
:class:`ColumnShufflingBuffer` when shuffling, and can save and restore everything it holds.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator, Mapping, Optional

import numpy as np

from petastorm.adapters.column_buffer import (
    Columns,
    ColumnShufflingBuffer,
    concat_columns,
    num_rows,
    slice_columns,
)
from petastorm.errors import PetastormArgumentError, PetastormStateError, PetastormTypeError

__all__ = ["ReaderSource", "Batcher", "rows_to_columns", "shuffle_buffer_layout", "MAX_ROUND_BATCHES",
           "ROUND_FRACTION"]

_READER = "reader"
_PENDING = "pending"
_BUFFER = "buffer"
_DONE = "done"
_REPLAY = "replay"
_REPLAY_READER, _REPLAY_READ, _REPLAY_ROWS, _REPLAY_SKIP = "reader", "rows_read", "rows", "skip"
#: At most this many batches are drawn from the shuffling buffer at once (``ColumnShufflingBuffer`` rounds) ...
MAX_ROUND_BATCHES = 8
#: ... and a round holds at most ``1 / ROUND_FRACTION`` of the buffer's rows.
ROUND_FRACTION = 8
#: Reader batches whose read position the batcher remembers (a state may start again in any of them).
_KEEP_TAKEN = 16


def shuffle_buffer_layout(capacity: int, batch_size: int, min_after_retrieve: Optional[int] = None) -> tuple:
    """The loaders' shuffling buffer for ``shuffling_queue_capacity=capacity``: ``(rows, rounds)``, its rows
    (:class:`ColumnShufflingBuffer` capacity) and the batches it draws at once (its ``rounds``).

    ``rows = max(capacity, min_after_retrieve + batch_size)`` (``min_after_retrieve`` defaults to
    ``capacity - batch_size``). ``rounds``: as many batches as fit in an eighth of those rows, at most
    :data:`MAX_ROUND_BATCHES`, at least 1; with an explicit ``min_after_retrieve``, also few enough that a
    round leaves ``min_after_retrieve`` rows behind. With the default ``min_after_retrieve`` the buffer gets
    ``(rounds - 1) * batch_size // 2`` more rows: a round of ``R`` batches is drawn from a full buffer that then
    holds ``R * batch_size`` rows fewer until it is refilled, where one batch at a time keeps it full, and
    the extra rows make up for that (the shuffle-quality metric of ``petastorm.reader_impl.shuffle_quality``
    on 1M rows, 100k buffer, batch 1024: mixing 0.9323 with one batch at a time, 0.9294 with rounds of 8 and
    no extra rows, 0.9325 with them; displacement 0.1982 in both).

    Parameters
    ----------
    capacity : int
        ``shuffling_queue_capacity`` (> 0).
    batch_size : int
    min_after_retrieve : int, optional
        As given by the user (None: the default).
    """
    explicit = min_after_retrieve is not None
    min_after = min_after_retrieve if explicit else max(0, capacity - batch_size)
    rows = max(capacity, min_after + batch_size)
    rounds = min(MAX_ROUND_BATCHES, rows // (ROUND_FRACTION * batch_size))
    if explicit:
        rounds = min(rounds, (rows - min_after) // batch_size)
    rounds = max(1, rounds)
    if not explicit:
        rows += (rounds - 1) * batch_size // 2
    return rows, rounds


def rows_to_columns(rows: list, fields: list) -> Columns:
    """Gather row namedtuples into columns: ``np.stack`` for array cells, ``np.asarray`` for scalars.

    Cells that cannot form one array (different shapes, ``None`` among arrays) become object arrays.
    """
    out = {}
    for i, name in enumerate(fields):
        values = [row[i] for row in rows]
        first = values[0]
        if isinstance(first, np.ndarray):
            try:
                out[name] = np.stack(values)
                continue
            except (ValueError, TypeError):
                pass
            col = np.empty(len(values), dtype=object)
            col[:] = values
            out[name] = col
        else:
            try:
                col = np.asarray(values)
            except ValueError:
                col = np.empty(len(values), dtype=object)
                col[:] = values
            out[name] = col
    return out


class ReaderSource:
    """Column batches from a petastorm ``Reader`` (row or batch reader), with the reader's state.

    Parameters
    ----------
    reader : petastorm Reader
        ``make_reader`` or ``make_batch_reader``. Ngram readers are refused.
    """

    def __init__(self, reader: Any) -> None:
        if getattr(reader, "ngram", None) is not None:
            raise PetastormArgumentError("reader: readers with an ngram are not supported by the batching "
                                         "loaders; use a reader without ngram")
        self.reader = reader
        self.is_batched = bool(getattr(reader, "is_batched_reader", getattr(reader, "batched_output", False)))
        self._it: Optional[Iterator] = None
        self.fields: Optional[list] = None
        #: A KeyboardInterrupt came out of the batch reader's next() (the reader survives it, and nothing was taken
        #: from it: the batching around it may go on); reset by whoever handles it.
        self.interrupted = False

    def next_chunk(self, max_rows: int) -> Optional[Columns]:
        """The next column batch (a row reader gives at most ``max_rows`` rows); None once the reader ends."""
        if self._it is None:
            self._it = iter(self.reader)
        if self.is_batched:
            while True:
                try:
                    batch = next(self._it)
                except StopIteration:
                    return None
                except KeyboardInterrupt:  # a Ctrl-C while the reader was asked: nothing was taken from it
                    self.interrupted = True
                    raise
                cols = batch._asdict() if hasattr(batch, "_asdict") else dict(batch)
                cols = {k: v if isinstance(v, np.ndarray) else np.asarray(v) for k, v in cols.items()}
                if num_rows(cols):
                    return cols
        rows = []
        for row in self._it:
            rows.append(row)
            if len(rows) >= max_rows:
                break
        if not rows:
            return None
        if self.fields is None:
            if not hasattr(rows[0], "_fields"):
                raise PetastormTypeError(
                    f"reader yields {type(rows[0]).__name__}, expected row namedtuples (make_reader) or column "
                    f"batches (make_batch_reader)")
            self.fields = list(rows[0]._fields)
        return rows_to_columns(rows, self.fields)

    def state_dict(self) -> Optional[dict]:
        """``reader.state_dict()``.

        Raises
        ------
        PetastormStateError
            The reader has no ``state_dict()`` (``ReaderMock``, ``WeightedSamplingReader``): its position cannot
            be saved, so neither can the loader's.
        """
        fn = getattr(self.reader, "state_dict", None)
        if fn is None:
            raise PetastormStateError(
                f"reader: a {type(self.reader).__name__} has no state_dict(), so a loader over it cannot save its "
                f"position; exact resume needs a reader from make_reader or make_batch_reader")
        return fn()

    def load_state_dict(self, state: Optional[dict]) -> None:
        if state is None:
            return
        fn = getattr(self.reader, "load_state_dict", None)
        if fn is None:
            raise PetastormStateError("the state holds a reader state but this reader has no load_state_dict")
        fn(state)


def _is_elastic(reader_state: Optional[dict]) -> bool:
    """Whether the reader state can be resumed at another world size (``petastorm.adapters.elastic``)."""
    extra = (reader_state or {}).get("extra") if isinstance(reader_state, Mapping) else None
    return isinstance(extra, Mapping) and "elastic" in extra


def _replay_is_positions(reader_state: Optional[dict], replay: Mapping[str, Any]) -> bool:
    """Whether the pending rows of a replay are the last positions the reader read (so an elastic resume
    can give them back to the job instead of carrying them: see ``petastorm.adapters.elastic``).

    True unless the reader is elastic-capable and its item rows are not position-ordered (``shuffle_rows``,
    a predicate) or ``chunk_fn`` changed the row count; then the state also carries the rows themselves.
    """
    extra = (reader_state or {}).get("extra") if isinstance(reader_state, Mapping) else None
    if not isinstance(extra, Mapping) or "elastic" not in extra:
        return True
    options = reader_state.get("options") or {}
    return (not options.get("shuffle_rows") and options.get("predicate") is None
            and replay[_REPLAY_READ] == replay[_REPLAY_ROWS])


class Batcher:
    """Re-cuts column batches from a :class:`ReaderSource` into batches of ``batch_size`` rows.

    Parameters
    ----------
    source : ReaderSource
    batch_size : int
        Rows per batch (>= 1). The last batch of the reader's pass is shorter unless ``drop_last``.
    shuffling_queue_capacity : int
        0: rows leave in reader order (zero-copy slices when a batch lies inside one reader batch).
        > 0: rows pass through a :class:`ColumnShufflingBuffer` holding ``max(capacity,
        min_after_retrieve + batch_size)`` rows (a few more: :func:`shuffle_buffer_layout`). Once the buffer
        is full (or the reader has ended), the rows of ``R`` batches are drawn from it at once (``R *
        batch_size <=`` an eighth of the buffer, ``R <= 8``) and served one batch after the other while the
        buffer is refilled: every batch is ``batch_size`` uniformly chosen rows of a full buffer, disjoint
        from the other batches of its round.
    min_after_retrieve : int, optional
        Default ``capacity - batch_size`` (at least 0). Given explicitly, a round also leaves at least
        ``min_after_retrieve`` rows in the buffer while the reader has more (``R`` is bounded by it).
    seed : int, optional
        Seed of the shuffling buffer.
    drop_last : bool
        Drop a last batch shorter than ``batch_size``.
    chunk_fn : callable, optional
        ``dict[str, np.ndarray] -> dict[str, np.ndarray]`` applied to each column batch as it comes from the
        reader, before batching and shuffling (the original torch loaders' per-column ``transform_fn``).
        Rows held in the state are after ``chunk_fn``, so it is not applied again on resume.
    """

    def __init__(self, source: ReaderSource, batch_size: int, shuffling_queue_capacity: int = 0,
                 min_after_retrieve: Optional[int] = None, seed: Optional[int] = None,
                 drop_last: bool = False, chunk_fn: Optional[Callable] = None) -> None:
        self.source = source
        self.chunk_fn = chunk_fn
        self.batch_size = batch_size
        self.drop_last = drop_last
        self._pending: list = []        # column batches not yet in the buffer / not yet served (reader order)
        self._pending_ids: list = []    # serial number of the reader batch each pending entry comes from
        self._pending_rows = 0
        self._serial = 0
        # (reader state before the last non-empty reader batch, rows read, rows after chunk_fn, its serial):
        # a state then saves where to re-read that batch instead of its rows
        self._last: Optional[tuple] = None
        # (serial, row offset in that reader batch) of the last block of next_block(), None if not known
        self.cut_origin: Optional[tuple] = None
        self._taken: dict = {}  # serial -> (reader state before it, rows read, rows): the last _KEEP_TAKEN
        self._done = False
        self._buffer: Optional[ColumnShufflingBuffer] = None
        if shuffling_queue_capacity > 0:
            rows, rounds = shuffle_buffer_layout(shuffling_queue_capacity, batch_size, min_after_retrieve)
            self._buffer = ColumnShufflingBuffer(rows, seed, rounds)

    @property
    def rows_held(self) -> int:
        """Rows taken from the reader and not yet returned in a batch."""
        return self._pending_rows + (self._buffer.size if self._buffer is not None else 0)

    def _apply(self, chunk: Columns) -> Columns:
        if self.chunk_fn is None:
            return chunk
        chunk = self.chunk_fn(chunk)
        if not isinstance(chunk, Mapping):
            raise PetastormTypeError(f"chunk_fn must return a dict of columns, got {type(chunk).__name__}")
        return {k: v if isinstance(v, np.ndarray) else np.asarray(v) for k, v in chunk.items()}

    def _pull(self, max_rows: int) -> bool:
        if self._done:
            return False
        before = None
        if self.source.is_batched:  # a reader batch may be large: remember where to re-read it instead of copying
            try:
                before = self.source.state_dict()
            except Exception:  # noqa: BLE001 - a reader without a usable state: pending rows are saved as copies
                before = None
        chunk = self.source.next_chunk(max_rows)
        if chunk is None:
            self._done = True
            return False
        rows_read = num_rows(chunk)
        chunk = self._apply(chunk)
        rows = num_rows(chunk)
        if not rows:
            return True
        self._serial += 1
        self._last = (before, rows_read, rows, self._serial)
        self._taken[self._serial] = (before, rows_read, rows)
        self._taken.pop(self._serial - _KEEP_TAKEN, None)
        self._pending.append(chunk)
        self._pending_ids.append(self._serial)
        self._pending_rows += rows
        return True

    def _take_pending(self, n: int) -> Columns:
        """The first ``n`` pending rows (views when they lie in one reader batch)."""
        head = self._pending[0] if self._pending else None
        if head is not None and num_rows(head) > n:  # the common case: the batch lies inside the first pending reader batch
            batch, rest = {}, {}
            for name, col in head.items():
                batch[name] = col[:n]
                rest[name] = col[n:]
            self._pending[0] = rest
            self._pending_rows -= n
            return batch
        parts, need = [], n
        while need:
            head = self._pending[0]
            rows = num_rows(head)
            if rows <= need:
                parts.append(head)
                self._pending.pop(0)
                self._pending_ids.pop(0)
                need -= rows
            else:
                parts.append(slice_columns(head, 0, need))
                self._pending[0] = slice_columns(head, need, rows)
                need = 0
        self._pending_rows -= n
        return concat_columns(parts)

    def _fill_buffer(self) -> None:
        """Add pending rows (reading more as needed) until the shuffling buffer is full or the reader ends."""
        buf = self._buffer
        while buf.free:
            if not self._pending_rows and not self._pull(buf.free):
                break
            if self._pending_rows:  # (a reader batch a transform_fn emptied added none: read on)
                buf.add(self._take_pending(min(buf.free, self._pending_rows)))

    def next_batch(self) -> Optional[Columns]:
        """The next batch, or None when the reader has ended and every row was served."""
        bs = self.batch_size
        if self._buffer is None:
            while self._pending_rows < bs and self._pull(bs - self._pending_rows):
                pass
            n = min(bs, self._pending_rows)
        else:
            buf = self._buffer
            self._fill_buffer()
            n = min(bs, buf.size)
        if n == 0 or (n < bs and self.drop_last):
            if self._buffer is not None:
                self._buffer.clear()
            self._pending, self._pending_ids, self._pending_rows = [], [], 0
            return None
        return self._take_pending(n) if self._buffer is None else self._buffer.retrieve(n)

    def next_block(self, max_batches: int, max_objects: Optional[int] = None) -> Optional[tuple]:
        """The next ``k`` batches at once: ``(columns of k * batch_size rows, k)``, or None at the end.

        Without a shuffling buffer, when the first pending reader batch holds ``k >= 2`` whole batches
        (``k <= max_batches`` and ``k * (columns + 1) <= max_objects``), they are cut as one block of views
        (one slice per column instead of ``k``). With a shuffling buffer, once a round is drawn, its ``k >= 2``
        whole batches left are one block (views of the round's arrays; ``cut_origin`` None: they are not
        re-read, a state carries them as copies). Otherwise ``(next_batch(), 1)`` (a batch straddling two
        reader batches, the last short batch, the first batch of a round). The rows, the reader reads, the
        buffer's draws and the state are exactly those of ``k`` calls of :meth:`next_batch`.
        """
        bs = self.batch_size
        if self._buffer is None and max_batches >= 2:
            while self._pending_rows < bs and self._pull(bs - self._pending_rows):
                pass
            if self._pending:
                head = self._pending[0]
                k = min(max_batches, num_rows(head) // bs)
                if max_objects is not None:
                    k = min(k, max_objects // (len(head) + 1))
                if k >= 2:
                    serial = self._pending_ids[0]
                    taken = self._taken.get(serial)
                    # the first pending entry is the rest of its reader batch: the block starts at this offset
                    self.cut_origin = None if taken is None else (serial, taken[2] - num_rows(head))
                    return self._take_pending(k * bs), k
        elif self._buffer is not None and max_batches >= 2:
            buf = self._buffer
            self._fill_buffer()
            k = min(max_batches, buf.round_rows // bs)
            if max_objects is not None and k >= 2:
                k = min(k, max_objects // (len(buf.fields) + 1))
            if k >= 2:  # the rest of a round: its rows are drawn already, consecutive views of its arrays
                self.cut_origin = None
                return buf.retrieve(k * bs), k
        batch = self.next_batch()
        return None if batch is None else (batch, 1)

    def _replay(self) -> Optional[dict]:
        """Where to re-read the pending rows (they are the end of the last reader batch), or None."""
        last = self._last
        if not self._pending or last is None or last[0] is None:
            return None
        if len(self._pending) != 1 or self._pending_ids[0] != last[3]:
            return None
        before, rows_read, rows, _ = last
        return {_REPLAY_READER: before, _REPLAY_READ: rows_read, _REPLAY_ROWS: rows,
                _REPLAY_SKIP: rows - self._pending_rows}

    def can_replay_from(self, origin: Optional[tuple]) -> bool:
        """Whether :meth:`state_dict` can start at ``origin = (serial, row offset)`` (see there)."""
        if origin is None or self._buffer is not None:
            return False
        taken = self._taken.get(origin[0])
        if taken is None or taken[0] is None:
            return False
        if origin[0] == self.last_serial:
            replay = {_REPLAY_READ: taken[1], _REPLAY_ROWS: taken[2], _REPLAY_SKIP: origin[1]}
            return _replay_is_positions(self.source.state_dict(), replay)
        # an earlier reader batch: the reader then reads again what followed it, which an elastic resume (it
        # gives the replayed rows back as the last positions read) cannot express
        return not _is_elastic(self.source.state_dict())

    @property
    def last_serial(self) -> Optional[int]:
        """Serial number of the last reader batch taken."""
        return None if self._last is None else self._last[3]

    def state_dict(self, replay_from: Optional[tuple] = None) -> dict:
        """The reader's state, the rows taken from it and not served, the buffer and its RNG.

        Rows waiting at the end of the last reader batch are saved as where to re-read that batch (the reader's
        state before it and the rows to skip), not as copies; the shuffling buffer's rows are copied.

        Parameters
        ----------
        replay_from : (int, int), optional
            ``(serial, row offset)`` of the first row not served to the consumer, when the caller holds
            batches cut by :meth:`next_block` and not served (their ``cut_origin`` plus the rows served of the
            block): the state then re-reads from that row of that reader batch on, every row taken since
            included, instead of carrying them. Only when :meth:`can_replay_from` says so.
        """
        if replay_from is not None:
            if not self.can_replay_from(replay_from):
                raise PetastormStateError(f"internal: the batching state cannot start at {replay_from}")
            serial, offset = replay_from
            before, rows_read, rows = self._taken[serial]
            return {_READER: self.source.state_dict(), _PENDING: {}, _BUFFER: None,
                    _DONE: self._done if serial == self.last_serial else False,
                    _REPLAY: {_REPLAY_READER: before, _REPLAY_READ: rows_read, _REPLAY_ROWS: rows,
                              _REPLAY_SKIP: int(offset)}}
        replay = self._replay()
        reader_state = self.source.state_dict()
        copy_pending = self._pending and (replay is None or not _replay_is_positions(reader_state, replay))
        pending = concat_columns(self._pending) if copy_pending else {}
        return {_READER: reader_state, _DONE: self._done, _REPLAY: replay,
                _PENDING: {k: np.array(v, copy=True) for k, v in pending.items()},
                _BUFFER: self._buffer.state_dict() if self._buffer is not None else None}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a state from :meth:`state_dict` into a batcher whose reader has not been read yet."""
        try:
            reader_state, pending, buffer_state = state[_READER], state[_PENDING], state[_BUFFER]
        except (KeyError, TypeError):
            raise PetastormStateError("malformed batching state: keys 'reader', 'pending' and 'buffer' expected") \
                from None
        if (buffer_state is None) != (self._buffer is None):
            saved = "with" if buffer_state is not None else "without"
            raise PetastormStateError(
                f"shuffling_queue_capacity differs: the state was saved {saved} a shuffling buffer")
        replay = state.get(_REPLAY)
        if replay:
            self.source.load_state_dict(replay[_REPLAY_READER])
            chunk = self.source.next_chunk(max(1, int(replay[_REPLAY_READ])))
            chunk = self._apply(chunk) if chunk is not None else None
            rows = int(replay[_REPLAY_ROWS])
            if chunk is None or num_rows(chunk) != rows:
                raise PetastormStateError(
                    f"resuming re-reads the reader batch the saved rows came from, and got "
                    f"{0 if chunk is None else num_rows(chunk)} rows instead of {rows}: resume with the reader "
                    f"arguments and the transform_fn the state was saved with (a transform_fn must be "
                    f"deterministic for an exact resume)")
            pending = slice_columns(chunk, int(replay[_REPLAY_SKIP]), rows)
            # the pending rows are the end of this reader batch again: a later state may re-read it too
            self._serial += 1
            self._last = (replay[_REPLAY_READER], int(replay[_REPLAY_READ]), rows, self._serial)
            self._taken[self._serial] = self._last[:3]
        else:
            self.source.load_state_dict(reader_state)
            pending = {k: np.asarray(v) for k, v in (pending or {}).items()}
        if self._buffer is not None:
            self._buffer.load_state_dict(buffer_state)
        self._pending = [pending] if num_rows(pending) else []
        self._pending_ids = [self._serial if replay else 0] * len(self._pending)
        self._pending_rows = num_rows(pending)
        self._done = bool(state.get(_DONE, False))
