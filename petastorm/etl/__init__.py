"""Writing and describing Petastorm datasets: metadata, row-group indexes, metadata generation.

Kept tiny on purpose: importing ``petastorm.etl`` imports no heavy module (no pyspark, no pyarrow).
``RowGroupIndexerBase`` lives here because that is where the original library defined it.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from petastorm.errors import PetastormMetadataError

__all__ = ["RowGroupIndexerBase", "PetastormMetadataError"]


class RowGroupIndexerBase(ABC):
    """Base class of row-group indexers: a map from an indexed value to the ids of the row groups
    (positions in :func:`petastorm.etl.dataset_metadata.load_row_groups` order) that contain it."""

    @property
    @abstractmethod
    def index_name(self) -> str:
        """Name of the index (what a selector refers to)."""

    @property
    @abstractmethod
    def column_names(self) -> list[str]:
        """Columns that must be read and decoded to build the index."""

    @property
    @abstractmethod
    def indexed_values(self) -> list:
        """Values that the index knows."""

    @abstractmethod
    def get_row_group_indexes(self, value_key: Any) -> set[int]:
        """Ids of the row groups that hold ``value_key`` (an empty set when none does)."""

    @abstractmethod
    def build_index(self, decoded_rows: list[dict], piece_index: int) -> Any:
        """Add the rows of the row group ``piece_index`` to the index."""

    @abstractmethod
    def __add__(self, other: "RowGroupIndexerBase") -> "RowGroupIndexerBase":
        """Merge ``other`` (an indexer of the same type) into this one and return this one."""
