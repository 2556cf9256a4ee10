"""Compatibility name: ``petastorm.workers_pool.process_pool.ProcessPool``.

See :mod:`petastorm.reader_impl.process_pool`.
"""
from petastorm.reader_impl.process_pool import ProcessPool

__all__ = ["ProcessPool"]
