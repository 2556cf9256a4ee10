"""petastorm.pytorch: the facade's names and signatures, and the original's private sanitize helper.

Expected values marked "recorded from 0.12.1" were observed by calling the original petastorm 0.12.1
(with torch 2.13) through its public API as a black box.
"""
import inspect

import numpy as np
import pytest

import petastorm.pytorch as pt
from petastorm.pytorch import decimal_friendly_collate

# --- the facade -----------------------------------------------------------------------------------------------

def test_the_original_public_names_are_importable_from_petastorm_pytorch():
    # recorded from 0.12.1: the public names of petastorm.pytorch
    for name in ["DataLoader", "BatchedDataLoader", "InMemBatchedDataLoader", "LoaderBase",
                 "decimal_friendly_collate", "RandomShufflingBuffer", "NoopShufflingBuffer",
                 "BatchedRandomShufflingBuffer", "BatchedNoopShufflingBuffer"]:
        assert getattr(pt, name) is not None, name
        assert name in pt.__all__
    from petastorm.reader_impl.shuffling_buffer import NoopShufflingBuffer, RandomShufflingBuffer
    assert pt.RandomShufflingBuffer is RandomShufflingBuffer and pt.NoopShufflingBuffer is NoopShufflingBuffer


def test_dataloader_and_collate_signatures_are_the_originals():
    # recorded from 0.12.1
    sig = inspect.signature(pt.DataLoader)
    assert list(sig.parameters) == ["reader", "batch_size", "collate_fn", "shuffling_queue_capacity"]
    assert sig.parameters["batch_size"].default == 1
    assert sig.parameters["collate_fn"].default is decimal_friendly_collate
    assert sig.parameters["shuffling_queue_capacity"].default == 0
    assert list(inspect.signature(decimal_friendly_collate).parameters) == ["batch"]
    assert issubclass(pt.DataLoader, pt.LoaderBase)


def test_unknown_attribute_of_the_facade_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        pt.Nope  # noqa: B018


def test_the_originals_private_sanitize_helper_promotes_in_place():
    row = {"a": np.zeros(2, np.uint16), "b": np.bool_(False)}
    assert pt._sanitize_pytorch_types(row) is None
    assert row["a"].dtype == np.int32 and type(row["b"]) is np.uint8
