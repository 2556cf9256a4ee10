"""PyTorch loaders over petastorm readers (the original's ``petastorm.pytorch`` API).

- :class:`DataLoader` - rows to batches of tensors with a ``collate_fn`` (``decimal_friendly_collate`` by
  default); over ``make_batch_reader`` with the default collate, batches are cut from whole columns.
- :class:`BatchedDataLoader` - batching and shuffling on whole columns, ``device=``, ``pin_memory=`` and a
  background prefetch.
- :class:`InMemBatchedDataLoader` - reads the reader once, serves every epoch from memory.
- :func:`decimal_friendly_collate`, :class:`LoaderBase`, and the shuffling buffers under the original's names.

Every loader supports ``len()`` where it is known, ``with`` (stops and joins the reader) and exact mid-epoch
resume with ``state_dict()`` / ``load_state_dict()`` (the method names of torchdata's ``StatefulDataLoader``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from petastorm.pytorch_impl.collate import decimal_friendly_collate
from petastorm.pytorch_impl.dtypes import sanitize_row
from petastorm.pytorch_impl.loader_base import PARALLEL_ITER_ERROR, LoaderBase
from petastorm.pytorch_impl.rows import DataLoader
from petastorm.reader_impl.shuffling_buffer import NoopShufflingBuffer, RandomShufflingBuffer

if TYPE_CHECKING:  # imported on first use (module __getattr__ below)
    from petastorm.pytorch_impl.batched import BatchedDataLoader, InMemBatchedDataLoader
    from petastorm.reader_impl.pytorch_shuffling_buffer import (
        BatchedNoopShufflingBuffer,
        BatchedRandomShufflingBuffer,
    )

__all__ = [
    "DataLoader",
    "BatchedDataLoader",
    "InMemBatchedDataLoader",
    "LoaderBase",
    "decimal_friendly_collate",
    "RandomShufflingBuffer",
    "NoopShufflingBuffer",
    "BatchedRandomShufflingBuffer",
    "BatchedNoopShufflingBuffer",
]

_PARALLEL_ITER_ERROR = PARALLEL_ITER_ERROR

# names defined in other modules, imported on first use
_LAZY = {
    "BatchedDataLoader": "petastorm.pytorch_impl.batched",
    "InMemBatchedDataLoader": "petastorm.pytorch_impl.batched",
    "BatchedRandomShufflingBuffer": "petastorm.reader_impl.pytorch_shuffling_buffer",
    "BatchedNoopShufflingBuffer": "petastorm.reader_impl.pytorch_shuffling_buffer",
}


def _sanitize_pytorch_types(row_as_dict: dict) -> None:
    """The original's helper: promote the values of a row dict in place (see ``pytorch_impl.dtypes``)."""
    sanitize_row(row_as_dict)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list:
    return sorted(set(globals()) | set(_LAZY))
