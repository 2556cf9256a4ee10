"""A shuffling buffer of whole columns: rows live in preallocated numpy arrays, batches leave by random
index blocks.

Retrieving a batch of ``k`` rows is one ``rng.choice`` of ``k`` distinct slots and one gather of whole rows
per block of columns (numeric columns of one dtype and cell shape share a row-major block; the arrays are a
:class:`~petastorm.adapters.row_blocks.RowBlocks`). The ``k`` slots it empties are refilled by the next
:meth:`ColumnShufflingBuffer.add` (one scatter of whole rows per block), so while the buffer is fed as fast
as it is drained no row ever moves; a retrieve that finds slots still empty first moves the last rows into
them. There is no Python work per row, and the buffer never holds more than its capacity (no lists of rows,
no growth).

**Rounds** (``rounds=R > 1``, what the loaders use): a :meth:`~ColumnShufflingBuffer.retrieve` of ``k`` rows
that finds no drawn row left draws ``R * k`` distinct slots at once (one ``rng.choice``, one gather and one
transpose per block) and returns the first ``k``; the next ``R - 1`` retrieves of ``k`` rows return the
following ``k`` rows of that draw as views (no numpy work), while :meth:`~ColumnShufflingBuffer.add` refills
all ``R * k`` emptied slots. Guarantee: the rows of every batch of a round are ``k`` uniformly chosen rows of
the buffer as it was when the round was drawn (for the loaders: full), the round's batches are disjoint, and
they come in a uniformly random order. What changes against ``R = 1``: a row read during a round can leave
at the next round at the earliest (the loaders keep ``R * k <= capacity / 8``).
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

import numpy as np

from petastorm.adapters.columns import (
    Columns,
    as_records,
    check_columns,
    concat_columns,
    num_rows,
    slice_columns,
)
from petastorm.adapters.row_blocks import RowBlocks
from petastorm.errors import (
    PetastormArgumentError,
    PetastormArgumentTypeError,
    PetastormSchemaError,
    PetastormStateError,
)

__all__ = ["Columns", "ColumnShufflingBuffer", "num_rows", "slice_columns", "concat_columns", "as_records"]

_ROWS = "rows"
_RNG = "rng"
_CAPACITY = "capacity"
_HOLES = "empty_slots"
_ROUND = "round_rows"
_NO_SLOTS = np.empty(0, dtype=np.int64)
_FIRST_SLOTS = 1024             # slots allocated by the first add (at least its rows), doubled as rows arrive


def _state_rows(rows: Any) -> Columns:
    """The ``"rows"`` of a saved buffer state as aligned arrays.

    Raises
    ------
    PetastormStateError
        They are not a dict of arrays of rows of one length.
    """
    if not isinstance(rows, Mapping):
        raise PetastormStateError(
            f"malformed shuffling buffer state: '{_ROWS}' must be a dict of columns, got {type(rows).__name__}")
    out = {name: np.asarray(col) for name, col in rows.items()}
    lengths = {name: (len(col) if col.ndim else None) for name, col in out.items()}
    if None in lengths.values() or len(set(lengths.values())) > 1:
        raise PetastormStateError(
            f"malformed shuffling buffer state: '{_ROWS}' must be columns of one length, got rows {lengths}")
    return out


class ColumnShufflingBuffer:
    """Up to ``capacity`` rows kept as columns, handed out in uniformly random order.

    Parameters
    ----------
    capacity : int
        Rows the buffer holds (its arrays are allocated with this many rows on the first :meth:`add`).
    seed : int, optional
        Seed of the retrieval order (``np.random.default_rng(seed)``); None: a random one.
    rounds : int
        Batches drawn at once by :meth:`retrieve` (see the module docstring); 1: every retrieve draws its own.

    Notes
    -----
    Memory: at most ``capacity`` x (bytes of one row), allocated as rows arrive (the slots double, up to the
    capacity, so filling the buffer copies each row about once more; a capacity far above the rows the data
    has, e.g. a batch size larger than the dataset, costs nothing for rows that never come). Each
    :meth:`retrieve` allocates only its output batch, or its round of ``rounds`` batches (callers may keep
    them: they are never written again); :meth:`add` keeps staging blocks of at most 256 KB (at most 4).
    """

    def __init__(self, capacity: int, seed: Optional[int] = None, rounds: int = 1) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, (int, np.integer)) or capacity <= 0:
            raise PetastormArgumentError(f"capacity must be a positive integer, got {capacity!r}")
        if isinstance(rounds, bool) or not isinstance(rounds, (int, np.integer)) or rounds <= 0:
            raise PetastormArgumentError(f"rounds must be a positive integer, got {rounds!r}")
        self._rounds = int(rounds)
        self._round: Optional[Columns] = None  # the rows of the last round, C-contiguous columns
        self._round_pos = 0                     # rows of the round served
        self._round_len = 0
        self._capacity = int(capacity)
        try:
            self._rng = np.random.default_rng(seed)
        except (TypeError, ValueError) as e:
            raise PetastormArgumentTypeError(f"seed must be None, a non-negative integer or a sequence of them, "
                                             f"got {seed!r} ({e})") from None
        self._blocks: Optional[RowBlocks] = None  # the rows' arrays, made by the first add
        self._size = 0                         # rows held
        self._top = 0                          # slots [0, top) hold the rows and the empty slots below
        self._holes = _NO_SLOTS                # empty slots below top, in the order add refills them

    @property
    def capacity(self) -> int:
        """Rows the buffer can hold."""
        return self._capacity

    @property
    def size(self) -> int:
        """Rows in the buffer now (those of a round drawn and not yet retrieved included)."""
        return self._size + self._round_len - self._round_pos

    @property
    def fields(self) -> list:
        """The fields held, in the order batches give them (empty before the first :meth:`add`)."""
        return self._blocks.fields if self._blocks is not None else []

    @property
    def round_rows(self) -> int:
        """Rows of the current round not yet retrieved (a :meth:`retrieve` of at most this many is a view)."""
        return self._round_len - self._round_pos

    @property
    def free(self) -> int:
        """Rows that can still be added (the slots not holding a row)."""
        return self._capacity - self._size

    def _allocate(self, columns: Mapping[str, np.ndarray]) -> None:
        """Arrays for the columns of ``columns``, with room for its rows (at least 1024, at most the capacity)."""
        self._blocks = RowBlocks(columns, min(self._capacity, max(num_rows(columns), _FIRST_SLOTS)))

    def add(self, columns: Mapping[str, np.ndarray]) -> None:
        """Copy a column batch into the buffer: first into the slots the last :meth:`retrieve` emptied (in
        the order it chose them), the rest after the last used slot.

        Parameters
        ----------
        columns : dict of str -> np.ndarray, shape (n, ...)
            ``n <= free`` rows; the same fields every call.

        Raises
        ------
        PetastormTypeError
            A column is not a numpy array of rows (names the field).
        PetastormSchemaError
            Columns of different lengths, a field missing or new, cells of another shape (names the fields).
        PetastormArgumentError
            More rows than are free.
        """
        if self._blocks is None:
            check_columns(columns)
        try:
            n = num_rows(columns)
        except TypeError:  # a scalar
            check_columns(columns)
            raise
        if n > self.free:
            raise PetastormArgumentError(f"cannot add {n} rows: only {self.free} of {self._capacity} are free")
        if n == 0:
            return
        if self._blocks is None:
            self._allocate(columns)
        blocks = self._blocks
        if len(columns) != len(blocks.where):
            missing = sorted(set(blocks.where) - set(columns))
            raise PetastormSchemaError(f"fields {missing} are missing from a reader batch")
        views = blocks.views
        try:
            for name, col in columns.items():
                view = views.get(name)
                if view is None or col.dtype != view[1] or col.shape[1:] != view[2] or len(col) != n:
                    if len(col) != n:
                        check_columns(columns)
                    blocks.fit(name, col, self._top)
                    views = blocks.views
        except (AttributeError, TypeError):  # not an array
            check_columns(columns)
            raise
        holes = self._holes
        m = min(n, len(holes))
        if m:
            blocks.fill(holes[:m], columns, m)
            self._holes = holes[m:]
        if m < n:
            top = self._top
            if top + n - m > blocks.slots:
                self._reserve(top + n - m)
                views = blocks.views
            for name, col in columns.items():
                views[name][0][top:top + n - m] = col[m:] if m else col
            self._top = top + n - m
        self._size += n

    def _compact(self) -> None:
        """Move the last used rows into the empty slots, so that rows occupy slots ``[0, size)``."""
        holes, size = self._holes, self._size
        if not len(holes):
            return
        inner = holes[holes < size]
        if len(inner):
            empty_in_tail = np.zeros(self._top - size, dtype=bool)
            empty_in_tail[holes[holes >= size] - size] = True
            self._blocks.move(inner, size + np.flatnonzero(~empty_in_tail))
        self._top, self._holes = size, _NO_SLOTS

    def take(self, idx: "np.ndarray | slice") -> Columns:
        """Copies of rows ``idx`` (positions ``< size``), left in the buffer: an in-memory table served by
        row blocks (one gather of whole rows per block of columns).

        Parameters
        ----------
        idx : np.ndarray of int, shape (n,), or slice
            Non-negative positions below ``size`` (not checked, for speed; positions past the arrays raise
            ``IndexError``). Position ``i`` is the ``i``-th row added while nothing was retrieved.
        """
        if self._blocks is None:
            return {}
        self._compact()
        if isinstance(idx, slice):
            idx = slice(*idx.indices(self._size))
        return self._blocks.gather(idx)

    def retrieve(self, count: int) -> Columns:
        """Remove ``min(count, size)`` uniformly chosen rows and return them as new arrays (with ``rounds > 1``:
        the next rows of the current round, views of its arrays, drawing a new round when none is left).

        Returns
        -------
        dict of str -> np.ndarray, shape (min(count, size), ...), C-contiguous

        Raises
        ------
        PetastormArgumentError
            ``count`` is not a non-negative integer.
        """
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 0:
            raise PetastormArgumentError(f"count must be a non-negative integer, got {count!r}")
        k = min(int(count), self.size)
        if self._blocks is None or k == 0:
            return {name: view[0][:0].copy() for name, view in self._views().items()}
        pos = self._round_pos
        left = self._round_len - pos
        if left >= k:  # served from the round: views, no numpy work
            drawn = self._round
            self._round_pos = pos + k
            if pos + k == self._round_len:
                self._round, self._round_pos, self._round_len = None, 0, 0
            return {name: col[pos:pos + k] for name, col in drawn.items()}
        if left:  # only when count changed within a round: its last rows and fresh ones
            rest = {name: col[pos:] for name, col in self._round.items()}
            self._round, self._round_pos, self._round_len = None, 0, 0
            return concat_columns([rest, self._draw(k - left)])
        m = min(self._rounds * k, self._size)
        drawn = self._draw(m)
        if m == k:
            return drawn
        self._round, self._round_pos, self._round_len = drawn, k, m
        return {name: col[:k] for name, col in drawn.items()}

    def _draw(self, k: int) -> Columns:
        """Remove ``k <= _size`` uniformly chosen rows from the slots (one choice, one gather per block)."""
        self._compact()
        size = self._size
        if k == size:
            idx = self._rng.permutation(size)
        else:
            idx = self._rng.choice(size, k, replace=False)
        out = self._blocks.gather(idx)
        if k == size:
            self._top, self._holes = 0, _NO_SLOTS
        else:
            self._holes = idx  # refilled by the next add
        self._size = size - k
        return out

    def grow(self, capacity: int) -> None:
        """Raise the capacity to ``capacity`` rows (the arrays grow when the rows come)."""
        self._capacity = max(self._capacity, int(capacity))

    def _reserve(self, slots: int) -> None:
        """Room for at least ``slots <= capacity`` rows: the arrays reallocated (doubled, at most the capacity)
        and the slots in use copied."""
        self._blocks.reserve(min(self._capacity, max(slots, 2 * self._blocks.slots)), self._top)

    def _views(self) -> dict:
        """Column name -> (its strided view, dtype, cell shape); empty before the first :meth:`add`."""
        return self._blocks.views if self._blocks is not None else {}

    def clear(self) -> None:
        """Forget every row (the arrays are kept for reuse)."""
        self._size, self._top, self._holes = 0, 0, _NO_SLOTS
        self._round, self._round_pos, self._round_len = None, 0, 0

    def state_dict(self) -> dict:
        """The rows held (copies: those in the slots in slot order, then those of the current round not yet
        retrieved, in the order they will leave), their count (``"round_rows"``), the empty slots among
        the slots, the RNG state and the capacity."""
        holes, top = self._holes, self._top
        if len(holes):
            used = np.ones(top, dtype=bool)
            used[holes] = False
            rows = {n: view[0][:top][used] for n, view in self._views().items()}
        else:
            rows = {n: np.array(view[0][:top]) for n, view in self._views().items()}
        pending = self._round_len - self._round_pos
        if pending:
            rows = {n: np.concatenate([col, self._round[n][self._round_pos:]]) for n, col in rows.items()}
        return {_CAPACITY: self._capacity, _ROWS: rows, _RNG: self._rng.bit_generator.state,
                _HOLES: np.array(holes, dtype=np.int64), _ROUND: pending}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore rows, empty slots, the rows of a round not yet retrieved and the RNG saved by
        :meth:`state_dict` (the same slots: the batches that follow are those the saved buffer would have
        given).

        Raises
        ------
        PetastormStateError
            The state is malformed or holds more rows than this buffer's capacity.
        """
        try:
            rows, rng_state = state[_ROWS], state[_RNG]
        except (KeyError, TypeError):
            raise PetastormStateError(
                f"malformed shuffling buffer state: expected a dict with keys '{_ROWS}' and '{_RNG}'") from None
        rows = _state_rows(rows)
        try:  # checked on a generator of the same kind before this buffer changes
            np.random.default_rng().bit_generator.state = rng_state
        except (TypeError, ValueError, KeyError) as e:
            raise PetastormStateError(f"malformed shuffling buffer state: '{_RNG}' is not a generator state ({e})"
                                      ) from None
        total = num_rows(rows)
        pending = state.get(_ROUND, 0) or 0
        if isinstance(pending, bool) or not isinstance(pending, (int, np.integer)) or not 0 <= pending <= total:
            raise PetastormStateError(
                f"malformed shuffling buffer state: '{_ROUND}' must be an integer between 0 and the {total} rows "
                f"held, got {pending!r}")
        n = total - int(pending)
        if n > self._capacity:
            raise PetastormStateError(
                f"saved shuffling buffer holds {n} rows, more than this buffer's capacity {self._capacity}: "
                f"resume with the same shuffling_queue_capacity (saved with {state.get(_CAPACITY)})")
        holes = np.asarray(state.get(_HOLES, ()) if n else (), dtype=np.int64).reshape(-1)
        top = n + len(holes)
        if len(holes) and (holes.min() < 0 or holes.max() >= top or len(np.unique(holes)) != len(holes)):
            raise PetastormStateError(
                f"malformed shuffling buffer state: '{_HOLES}' must be distinct slots below {top}")
        self._rng.bit_generator.state = rng_state
        self._size, self._top, self._holes = 0, 0, _NO_SLOTS
        self._blocks = None
        self._round, self._round_pos, self._round_len = None, 0, 0
        if top > self._capacity:  # slots of a larger buffer, holding no more rows than this one's capacity
            self._capacity = top
        if n:
            self.add({name: np.asarray(col)[:n] for name, col in rows.items()})
        if pending:
            self._round = {name: np.array(col[n:]) for name, col in rows.items()}
            self._round_len = int(pending)
            if not n:  # empty slots: allocated as the round's columns
                self._allocate(self._round)
        if len(holes):
            used = np.ones(top, dtype=bool)
            used[holes] = False
            slots = np.flatnonzero(used)
            if top > self._blocks.slots:
                self._reserve(top)
            self._blocks.move(slots, np.arange(n))
            self._top, self._holes = top, holes
