"""Row-group indexers: which row groups hold a value (or a non-null value) of a field.

An index maps values to sets of row-group ids, the positions of row groups in
:func:`petastorm.etl.dataset_metadata.load_row_groups` order. Indexes are built by
:func:`petastorm.etl.rowgroup_indexing.build_rowgroup_index`, stored pickled in the dataset's
``_common_metadata`` under ``dataset-toolkit.rowgroups_index.v1``, and used by the selectors of
:mod:`petastorm.selectors` to read only the row groups that matter.

The pickled state of each indexer is the original library's (``_index_name``, ``_column_name``,
``_index_data``), so indexes move both ways between it and petastorm.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterable

import numpy as np

from petastorm.errors import PetastormKeyError, PetastormSchemaError, PetastormTypeError
from petastorm.etl import RowGroupIndexerBase

__all__ = ["RowGroupIndexerBase", "SingleFieldIndexer", "FieldNotNullIndexer"]


def _field_value(row: Any, column: str, index_name: str) -> Any:
    try:
        return row[column]
    except KeyError:
        raise PetastormKeyError(f"{column!r}: index {index_name!r} needs the field {column!r}, which the decoded row "
                       f"does not have (fields: {sorted(row)})") from None


def _merge_check(self: Any, other: Any) -> None:
    if type(other) is not type(self):
        raise PetastormTypeError(f"Make sure Spark map function return the same indexer type: cannot add a "
                        f"{type(other).__name__} to the {type(self).__name__} {self._index_name!r}")


class _OneFieldIndexer(RowGroupIndexerBase):
    """What both indexers share: a name and the one field they index (pickled as the original's
    ``_index_name`` and ``_column_name``; each subclass sets ``_index_data``)."""

    def __init__(self, index_name: str, index_field: str) -> None:
        self._index_name = index_name
        self._column_name = index_field

    @property
    def index_name(self) -> str:
        return self._index_name

    @property
    def column_names(self) -> list[str]:
        return [self._column_name]


class SingleFieldIndexer(_OneFieldIndexer):
    """Index of the distinct values of one field: value -> set of row-group ids.

    Parameters
    ----------
    index_name : str
        Name the selectors use (``SingleIndexSelector(index_name, values)``).
    index_field : str
        Field whose values are indexed. A scalar value is indexed as is; an array (or list) value
        indexes each of its elements; ``None`` is not indexed.
    """

    def __init__(self, index_name: str, index_field: str) -> None:
        super().__init__(index_name, index_field)
        self._index_data: defaultdict = defaultdict(set)

    @property
    def indexed_values(self) -> list:
        return list(self._index_data.keys())

    def get_row_group_indexes(self, value_key: Any) -> set[int]:
        """Row-group ids holding ``value_key``; an empty set when no row group does."""
        return set(self._index_data.get(value_key, ()))

    def build_index(self, decoded_rows: Iterable[dict], piece_index: int) -> defaultdict:
        """Index the field's values of ``decoded_rows`` (dicts of field name to decoded value), which all
        come from row group ``piece_index``. Returns the index data (value -> set of ids)."""
        for row in decoded_rows:
            value = _field_value(row, self._column_name, self._index_name)
            if value is None:
                continue
            values = value.ravel() if isinstance(value, np.ndarray) and value.ndim == 1 else value
            if isinstance(value, np.ndarray) and value.ndim > 1:
                raise PetastormSchemaError(
                    f"index {self._index_name!r}: field {self._column_name!r} holds arrays of shape {value.shape}; "
                    f"only scalars and 1-D arrays can be indexed")
            if isinstance(values, (np.ndarray, list, tuple)):
                for item in values:
                    if item is not None:
                        self._index_data[item].add(piece_index)
            else:
                self._index_data[value].add(piece_index)
        return self._index_data

    def __add__(self, other: "SingleFieldIndexer") -> "SingleFieldIndexer":
        _merge_check(self, other)
        for value, ids in other._index_data.items():
            self._index_data[value] |= set(ids)
        return self

    def __repr__(self) -> str:
        return f"SingleFieldIndexer({self._index_name!r}, {self._column_name!r}, {len(self._index_data)} values)"


class FieldNotNullIndexer(_OneFieldIndexer):
    """Index of the row groups in which a field has at least one value that is not ``None``.

    Parameters
    ----------
    index_name : str
    index_field : str
    """

    def __init__(self, index_name: str, index_field: str) -> None:
        super().__init__(index_name, index_field)
        self._index_data: set = set()

    @property
    def indexed_values(self) -> list:
        return ["Field is Not Null"]

    def get_row_group_indexes(self, value_key: Any = None) -> set[int]:
        """Row-group ids in which the field is not null (``value_key`` is ignored)."""
        return set(self._index_data)

    def build_index(self, decoded_rows: Iterable[dict], piece_index: int) -> set:
        """Record ``piece_index`` if any of ``decoded_rows`` has a non-null value. Returns the index data."""
        for row in decoded_rows:
            if _field_value(row, self._column_name, self._index_name) is not None:
                self._index_data.add(piece_index)
                break
        return self._index_data

    def __add__(self, other: "FieldNotNullIndexer") -> "FieldNotNullIndexer":
        _merge_check(self, other)
        self._index_data |= set(other._index_data)
        return self

    def __repr__(self) -> str:
        return f"FieldNotNullIndexer({self._index_name!r}, {self._column_name!r}, {len(self._index_data)} row groups)"
