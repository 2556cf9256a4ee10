"""Petastorm: train PyTorch and TensorFlow models straight from Apache Parquet datasets.

``import petastorm`` is light: the readers, the writer and the transform spec load on first use, and
heavy frameworks (torch, tensorflow, pyspark, cv2) load only in the modules that need them.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "1.0.0.dev0"

__all__ = ["make_reader", "make_batch_reader", "TransformSpec", "write_dataset", "merge_state_dicts", "__version__"]

_LAZY = {
    "make_reader": ("petastorm.reader", "make_reader"),
    "make_batch_reader": ("petastorm.reader", "make_batch_reader"),
    "TransformSpec": ("petastorm.transform", "TransformSpec"),
    "write_dataset": ("petastorm.etl.writer", "write_dataset"),
    "merge_state_dicts": ("petastorm.adapters.elastic", "merge_state_dicts"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'petastorm' has no attribute {name!r}")


def __dir__() -> list:
    return sorted(list(globals()) + list(_LAZY))
