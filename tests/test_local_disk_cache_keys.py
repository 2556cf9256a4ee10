"""Cache keys of the local disk cache: two datasets with the same file names and row groups
(``train/part-0.parquet`` and ``val/part-0.parquet``) given the same ``cache_location``.

Recorded from 0.12.1 (black box, a script of the same steps): both readers open at once on one cache
directory, the train reader read first: ``train 0 49 val 1000 1049``. We gave ``val 0 49``: the val reader was
served the train reader's rows from the cache, silently.
"""
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from petastorm import TransformSpec, make_batch_reader


def _write(root, name, start):
    d = root / name
    d.mkdir()
    pq.write_table(pa.table({"id": np.arange(start, start + 50, dtype=np.int64)}), str(d / "part-0.parquet"),
                   row_group_size=25)
    return f"file://{d}"


def _reader(url, cache_dir, **kwargs):
    return make_batch_reader(url, cache_type="local-disk", cache_location=str(cache_dir), cache_size_limit=10 ** 8,
                             cache_row_size_estimate=100, reader_pool_type="thread", workers_count=1,
                             shuffle_row_groups=False, **kwargs)


def _read(reader):
    try:
        return sorted(int(x) for batch in reader for x in batch.id)
    finally:
        reader.stop()
        reader.join()


def test_two_datasets_with_the_same_layout_do_not_share_cache_entries(tmp_path):
    train = _write(tmp_path, "train", 0)
    val = _write(tmp_path, "val", 1000)
    cache_dir = tmp_path / "cache"
    a, b = _reader(train, cache_dir), _reader(val, cache_dir)
    assert _read(a) == list(range(50))
    assert _read(b) == list(range(1000, 1050))


def test_transform_spec_and_schema_fields_over_a_warm_cache(tmp_path):
    """Entries hold the stored columns before any transform: a reader with another TransformSpec or other
    schema_fields on the same cache gets its own values."""
    url = _write(tmp_path, "ds", 0)
    cache_dir = tmp_path / "cache"
    reader = _reader(url, cache_dir)
    assert _read(reader) == list(range(50))

    def double(df):
        df["id"] = df["id"] * 2
        return df

    assert _read(_reader(url, cache_dir, transform_spec=TransformSpec(double))) == list(range(0, 100, 2))
    assert _read(_reader(url, cache_dir, schema_fields=["id"])) == list(range(50))
    assert _read(_reader(url, cache_dir)) == list(range(50))
