"""Internals of :mod:`petastorm.pytorch` (import that module, not this package).

- :mod:`~petastorm.pytorch_impl.loader_base` - ``LoaderBase``: re-iteration rules, ``len()``, context manager,
  the frame of ``state_dict()`` / ``load_state_dict()``.
- :mod:`~petastorm.pytorch_impl.dtypes` - the original's type promotions (numpy only).
- :mod:`~petastorm.pytorch_impl.collate` - ``decimal_friendly_collate``.
- :mod:`~petastorm.pytorch_impl.rows` - ``DataLoader``.
- :mod:`~petastorm.pytorch_impl.batched` - ``BatchedDataLoader``, ``InMemBatchedDataLoader``.
- :mod:`~petastorm.pytorch_impl.device` - numpy column -> torch tensor on a device.
- :mod:`~petastorm.pytorch_impl.batched_buffers` - the original's batched shuffling buffers (its path:
  ``petastorm.reader_impl.pytorch_shuffling_buffer``).
"""
