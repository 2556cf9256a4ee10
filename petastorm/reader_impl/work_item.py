"""The units that flow through the read pipeline: a :class:`WorkItem` in, a :class:`ColumnBatch` out.

plan -> WorkItem -> pool -> worker -> ColumnBatch -> reader. Both are small, picklable and free of I/O.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple, Optional

__all__ = ["WorkItem", "ColumnBatch", "RowGroupInfo"]


class RowGroupInfo(NamedTuple):
    """One row group of one file.

    Attributes
    ----------
    path : str
        Path of the file on the dataset's filesystem.
    relative_path : str
        Path relative to the dataset root ('/'-separated); the file name for a list of files.
    row_group : int
        Index of the row group in its file.
    num_rows : int
        Rows in the row group; ``petastorm.reader_impl.dataset.UNKNOWN_ROWS`` (-1) until the file's footer is read (see
        :meth:`petastorm.reader_impl.dataset.DatasetInfo.ensure_row_counts`).
    partition : tuple of (str, str)
        Hive partition keys and values of the file, in directory order.
    file_size : int
        Size of the file in bytes, or -1 when the listing did not give it.
    """

    path: str
    relative_path: str
    row_group: int
    num_rows: int
    partition: tuple = ()
    file_size: int = -1


class WorkItem(NamedTuple):
    """One task for a worker: a slice of rows of one row group, in one epoch (an immutable tuple: a plan
    of thousands of items is built in a few milliseconds).

    Attributes
    ----------
    epoch : int
        0-based epoch number.
    position : int
        0-based position of this item in the epoch's plan; results are emitted in ``(epoch, position)``
        order whatever worker finishes first.
    row_group : int
        Index into the dataset's row-group list (``DatasetInfo.row_groups``, dataset order).
    row_start, row_stop : int
        Rows ``[row_start, row_stop)`` of the row group (a drop partition or a balanced-shard slice).
    row_seed : int or None
        Seed of the permutation of the rows of this item (``shuffle_rows``); None keeps file order.
    dealt_rows : int or None
        Rows of the item that pass the row filters / predicate, when the plan counted them (balanced mode
        with filters: the shards are dealt passing rows); None: every row of the slice is dealt.
    """

    epoch: int
    position: int
    row_group: int
    row_start: int
    row_stop: int
    row_seed: Optional[int] = None
    dealt_rows: Optional[int] = None

    @property
    def num_rows(self) -> int:
        """Rows in the slice before any predicate."""
        return self.row_stop - self.row_start

    @property
    def rows_dealt(self) -> int:
        """Rows of the item in the epoch's global sequence: ``dealt_rows``, or ``num_rows`` when not counted."""
        return self.num_rows if self.dealt_rows is None else self.dealt_rows


@dataclass
class ColumnBatch:
    """What a worker returns for one :class:`WorkItem`: decoded columns of the rows that passed.

    Attributes
    ----------
    columns : dict of str to numpy.ndarray
        Each array has shape ``(num_rows,) + field shape`` (or ``(num_rows,)`` of dtype object when cells
        differ in shape or hold None). Keys follow the output schema's field order.
    num_rows : int
    item : WorkItem
        The item these rows come from.
    extra : dict
        Free-form per-batch information (for example ``{'cache': 'hit'}``) used by diagnostics.
    """

    columns: dict
    num_rows: int
    item: WorkItem
    extra: dict = field(default_factory=dict)
