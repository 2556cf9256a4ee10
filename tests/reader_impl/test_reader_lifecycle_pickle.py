"""A reader made in the parent and handed to a 'spawn' child (a ``multiprocessing.Process`` argument, or the
``torch.utils.data.Dataset`` a spawn/forkserver DataLoader pickles for its workers) cannot travel: the error
should say so, naming the reader and what to do.

Today the error is whatever unpicklable object ``pickle`` meets first inside the reader: ``TypeError: no
default __reduce__ due to non-trivial __cinit__`` (a pyarrow object, dummy pool), ``cannot pickle
'_queue.SimpleQueue' object`` (thread pool), ``cannot pickle '_thread.lock' object`` (process pool).
0.12.1 (recorded, same script): ``TypeError: cannot pickle '_thread.lock' object`` for every pool: the
error stays a ``TypeError``.
"""
import pickle

import pytest
from _fixtures.datasets import write_synthetic_dataset

from petastorm import make_batch_reader, make_reader


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    return write_synthetic_dataset(str(tmp_path_factory.mktemp("lifecycle") / "dataset"), rows=40,
                                   rows_per_group=10, groups_per_file=2)


@pytest.mark.parametrize("maker", [make_reader, make_batch_reader])
@pytest.mark.parametrize("pool", ["thread", "process", "dummy"])
def test_pickling_a_reader_is_a_type_error_that_names_the_reader(url, pool, maker):
    with maker(url, reader_pool_type=pool, workers_count=2) as reader:
        with pytest.raises(TypeError, match=r"a petastorm Reader cannot be pickled.*make the reader in the "
                                            r"process that reads it"):
            pickle.dumps(reader)
