"""Compatibility name: ``petastorm.workers_pool.process_pool.ProcessPool``.

See :mod:`petastorm.reader_impl.process`.
"""
from petastorm.reader_impl.process import ProcessPool

__all__ = ["ProcessPool"]
