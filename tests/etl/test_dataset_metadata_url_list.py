"""A list holding one dataset directory URL read as that dataset, as 0.12.1 accepted it (recorded as a black box).

Recorded from 0.12.1: ``get_schema_from_dataset_url(['file:///.../ds'])`` returned the dataset's Unischema and
``make_reader(['file:///.../ds'])`` read all its rows (its pyarrow unwrapped a list of one path); a list of two
directories raised OSError ('Passed non-file path'). Ours refused the one-element list with
PetastormMetadataError / DatasetNotFoundError.
"""
import pytest
from _fixtures.datasets import SyntheticSchema

from petastorm import make_reader
from petastorm.etl.dataset_metadata import get_schema_from_dataset_url


@pytest.mark.parametrize("wrap", [list, tuple], ids=["list", "tuple"])
def test_schema_of_a_one_directory_list_is_the_dataset_schema(synthetic_dataset, wrap):
    schema = get_schema_from_dataset_url(wrap([synthetic_dataset]))
    assert list(schema.fields) == list(SyntheticSchema.fields)
    assert get_schema_from_dataset_url(wrap([synthetic_dataset + "/"])) == schema


def test_make_reader_of_a_one_directory_list_reads_the_dataset(synthetic_dataset):
    with make_reader([synthetic_dataset], reader_pool_type="dummy", num_epochs=1) as reader:
        ids = sorted(int(row.id) for row in reader)
    assert ids == list(range(100))
