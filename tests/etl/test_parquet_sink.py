"""How write_dataset spreads rows over files (Layout) and writes them (DatasetSink), on a local directory."""
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from petastorm.etl.parquet_sink import DatasetSink, Layout


def test_num_files_with_a_known_row_count_gives_contiguous_balanced_files():
    assert Layout.for_files(3, None, 10) == Layout(sizes=[3, 3, 4])
    assert Layout.for_files(4, None, 2) == Layout(sizes=[1, 1])  # no empty file


def test_num_files_without_a_row_count_deals_rows_in_turn():
    assert Layout.for_files(3, None, None) == Layout(round_robin=3)


def test_rows_per_file_and_no_option():
    assert Layout.for_files(None, 5, 100) == Layout(rows_per_file=5)
    assert Layout.for_files(None, None, 100) == Layout()


def _rows_per_file(tmp_path, layout, batches):
    schema = pa.schema([("id", pa.int64())])
    sink = DatasetSink(pafs.LocalFileSystem(), str(tmp_path), schema, [], layout, 1 << 20, "none")
    for batch in batches:
        sink.write(batch)
    written = sorted(sink.close())
    return [(n, pq.read_table(tmp_path / name).column("id").to_pylist()) for name, n, _ in written]


def test_the_sink_cuts_files_as_the_layout_says(tmp_path):
    batches = [pa.record_batch({"id": list(range(0, 4))}), pa.record_batch({"id": list(range(4, 10))})]
    assert _rows_per_file(tmp_path / "sizes", Layout.for_files(3, None, 10), batches) == [
        (3, [0, 1, 2]), (3, [3, 4, 5]), (4, [6, 7, 8, 9])]
    assert _rows_per_file(tmp_path / "rr", Layout.for_files(2, None, None), batches) == [
        (5, [0, 2, 4, 6, 8]), (5, [1, 3, 5, 7, 9])]
    assert _rows_per_file(tmp_path / "per", Layout.for_files(None, 4, None), batches) == [
        (4, [0, 1, 2, 3]), (4, [4, 5, 6, 7]), (2, [8, 9])]
