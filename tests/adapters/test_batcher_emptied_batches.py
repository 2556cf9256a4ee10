"""The batching core (petastorm/adapters/batcher.py) over reader batches a ``transform_fn`` empties: the defects
the resume property test (tests/adapters/test_loaders_resume_property.py) showed, each as the smallest case."""
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from petastorm import make_batch_reader
from petastorm.pytorch import BatchedDataLoader


def _row_groups(path, groups):
    """One Parquet file, one row group per list of ids."""
    os.makedirs(path, exist_ok=True)
    with pq.ParquetWriter(os.path.join(path, "p.parquet"), pa.schema([("id", pa.int64())])) as writer:
        for ids in groups:
            writer.write_table(pa.table({"id": np.asarray(ids, dtype=np.int64)}))
    return "file://" + path


def test_a_reader_batch_the_transform_fn_empties_does_not_crash_the_shuffling_buffer(tmp_path):
    # was: IndexError('list index out of range') from concat_columns, raised by the first next()
    url = _row_groups(str(tmp_path), [[0], [1, 2]])
    with make_batch_reader(url, reader_pool_type="dummy", shuffle_row_groups=False) as reader:
        loader = BatchedDataLoader(reader, batch_size=1, shuffling_queue_capacity=5,
                                   transform_fn=lambda column: column[column != 0])
        assert sorted(int(b["id"]) for b in loader) == [1, 2]


def test_an_emptied_reader_batch_inside_a_pass_resumes_exactly(tmp_path):
    url = _row_groups(str(tmp_path), [[0, 1], [2], [3, 4, 5], [6], [7, 8]])
    drop = lambda column: column[column % 4 != 2]  # noqa: E731 - empties the row groups [2] and [6]
    options = dict(reader_pool_type="dummy", shuffle_row_groups=False, seed=1)
    with make_batch_reader(url, **options) as reader:
        loader = BatchedDataLoader(reader, batch_size=2, shuffling_queue_capacity=3, transform_fn=drop)
        it = iter(loader)
        head = [next(it)["id"].tolist() for _ in range(2)]
        state = loader.state_dict()
        it.close()
    with make_batch_reader(url, **options) as reader:
        loader = BatchedDataLoader(reader, batch_size=2, shuffling_queue_capacity=3, transform_fn=drop)
        loader.load_state_dict(state)
        tail = [b["id"].tolist() for b in loader]
    served = sorted(i for b in head + tail for i in b)
    assert served == [0, 1, 3, 4, 5, 7, 8]
