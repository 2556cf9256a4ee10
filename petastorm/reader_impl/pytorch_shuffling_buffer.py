"""The original's module path of its batched shuffling buffers (``BatchedShufflingBufferBase``,
``BatchedNoopShufflingBuffer``, ``BatchedRandomShufflingBuffer``), kept so that its imports work.

A facade only: the buffers return torch tensors and run on the loaders' column buffer, so they live with
the torch loaders, in :mod:`petastorm.pytorch_impl.batched_buffers` (see their behaviour there). This is the
one module of ``reader_impl`` that imports from a layer above (listed in ``tests/package/test_layers.py``).
Importing it does not import torch.
"""
from petastorm.pytorch_impl.batched_buffers import (
    BatchedNoopShufflingBuffer,
    BatchedRandomShufflingBuffer,
    BatchedShufflingBufferBase,
)

__all__ = ["BatchedShufflingBufferBase", "BatchedNoopShufflingBuffer", "BatchedRandomShufflingBuffer"]
