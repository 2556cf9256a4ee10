"""Row-group selectors through make_reader: an index built by ``build_rowgroup_index``, and one stored by an old
release of the original."""
import os

from petastorm import make_reader


def test_rowgroup_selector_with_a_built_index(synthetic_dataset, tmp_path):
    import shutil

    from petastorm.etl.rowgroup_indexers import SingleFieldIndexer
    from petastorm.etl.rowgroup_indexing import build_rowgroup_index
    from petastorm.selectors import SingleIndexSelector

    path = str(tmp_path / "ds")
    shutil.copytree(synthetic_dataset[len("file://"):], path)
    url = "file://" + path
    build_rowgroup_index(url, None, [SingleFieldIndexer("by_decade", "id_div_10")])
    with make_reader(url, rowgroup_selector=SingleIndexSelector("by_decade", [2, 7])) as reader:
        ids = sorted(int(r.id) for r in reader)
    assert ids == list(range(20, 30)) + list(range(70, 80))


def test_legacy_stored_index_selects_row_groups(testdata_dir):
    from petastorm.etl.rowgroup_indexing import load_rowgroup_indexes
    from petastorm.reader_impl.dataset import open_dataset
    from petastorm.selectors import SingleIndexSelector

    url = "file://" + os.path.join(testdata_dir, "legacy", "0.7.6")
    indexes = load_rowgroup_indexes(open_dataset(url).metadata, url)
    name = sorted(indexes)[0]
    value = sorted(indexes[name].indexed_values, key=str)[0]
    with make_reader(url, rowgroup_selector=SingleIndexSelector(name, [value]), workers_count=1) as reader:
        rows = list(reader)
    assert 0 < len(rows) < 100
