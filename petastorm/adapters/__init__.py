"""Framework-agnostic batching core of the framework adapters (numpy only: no torch, tensorflow or jax).

Interface (stable; later changes are additive only)
---------------------------------------------------
``BatchPipeline(reader, batch_size, *, shuffling_queue_capacity=0, min_after_retrieve=None, seed=None,
drop_last=False, transform_fn=None, convert=None, prefetch=2, stop_reader_on_error=True, chunk_fn=None,
convert_block=None)``
    An iterator over a petastorm reader (``make_batch_reader``: column batches re-cut by slicing whole
    columns; ``make_reader``: rows gathered into columns ``batch_size`` at a time) yielding batches of
    exactly ``batch_size`` rows (the last one shorter unless ``drop_last``), each a
    ``dict[str, np.ndarray]`` (shape ``(rows, ...)``) passed through ``transform_fn`` then ``convert``
    (both optional, both run on the background thread; what ``convert`` returns is what ``next()``
    yields). Reads the reader once to its end (all its ``num_epochs``); build a new pipeline per pass.

    - ``chunk_fn``: run on each column batch as the reader gives it, before batching/shuffling.
    - ``shuffling_queue_capacity > 0``: rows pass through a :class:`ColumnShufflingBuffer` of
      ``max(capacity, min_after_retrieve + batch_size)`` rows (``min_after_retrieve`` defaults to
      ``capacity - batch_size``; then ``(R - 1) * batch_size // 2`` rows more, see ``shuffle_buffer_layout``);
      each batch is ``batch_size`` uniformly chosen rows of a full buffer. The buffer draws ``R`` batches at
      once (a *round*: ``R * batch_size`` at most an eighth of the buffer, ``R <= 8``): the batches of a round
      do not overlap, come in random order, and are C-contiguous slices of one array per column (zero-copy
      for ``torch.from_numpy``).
    - ``prefetch``: chunks prepared ahead by one daemon thread (bounded deque); 0 = synchronous. A chunk is
      one batch, or with ``convert_block`` up to ``CHUNK_BATCHES`` (64) whole batches of one reader batch, and
      at most half of ``gc.get_threshold()[0]`` Python objects (a batch: its columns + 1; 16 batches of 20
      columns), so that prefetched tensors do not pile up in the collector's older generations.
    - ``convert_block(columns, k) -> list of k converted batches`` (optional): what ``convert`` gives for
      each of the ``k`` equal row ranges of ``columns``; used without a shuffling buffer and without
      ``transform_fn`` to cut and convert the whole batches of a reader batch ``k`` at a time (views, one
      call per column per block) and hand them over as one chunk, converted by the consumer (in ``next()``,
      as ``convert`` then is: objects made and freed in one thread). If it raises, the block is converted
      batch by batch with ``convert`` (the error comes with its own batch).
    - Errors from the reader, ``transform_fn`` or ``convert`` are re-raised by ``next()`` in the caller's
      thread; the pipeline closes, and the reader is stopped and joined (``stop_reader_on_error``).
    - ``close()``: stops the thread, idempotent, also on garbage collection and ``with`` exit; does not
      stop the reader.
    - ``state_dict()`` -> dict (holds numpy arrays: pickle / ``torch.save`` it; the torch loaders encode it
      for ``weights_only`` loading): ``{"version": 1, "settings": {batch_size, shuffling_queue_capacity,
      min_after_retrieve, drop_last}, "batcher": {"reader": reader.state_dict() now, "replay": {reader state
      before a reader batch, rows to skip} | None, "pending": columns (only when they cannot be
      re-read), "buffer": {rows, rng, capacity} | None, "done"}, "ready": [numpy batches prefetched, not yet
      yielded], "rows_held": int, "batches_served": int}``. Taken between two chunks (the thread is paused
      for at most one chunk). Rows of the shuffling buffer and prefetched single batches are copied into it;
      rows waiting at the end of the last batch of a batch reader, and the prefetched blocks (from the first
      one on, with every row read after it), are re-read on resume (``chunk_fn`` must be deterministic; an
      elastic reader re-reads its last reader batch only); rows gathered from a row reader are copied.
    - ``load_state_dict(state)`` before the first ``next()``, on a pipeline over a fresh reader made with
      the same arguments: continues with the first batch not yielded before the save, no row lost or
      repeated. Raises :class:`~petastorm.errors.PetastormStateError` naming each setting that differs
      (``"batch_size (saved 8, now 16)"``); the reader raises it for another dataset / reader options.
    - ``settings`` (dict), ``reader``, ``rows_held`` (rows read from the reader and not yet yielded).

``ColumnShufflingBuffer(capacity, seed=None, rounds=1)``: ``add(columns)`` (``n <= free`` rows), ``retrieve(k)``
    (``min(k, size)`` random rows as new arrays), ``take(idx)`` (copies of rows ``idx``, an index array or a
    slice, left in place), ``size``, ``free``, ``capacity``, ``grow(capacity)``, ``clear()``,
    ``state_dict()`` / ``load_state_dict()``. Numeric columns of one dtype and cell shape share a row-major
    block, so a batch is one gather of whole rows per block, and the slots a batch empties are refilled by the
    next ``add``. Its state's ``rows`` hold every row held (slots, then the current round's rows not yet
    served; ``round_rows`` says how many of those).
``Batcher(source, batch_size, shuffling_queue_capacity=0, min_after_retrieve=None, seed=None,
drop_last=False, chunk_fn=None)``: the synchronous core of BatchPipeline (``next_batch() -> columns |
None``, ``next_block(max_batches, max_objects=None) -> (columns, k) | None`` with ``cut_origin``, state;
``state_dict(replay_from=(serial, offset))`` re-reads from a block's row instead of carrying its rows).
``ReaderSource(reader)``: reader -> column batches (``next_chunk(max_rows)``), reader state.
``rows_to_columns(rows, fields)``, ``num_rows``, ``slice_columns``, ``concat_columns``: column helpers.
``check_settings(saved, current, what)``: the PetastormStateError naming differing settings.
"""
from petastorm.adapters.batcher import Batcher, ReaderSource, rows_to_columns
from petastorm.adapters.checks import check_settings
from petastorm.adapters.column_buffer import ColumnShufflingBuffer, concat_columns, num_rows, slice_columns
from petastorm.adapters.pipeline import STATE_VERSION, BatchPipeline

__all__ = ["BatchPipeline", "STATE_VERSION", "ColumnShufflingBuffer", "Batcher", "ReaderSource",
           "rows_to_columns", "num_rows", "slice_columns", "concat_columns", "check_settings"]
