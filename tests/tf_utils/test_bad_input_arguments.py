"""Probe round 2 of petastorm.tf_utils (issue 11): what a hostile or hurried user passes.

Expected values marked "recorded" were recorded from the original petastorm 0.12.1 (TensorFlow 2.16.2) through
its public API.
"""
import pytest
import tensorflow as tf
from _fixtures.simple_ndarrays import write_simple

from petastorm import make_reader
from petastorm.errors import PetastormTypeError
from petastorm.pytorch import DataLoader
from petastorm.tf_utils import make_petastorm_dataset, tf_tensors


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    return write_simple(str(tmp_path_factory.mktemp("tf_probe2_hostile")))


def _not_readers(url):
    return [None, url, [1, 2], 3]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("index", range(4))
def test_make_petastorm_dataset_of_something_that_is_no_reader_names_the_argument(url, index):
    # recorded from 0.12.1: a bare AttributeError "'NoneType' object has no attribute 'ngram'" (also for a URL
    # string, a list); before: "'str' object has no attribute 'schema'"
    thing = _not_readers(url)[index]
    with pytest.raises(PetastormTypeError, match=r"reader: make_petastorm_dataset needs a petastorm reader"):
        make_petastorm_dataset(thing)


@pytest.mark.timeout(120)
def test_make_petastorm_dataset_of_a_loader_says_to_pass_the_reader(url):
    with make_reader(url, schema_fields=["id"], workers_count=1) as reader:
        with pytest.raises(PetastormTypeError, match=r"got DataLoader"):
            make_petastorm_dataset(DataLoader(reader))


@pytest.mark.timeout(120)
@pytest.mark.parametrize("index", range(4))
def test_tf_tensors_of_something_that_is_no_reader_names_the_argument(url, index):
    # recorded from 0.12.1: "'NoneType' object has no attribute 'batched_output'"
    thing = _not_readers(url)[index]
    with tf.compat.v1.Graph().as_default():
        with pytest.raises(PetastormTypeError, match=r"reader: tf_tensors needs a petastorm reader"):
            tf_tensors(thing)
