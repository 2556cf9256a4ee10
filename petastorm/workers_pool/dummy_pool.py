"""Compatibility name: ``petastorm.workers_pool.dummy_pool.DummyPool`` (see :mod:`petastorm.reader_impl.pool`)."""
from petastorm.reader_impl.pool import DummyPool

__all__ = ["DummyPool"]
