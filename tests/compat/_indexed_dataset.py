"""The indexed dataset of the reader-argument tests (``test_reader_arguments_fixed.py``,
``test_reader_arguments_equal.py``): its schema, how it is written, and how the tests read its ids back. The fixtures that hand its urls to the tests
(``part_url``, ``flat_url``, with the testdata stores ``legacy_url``, ``codecs_url``) are in ``conftest.py``."""
import warnings
from typing import Callable, List

import numpy as np

from petastorm import make_batch_reader, make_reader
from petastorm.codecs import NdarrayCodec, ScalarCodec
from petastorm.etl.rowgroup_indexers import SingleFieldIndexer
from petastorm.etl.rowgroup_indexing import build_rowgroup_index
from petastorm.etl.writer import write_dataset
from petastorm.spark_types import spark_type
from petastorm.unischema import Unischema, UnischemaField

__all__ = ["FACTORIES", "IndexedSchema", "read_ids", "write_indexed_dataset"]

FACTORIES = [make_reader, make_batch_reader]

IndexedSchema = Unischema("IndexedSchema", [
    UnischemaField("id", np.int64, (), ScalarCodec(spark_type("LongType")), False),
    UnischemaField("part", np.str_, (), ScalarCodec(spark_type("StringType")), False),
    UnischemaField("name", np.str_, (), ScalarCodec(spark_type("StringType")), False),
    UnischemaField("f", np.float32, (), ScalarCodec(spark_type("FloatType")), False),
    UnischemaField("v", np.float32, (3,), NdarrayCodec(), False),
    UnischemaField("ts", np.int64, (), ScalarCodec(spark_type("LongType")), False),
])


def write_indexed_dataset(path: str, **kwargs) -> str:
    """Write 40 ``IndexedSchema`` rows (row ``i``: ``part`` ``p{i % 4}``, ``name`` ``n{i}``, ``f`` ``i / 2``, ``v``
    three times ``i``, ``ts`` ``i``) in files of 5 rows under the local directory ``path``, and build the indexes
    ``by_id`` and ``by_name``.

    Parameters
    ----------
    path : str
        A local directory (no scheme).
    **kwargs
        More arguments of ``write_dataset`` (``partition_by=["part"]``, ...).

    Returns
    -------
    str
        The dataset's ``file://`` url.
    """
    rows = [dict(id=i, part=f"p{i % 4}", name=f"n{i}", f=np.float32(i / 2), v=np.full(3, i, np.float32), ts=i)
            for i in range(40)]
    url = "file://" + path
    write_dataset(url, IndexedSchema, rows, workers_count=1, progress=False, overwrite=True, rows_per_file=5,
                  **kwargs)
    build_rowgroup_index(url, None, [SingleFieldIndexer("by_id", "id"), SingleFieldIndexer("by_name", "name")])
    return url


def read_ids(factory: Callable, url: str, quiet: bool = True, **kwargs) -> List[int]:
    """Ids read, in order (one worker, no shuffling unless ``kwargs`` say otherwise); ``quiet`` ignores warnings
    (shard_seed's, ...)."""
    kwargs.setdefault("workers_count", 1)
    kwargs.setdefault("shuffle_row_groups", False)
    with warnings.catch_warnings():
        if quiet:
            warnings.simplefilter("ignore")
        with factory(url, **kwargs) as reader:
            if reader.batched_output:
                return [int(i) for batch in reader for i in batch.id]
            return [int(row.id) for row in reader]
