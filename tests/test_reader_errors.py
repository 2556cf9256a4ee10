"""Bad input to the readers: a clear error naming what is wrong, and nothing hangs."""

import threading
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from petastorm import TransformSpec, make_batch_reader, make_reader
from petastorm.errors import PetastormDatasetError, PetastormError, PetastormStateError
from petastorm.predicates import in_set


def test_missing_path(tmp_path):
    with pytest.raises(PetastormError, match="does not exist"):
        make_reader("file://" + str(tmp_path / "nothing_here"))


def test_empty_directory(tmp_path):
    with pytest.raises(PetastormError, match="no Parquet files"):
        make_batch_reader("file://" + str(tmp_path))


def test_directory_without_parquet_files(tmp_path):
    (tmp_path / "_SUCCESS").write_text("")
    (tmp_path / ".hidden").write_text("x")
    with pytest.raises(PetastormError, match="no Parquet files"):
        make_batch_reader("file://" + str(tmp_path))


POOLS = ["dummy", "thread", "process"]


@pytest.mark.parametrize("pool", POOLS)
def test_corrupt_footer_is_named_when_the_reader_is_made(tmp_path, pool):
    """Footers are read in the calling process when the reader is made, whatever the pool: the error
    comes from make_batch_reader itself (no worker is involved; the worker path is tested by
    test_corrupt_data_page_is_named_by_the_worker_pool)."""
    pq.write_table(pa.table({"x": list(range(10))}), str(tmp_path / "good.parquet"))
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 this is not parquet PAR1")
    with pytest.raises(PetastormDatasetError, match=r"bad\.parquet"):
        make_batch_reader("file://" + str(tmp_path), reader_pool_type=pool, workers_count=1)


@pytest.mark.parametrize("pool", POOLS)
def test_truncated_parquet_file_is_named(tmp_path, pool):
    path = str(tmp_path / "trunc.parquet")
    pq.write_table(pa.table({"x": list(range(1000))}), path)
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])
    with pytest.raises(PetastormDatasetError, match=r"trunc\.parquet"):
        make_batch_reader("file://" + str(tmp_path), reader_pool_type=pool, workers_count=1)


_ROWS, _ROW_GROUP = 2000, 1000


def _values():
    return (np.arange(_ROWS) % 7).astype(np.float64)  # compressible: snappy writes copies, not one literal


def _write_file_with_a_corrupt_data_page(path, where):
    """A snappy Parquet file of 2 row groups: the footer is intact, the 2nd row group's data page is not.

    where="page_header": the Thrift page header at the column chunk's data_page_offset is overwritten.
    where="snappy_stream": the page header is intact; the snappy stream after it is (its length varint and
    first tag kept, the rest overwritten), so the page fails to decompress.
    """
    values = _values()
    schema = pa.schema([pa.field("y", pa.float64(), nullable=False)])
    pq.write_table(pa.table({"y": values}, schema=schema), path, row_group_size=_ROW_GROUP,
                   compression="snappy", use_dictionary=False)
    meta = pq.ParquetFile(path).metadata
    assert meta.num_row_groups == 2
    chunk = meta.row_group(1).column(0)
    start, size = chunk.data_page_offset, chunk.total_compressed_size
    data = bytearray(open(path, "rb").read())
    if where == "page_header":
        data[start:start + 12] = b"\xff" * 12
    else:
        # a non-nullable PLAIN page is the raw little-endian values: its snappy stream is what
        # pa.compress makes of them
        stream = pa.compress(values[_ROW_GROUP:].tobytes(), codec="snappy", asbytes=True)
        at = data.find(stream, start, start + size)
        assert at > start, "the snappy stream of the data page was not found"
        data[at + 3:at + len(stream)] = b"\xff" * (len(stream) - 3)
    open(path, "wb").write(bytes(data))
    # the footer still reads, and the corruption is really detected when the page is decoded
    assert pq.ParquetFile(path).metadata.num_rows == _ROWS
    first = pq.ParquetFile(path).read_row_group(0).column("y").to_numpy()
    assert first.tolist() == values[:_ROW_GROUP].tolist()
    with pytest.raises(OSError):
        pq.ParquetFile(path).read_row_group(1)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("where", ["page_header", "snappy_stream"])
@pytest.mark.parametrize("pool", POOLS)
def test_corrupt_data_page_is_named_by_the_worker_pool(tmp_path, pool, where):
    """The footer is fine, so make_batch_reader succeeds; the worker (thread, process, or the caller itself
    for 'dummy') fails decoding the page and the caller gets an error naming the file, quickly, and the
    reader stops without leaving threads behind."""
    values = _values()
    pq.write_table(pa.table({"y": values}), str(tmp_path / "good.parquet"), row_group_size=_ROW_GROUP)
    _write_file_with_a_corrupt_data_page(str(tmp_path / "bad.parquet"), where)
    threads_before = set(threading.enumerate())
    started = time.monotonic()
    reader = make_batch_reader("file://" + str(tmp_path), reader_pool_type=pool, workers_count=2,
                               shuffle_row_groups=False)
    with pytest.raises(PetastormDatasetError, match=r"bad\.parquet") as info:
        with reader:
            for _ in reader:
                pass
    elapsed = time.monotonic() - started
    assert elapsed < 10, f"the error took {elapsed:.1f} s"
    message = str(info.value)
    assert "row group 1" in message
    # pyarrow's own decoding error is kept: the corruption was found decoding the page, not elsewhere
    assert {"page_header": "page header", "snappy_stream": "snappy"}[where] in message.lower()
    left = [t for t in set(threading.enumerate()) - threads_before if t.is_alive()]
    assert not left, f"threads still running after the reader stopped: {left}"


def test_plain_parquet_with_make_reader_suggests_make_batch_reader(tmp_path):
    pq.write_table(pa.table({"x": [1, 2]}), str(tmp_path / "a.parquet"))
    with pytest.warns(UserWarning, match="make_batch_reader"):  # the original's warning; it reads on
        make_reader("file://" + str(tmp_path)).stop()


def test_schema_field_regex_matching_nothing(synthetic_dataset):
    with pytest.raises(ValueError, match="no_such_field"):
        make_reader(synthetic_dataset, schema_fields=["no_such_field"])


@pytest.mark.parametrize("kwargs,word", [
    (dict(cur_shard=3, shard_count=3), "cur_shard"),
    (dict(cur_shard=0), "shard_count"),
    (dict(shard_count=2), "cur_shard"),
    (dict(workers_count=-1), "workers_count"),
    (dict(reader_pool_type="fibers"), "reader_pool_type"),
    (dict(num_epochs=0), "num_epochs"),
    (dict(num_epochs="x"), "num_epochs"),
    (dict(cache_type="redis"), "cache_type"),
])
def test_bad_arguments_name_the_argument(synthetic_dataset, kwargs, word):
    with pytest.raises(ValueError, match=word):
        make_reader(synthetic_dataset, **kwargs)


def test_more_shards_than_row_groups(synthetic_dataset):
    with pytest.raises(PetastormError):
        make_reader(synthetic_dataset, cur_shard=11, shard_count=12)


def test_predicate_on_a_field_not_in_the_schema(synthetic_dataset):
    with pytest.raises(ValueError, match="not_a_field"):
        make_reader(synthetic_dataset, predicate=in_set({1}, "not_a_field"))


@pytest.mark.parametrize("pool", ["thread", "process"])
def test_transform_that_raises_reaches_the_caller(synthetic_dataset, pool):
    def boom(row):
        raise ZeroDivisionError("boom in transform")

    with make_reader(synthetic_dataset, transform_spec=TransformSpec(boom), reader_pool_type=pool,
                     workers_count=1) as reader:
        with pytest.raises(Exception, match="boom in transform"):
            next(reader)


def test_transform_returning_the_wrong_type(synthetic_dataset):
    with make_batch_reader(synthetic_dataset, transform_spec=TransformSpec(lambda df: 42),
                           workers_count=1) as reader:
        with pytest.raises(PetastormError):
            next(reader)


def test_state_dict_of_another_dataset_is_refused(synthetic_dataset, tmp_path):
    from _fixtures.datasets import write_synthetic_dataset

    other = write_synthetic_dataset(str(tmp_path / "other"), rows=50)
    with make_reader(other, seed=1) as reader:
        next(reader)
        state = reader.state_dict()
    with pytest.raises(PetastormStateError, match="dataset"):
        make_reader(synthetic_dataset, seed=1, resume_from=state)


def test_predicate_that_filters_everything_yields_nothing(synthetic_dataset):
    with make_reader(synthetic_dataset, predicate=in_set({-1}, "id")) as reader:
        assert list(reader) == []
