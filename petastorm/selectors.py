"""Row-group selectors: pick the row groups to read from the dataset's row-group indexes.

A selector names the indexes it needs (:meth:`RowGroupSelectorBase.get_index_names`) and turns the
dataset's indexes (index name -> indexer, see :mod:`petastorm.etl.rowgroup_indexers`) into a set of
row-group ids (:meth:`RowGroupSelectorBase.select_row_groups`). Pass one to
``make_reader(..., rowgroup_selector=...)``. Selectors do no I/O.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Iterable

from petastorm.errors import PetastormKeyError, PetastormTypeError

__all__ = ["RowGroupSelectorBase", "SingleIndexSelector", "IntersectIndexSelector", "UnionIndexSelector"]


def _index(index_dict: dict, name: str) -> Any:
    try:
        return index_dict[name]
    except KeyError:
        raise PetastormKeyError(f"{name}: the selector needs the row-group index {name!r}, and the dataset has "
                       f"{sorted(index_dict)}") from None


class RowGroupSelectorBase(ABC):
    """Base class of row-group selectors."""

    @abstractmethod
    def get_index_names(self) -> list[str]:
        """Names of the indexes this selector reads."""

    @abstractmethod
    def select_row_groups(self, index_dict: dict) -> set[int]:
        """Ids of the selected row groups, given the dataset's indexes (name -> indexer)."""


class SingleIndexSelector(RowGroupSelectorBase):
    """Row groups that hold any of ``values_list`` in the index ``index_name``.

    Parameters
    ----------
    index_name : str
    values_list : iterable
        Values to look up; row groups holding any of them are selected.
    """

    def __init__(self, index_name: str, values_list: Iterable[Any]) -> None:
        if isinstance(values_list, (str, bytes)) or not hasattr(values_list, "__iter__"):
            raise PetastormTypeError(f"values_list must be a list of values, got {type(values_list).__name__}: "
                            f"{values_list!r} (wrap a single value in a list)")
        self._index_name = index_name
        self._values_to_select = list(values_list)

    def get_index_names(self) -> list[str]:
        return [self._index_name]

    def select_row_groups(self, index_dict: dict) -> set[int]:
        indexer = _index(index_dict, self._index_name)
        selected: set[int] = set()
        for value in self._values_to_select:
            selected |= set(indexer.get_row_group_indexes(value))
        return selected

    def __repr__(self) -> str:
        return f"SingleIndexSelector({self._index_name!r}, {self._values_to_select!r})"


class _CombinedSelector(RowGroupSelectorBase):
    def __init__(self, single_index_selectors: Iterable[RowGroupSelectorBase]) -> None:
        self._selectors = list(single_index_selectors)
        for selector in self._selectors:
            if not isinstance(selector, RowGroupSelectorBase):
                raise PetastormTypeError(f"{type(self).__name__} takes row-group selectors, got {type(selector).__name__}")

    def get_index_names(self) -> list[str]:
        return [name for selector in self._selectors for name in selector.get_index_names()]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._selectors!r})"


class IntersectIndexSelector(_CombinedSelector):
    """Row groups that every one of the given selectors selects.

    Raises
    ------
    IndexError
        From :meth:`select_row_groups` when built from an empty list (as the original).
    """

    def select_row_groups(self, index_dict: dict) -> set[int]:
        if not self._selectors:
            raise IndexError("list index out of range: IntersectIndexSelector needs at least one selector")
        result = set(self._selectors[0].select_row_groups(index_dict))
        for selector in self._selectors[1:]:
            result &= set(selector.select_row_groups(index_dict))
        return result


class UnionIndexSelector(_CombinedSelector):
    """Row groups that any of the given selectors selects (none for an empty list)."""

    def select_row_groups(self, index_dict: dict) -> set[int]:
        result: set[int] = set()
        for selector in self._selectors:
            result |= set(selector.select_row_groups(index_dict))
        return result
