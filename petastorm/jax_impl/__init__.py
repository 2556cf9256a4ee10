"""Internals of :mod:`petastorm.jax` (private): turning numpy column batches into device-placed, sharded
``jax.Array`` batches. The batching, shuffling, prefetch thread and resume state are the shared core's
(:mod:`petastorm.adapters`); this package only adds what is JAX's own.

- :mod:`petastorm.jax_impl.columns`: which numpy columns JAX can hold (dtype and x64 checks, named errors).
- :mod:`petastorm.jax_impl.chunks`: the whole batches of one reader batch, handed over as one block, placed
  in one page and cut on the device several per jitted call (reader order, no ``transform_fn``).
- :mod:`petastorm.jax_impl.transfer`: any other batch, small same-typed columns stacked into one transfer.
- :mod:`petastorm.jax_impl.placement`: the ``convert`` callable run on the prefetch thread (``device_put``
  with a sharding, checks of the batch dimension against the sharding).
"""
