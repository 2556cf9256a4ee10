"""The process pool: reader workers in worker processes, results back through shared memory, zero copy.

One entry, :class:`ProcessPool` (the pool stage's contract, :class:`~petastorm.reader_impl.pool.Pool`, run
by worker processes), and :func:`clear_segment_cache` (gives back the shared memory kept for the next
pool). Everything else is this package's own:

- :mod:`.pool` - :class:`ProcessPool`: feeds the workers, collects their results in the consumer's
  thread, stops them;
- :mod:`.worker_processes` - the parent's handles on the worker processes: starting them (in the
  caller's thread or a start thread), shutting them down (also from a finalizer);
- :mod:`.worker_main` - what runs in a worker process: build the worker, serve tasks, send results;
- :mod:`.run_in_parent` - the start-up lane: a thread of the parent runs the first items while the
  processes start, and which worker factories may use it;
- :mod:`.transport` - results as pickle protocol 5 with their buffers in shared-memory segments
  (:mod:`.result_pickle`: how a result is pickled; :mod:`.segment_mapping`: a segment's mapping);
- :mod:`.segment_cache` - free segments of stopped pools, kept for the next pool;
- :mod:`.remote_errors` - a worker's exception, sent to the parent and raised there;
- :mod:`.fork_server` - the start method, the fork server's preload list and its start;
- :mod:`.fork_server_setup` - imported by the fork server only: one BLAS thread, Arrow warmed up.

Importing the package imports neither numpy nor pyarrow (the fork server imports it before numpy).
"""
from petastorm.reader_impl.process.pool import ProcessPool
from petastorm.reader_impl.process.segment_cache import clear_segment_cache

__all__ = ["ProcessPool", "clear_segment_cache"]
