"""Compatibility names of the original ``petastorm.workers_pool`` package.

The executors now live in :mod:`petastorm.reader_impl.thread_pool` and :mod:`petastorm.reader_impl.process`;
the modules here only re-export them under the original module paths.
"""
from petastorm.errors import EmptyResultError, TimeoutWaitingForResultError

__all__ = ["EmptyResultError", "TimeoutWaitingForResultError"]
