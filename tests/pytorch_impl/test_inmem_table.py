"""InMemBatchedDataLoader's table: columns sharing a block (column-major in order, row-major shuffled) keep their
rows together, their order and their dtypes, and every batch is new memory."""
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from petastorm import make_batch_reader
from petastorm.errors import PetastormSchemaError
from petastorm.pytorch import InMemBatchedDataLoader
from petastorm.pytorch_impl.inmem_table import InMemTable


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """230 rows, row groups of 50: a float32 (= id), id int64, b float32 (= -id), flag bool (id odd)."""
    path = tmp_path_factory.mktemp("inmem") / "mixed"
    path.mkdir()
    ids = np.arange(230, dtype=np.int64)
    pq.write_table(pa.table({"a": ids.astype(np.float32), "id": ids, "b": -ids.astype(np.float32),
                             "flag": ids % 2 == 1}), str(path / "p.parquet"), row_group_size=50)
    return "file://" + str(path)


@pytest.mark.parametrize("shuffle", [False, True])
def test_rows_stay_together_in_both_layouts(mixed, shuffle):
    with make_batch_reader(mixed, shuffle_row_groups=False, workers_count=1) as reader:
        loader = InMemBatchedDataLoader(reader, batch_size=32, num_epochs=2, rows_capacity=230, shuffle=shuffle,
                                        seed=3)
        batches = list(loader)
    assert len(batches) == 16 and [len(b["id"]) for b in batches[:8]] == [32] * 7 + [6]
    first = batches[0]
    assert list(first) == ["a", "id", "b", "flag"]
    assert [first[k].dtype for k in first] == [torch.float32, torch.int64, torch.float32, torch.uint8]
    for b in batches:
        assert b["a"].is_contiguous() and b["b"].is_contiguous()
        assert torch.equal(b["a"], b["id"].float()) and torch.equal(b["b"], -b["id"].float())
        assert torch.equal(b["flag"], (b["id"] % 2).to(torch.uint8))
    for epoch in (batches[:8], batches[8:]):
        ids = torch.cat([b["id"] for b in epoch]).tolist()
        assert sorted(ids) == list(range(230))
        assert (ids == list(range(230))) != shuffle


@pytest.mark.parametrize("shuffle", [False, True])
def test_writing_into_a_batch_changes_neither_the_table_nor_the_other_columns(mixed, shuffle):
    with make_batch_reader(mixed, shuffle_row_groups=False, workers_count=1) as reader:
        loader = InMemBatchedDataLoader(reader, batch_size=230, num_epochs=2, rows_capacity=230, shuffle=shuffle)
        it = iter(loader)
        one = next(it)
        one["a"].fill_(-7.0)
        assert torch.equal(one["b"], -one["id"].float())
        two = next(it)
    assert torch.equal(two["a"], two["id"].float())


def test_parts_with_cells_of_different_shapes_are_refused():
    parts = [{"x": np.zeros((3, 2), np.float32)}, {"x": np.zeros((3, 4), np.float32)}]
    with pytest.raises(PetastormSchemaError, match="field 'x' has cells of shape"):
        InMemTable(parts, row_major=False)


def test_a_missing_field_is_named():
    parts = [{"x": np.zeros(3), "y": np.zeros(3)}, {"x": np.zeros(3)}]
    with pytest.raises(PetastormSchemaError, match=r"\['y'\] are missing"):
        InMemTable(parts, row_major=True)


def test_a_column_widened_by_a_later_part_keeps_its_values():
    parts = [{"x": np.array([1, 2], np.int16), "y": np.array([1.5, 2.5])}, {"x": np.array([70000], np.int32),
                                                                            "y": np.array([3.5])}]
    table = InMemTable(parts, row_major=False)
    out = table.batch(slice(0, 3))
    assert out["x"].tolist() == [1, 2, 70000] and out["x"].dtype == torch.int32 and out["y"].tolist() == [1.5, 2.5, 3.5]


@pytest.mark.parametrize("row_major", [False, True])
def test_array_cells_sharing_a_block_are_gathered_whole(row_major):
    a = np.arange(12, dtype=np.float32).reshape(6, 2)
    table = InMemTable([{"a": a[:4], "b": -a[:4]}, {"a": a[4:], "b": -a[4:]}], row_major=row_major)
    out = table.batch(np.array([5, 0, 3]))
    assert out["a"].tolist() == a[[5, 0, 3]].tolist() and out["b"].tolist() == (-a[[5, 0, 3]]).tolist()
    assert out["a"].is_contiguous() and out["b"].shape == (3, 2)
    assert table.batch(slice(1, 3))["a"].tolist() == a[1:3].tolist()


def test_an_empty_table_serves_empty_batches():
    table = InMemTable([{"a": np.zeros((0, 2), np.float32)}], row_major=True)
    assert table.rows == 0 and table.batch(slice(0, 4))["a"].shape == (0, 2)


def test_batches_in_order_are_new_memory_each_call():
    # 1,000 rows of a float32 column pair and a bool column, batches of 7 in order: writing into a batch changes
    # no other batch; asking for a batch again, or out of order, gives fresh tensors
    ids = np.arange(1000)
    table = InMemTable([{"a": ids.astype(np.float32), "flag": ids % 3 == 0, "b": -ids.astype(np.float32)}],
                       row_major=False)
    got = [table.batch(slice(s, s + 7)) for s in range(0, 1000, 7)]
    assert [len(b["a"]) for b in got] == [7] * 142 + [6]
    assert torch.cat([b["a"] for b in got]).tolist() == ids.tolist()
    assert torch.cat([b["b"] for b in got]).tolist() == (-ids).tolist()
    assert torch.cat([b["flag"] for b in got]).tolist() == (ids % 3 == 0).astype(np.uint8).tolist()
    assert all(list(b) == ["a", "flag", "b"] and b["a"].is_contiguous() for b in got)
    for b in got[:3]:
        b["a"].fill_(-1.0)  # a user writing into batches
    assert got[3]["a"].tolist() == ids[21:28].tolist() and got[0]["b"].tolist() == (-ids[:7]).tolist()
    again = [table.batch(slice(0, 7)), table.batch(slice(0, 7)), table.batch(slice(7, 14))]
    assert [b["a"].tolist() for b in again] == [ids[:7].tolist(), ids[:7].tolist(), ids[7:14].tolist()]
    assert again[0]["a"].data_ptr() != again[1]["a"].data_ptr()
    assert table.batch(slice(500, 510))["b"].tolist() == (-ids[500:510]).tolist()


def test_the_loader_in_order_over_chunks_resumes_and_keeps_epochs_apart(mixed):
    with make_batch_reader(mixed, shuffle_row_groups=False, workers_count=1) as reader:
        loader = InMemBatchedDataLoader(reader, batch_size=8, num_epochs=2, rows_capacity=230)
        it = iter(loader)
        first = [next(it) for _ in range(5)]
        state = loader.state_dict()
        for b in first:
            b["a"].fill_(0.0)
        rest = list(it)
    with make_batch_reader(mixed, shuffle_row_groups=False, workers_count=1) as reader:
        resumed = InMemBatchedDataLoader(reader, batch_size=8, num_epochs=2, rows_capacity=230)
        resumed.load_state_dict(state)
        again = list(resumed)
    assert [b["id"].tolist() for b in again] == [b["id"].tolist() for b in rest]
    ids = [b["id"].tolist() for b in first] + [b["id"].tolist() for b in rest]
    assert sum(ids, []) == list(range(230)) * 2
    assert all(torch.equal(b["a"], b["id"].float()) for b in rest + again)


@pytest.mark.parametrize("row_major", [False, True])
def test_fields_of_empty_cells_are_served_in_both_layouts(row_major):
    # before: a shuffled InMemBatchedDataLoader over a field of shape (0,) (or (2, 0)) raised numpy's
    # "cannot reshape array of size 0 into shape (10,1)" when loading; the ordered one and the others served it
    parts = [{"id": np.arange(10), "e": np.zeros((10, 0), np.float32), "m": np.zeros((10, 2, 0), np.float32),
              "f": np.zeros((10, 0), np.float32)}]
    table = InMemTable(parts, row_major=row_major, row_values=False)
    batch = table.batch(np.array([7, 2, 5]) if row_major else slice(2, 5))
    assert batch["id"].tolist() == ([7, 2, 5] if row_major else [2, 3, 4])
    assert batch["e"].shape == (3, 0) and batch["f"].shape == (3, 0) and batch["m"].shape == (3, 2, 0)
    assert batch["e"].dtype == torch.float32
