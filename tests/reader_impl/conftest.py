"""Fixtures shared by the reader_impl tests."""
import shutil
import tempfile

import pytest

from ._elastic_sim import write_ids_dataset


@pytest.fixture(scope="module")
def datasets():
    """Datasets of row ids by shape (files, row groups per file, rows per group), written once per module
    (``_elastic_sim.write_ids_dataset``)."""
    root = tempfile.mkdtemp(prefix="elastic-")
    cache = {}

    def get(files, groups, rows):
        key = (files, groups, rows)
        if key not in cache:
            cache[key] = write_ids_dataset(f"{root}/{files}-{groups}-{rows}", files, groups, rows)
        return cache[key]

    yield get
    shutil.rmtree(root, ignore_errors=True)
