"""The selection stage: which row groups a reader reads, decided before any data is read."""
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from petastorm.errors import PetastormSchemaError
from petastorm.predicates import in_set
from petastorm.reader_impl.dataset import open_dataset
from petastorm.reader_impl.selection import select_row_groups


@pytest.fixture(scope="module")
def partitioned(tmp_path_factory):
    root = tmp_path_factory.mktemp("sel")
    for part in ("a", "b", "c"):
        d = root / f"part={part}"
        d.mkdir()
        pq.write_table(pa.table({"id": list(range(10))}), d / "0.parquet", row_group_size=5)
    return str(root)


def test_filters_on_partition_keys_prune_row_groups_and_are_not_reapplied(partitioned):
    dataset = open_dataset(partitioned)
    sel = select_row_groups(dataset, partitioned, None, [("part", "in", ["a", "c"])], None)
    assert {dict(dataset.row_groups[i].partition)["part"] for i in sel.rg_ids} == {"a", "c"}
    assert len(sel.rg_ids) == 4
    assert sel.pruned_by_filters and sel.row_filter_expression is None
    assert [s.stage for s in sel.log.steps] == ["dataset", "filters"]


def test_filters_on_data_columns_are_left_to_the_workers(partitioned):
    dataset = open_dataset(partitioned)
    sel = select_row_groups(dataset, partitioned, None, [("id", ">", 3)], None)
    assert sel.rg_ids == list(range(6)) and not sel.pruned_by_filters
    assert sel.row_filter_expression is not None and sel.filter_columns == ["id"]


def test_predicate_on_partition_keys_prunes_row_groups(partitioned):
    dataset = open_dataset(partitioned)
    sel = select_row_groups(dataset, partitioned, None, None, in_set({"b"}, "part"))
    assert {dict(dataset.row_groups[i].partition)["part"] for i in sel.rg_ids} == {"b"}


def test_nothing_left_warns_and_unknown_filter_column_raises(partitioned):
    dataset = open_dataset(partitioned)
    with pytest.warns(UserWarning, match="No matching data"):
        assert select_row_groups(dataset, partitioned, None, [("part", "=", "zzz")], None).rg_ids == []
    with pytest.raises(PetastormSchemaError):
        select_row_groups(dataset, partitioned, None, [("nope", "=", 1)], None)
