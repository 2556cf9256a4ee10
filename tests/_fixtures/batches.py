"""Reading a whole ``make_batch_reader`` pass in the tests."""
from __future__ import annotations

import numpy as np

from petastorm import make_batch_reader


def read_batches(url, **kwargs):
    """All batches of a make_batch_reader pass, and the reader's schema (``workers_count`` defaults to 2)."""
    kwargs.setdefault("workers_count", 2)
    with make_batch_reader(url, **kwargs) as reader:
        batches = list(reader)
        schema = reader.schema
    return batches, schema


def concat_batches(batches):
    """Concatenate the batches column by column (object arrays stay object arrays)."""
    names = batches[0]._fields
    return {name: np.concatenate([getattr(b, name) for b in batches]) for name in names}
