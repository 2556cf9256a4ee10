"""A corrupt data page found by the worker (thread, process or the caller's own): the caller gets an error
naming the file and the row group, quickly, and no thread is left behind."""
import threading
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from petastorm import make_batch_reader
from petastorm.errors import PetastormDatasetError

POOLS = ["dummy", "thread", "process"]


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
