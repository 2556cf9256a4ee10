"""Compatibility name: ``petastorm.workers_pool.thread_pool.ThreadPool`` (see :mod:`petastorm.reader_impl.thread_pool`)."""
from petastorm.reader_impl.thread_pool import ThreadPool

__all__ = ["ThreadPool"]
