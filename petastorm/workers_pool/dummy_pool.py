"""Compatibility name: ``petastorm.workers_pool.dummy_pool.DummyPool`` (see :mod:`petastorm.reader_impl.thread_pool`)."""
from petastorm.reader_impl.thread_pool import DummyPool

__all__ = ["DummyPool"]
