"""LocalDiskCache behind a reader: the epochs after the first are served from the cache, cached rows are
re-shuffled every epoch, and ``cleanup_cache`` removes the directory.
"""
import os

import pyarrow.parquet as pq

from petastorm import make_reader
from petastorm.reader_impl.worker import RowGroupWorker


def _ids(reader):
    return [int(r.id) for r in reader]


# --- the local disk cache serves later epochs ------------------------------------------------------------


def _count_parquet_reads_per_epoch(monkeypatch):
    """Counts ``ParquetFile.read_row_group`` calls per epoch of the work item the worker is running."""
    counts = {}
    epoch = [None]
    orig_call = RowGroupWorker.__call__
    orig_read = pq.ParquetFile.read_row_group

    def call(self, item):
        epoch[0] = item.epoch
        return orig_call(self, item)

    def read_row_group(self, *args, **kwargs):
        counts[epoch[0]] = counts.get(epoch[0], 0) + 1
        return orig_read(self, *args, **kwargs)

    monkeypatch.setattr(RowGroupWorker, "__call__", call)
    monkeypatch.setattr(pq.ParquetFile, "read_row_group", read_row_group)
    return counts


def _cache_kwargs(tmp_path):
    return dict(cache_type="local-disk", cache_location=str(tmp_path / "cache"), cache_size_limit=200 * 2 ** 20,
                cache_row_size_estimate=1000)


def test_local_disk_cache_serves_the_epochs_after_the_first(synthetic_dataset, tmp_path, monkeypatch):
    counts = _count_parquet_reads_per_epoch(monkeypatch)
    with make_reader(synthetic_dataset, reader_pool_type="dummy", num_epochs=3, **_cache_kwargs(tmp_path)) as reader:
        ids = _ids(reader)
        reader.cleanup_cache()

    assert len(ids) == 300
    for epoch in range(3):
        assert sorted(ids[epoch * 100:(epoch + 1) * 100]) == list(range(100))
    assert counts.get(0, 0) == 10  # the first epoch reads every row group once
    assert counts.get(1, 0) == 0 and counts.get(2, 0) == 0, counts  # later epochs: all from the cache
    assert set(counts) == {0}


def test_local_disk_cache_rows_are_reshuffled_each_epoch_and_cleanup_removes_the_directory(
        synthetic_dataset, tmp_path, monkeypatch):
    counts = _count_parquet_reads_per_epoch(monkeypatch)
    kwargs = _cache_kwargs(tmp_path)
    with make_reader(synthetic_dataset, reader_pool_type="dummy", num_epochs=3, shuffle_rows=True, seed=11,
                     shuffle_row_groups=False, **kwargs) as reader:
        ids = _ids(reader)
        assert os.path.isdir(kwargs["cache_location"])
        assert os.listdir(kwargs["cache_location"])
        reader.cleanup_cache()
        assert not os.path.exists(kwargs["cache_location"])

    epochs = [ids[e * 100:(e + 1) * 100] for e in range(3)]
    for epoch_ids in epochs:
        assert sorted(epoch_ids) == list(range(100))
        # row groups in order, the rows of each one permuted
        for block in range(10):
            assert sorted(epoch_ids[block * 10:(block + 1) * 10]) == list(range(block * 10, block * 10 + 10))
    assert epochs[0] != list(range(100))  # rows were shuffled at all
    assert epochs[1] != epochs[0]  # cached rows re-shuffled in epoch 2 ...
    assert epochs[2] != epochs[1]  # ... and again in epoch 3
    assert counts == {0: 10}, counts  # no Parquet read after the first epoch


def test_cached_rows_are_reshuffled_every_epoch(synthetic_dataset, tmp_path):
    with make_reader(synthetic_dataset, cache_type="local-disk", cache_location=str(tmp_path / "c"),
                     cache_size_limit=10 ** 9, cache_row_size_estimate=100, num_epochs=3, seed=9,
                     shuffle_rows=True, shuffle_row_groups=False) as reader:
        ids = [int(r.id) for r in reader]
    epochs = [ids[i * 100:(i + 1) * 100] for i in range(3)]
    assert all(sorted(e) == list(range(100)) for e in epochs)
    assert epochs[1] != epochs[2]
    reader.cleanup_cache()
