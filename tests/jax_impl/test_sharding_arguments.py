"""Shardings that JAX's device_put cannot place with are refused when the iterator is made, naming the cause."""
import jax
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from petastorm import make_batch_reader
from petastorm.errors import PetastormArgumentError
from petastorm.jax import make_jax_iterator


@pytest.mark.timeout(60)
def test_a_sharding_with_an_unconstrained_axis_is_refused_up_front_naming_it(synthetic_dataset):
    # was accepted, then the first next() raised jax.device_put's bare KeyError: UNCONSTRAINED
    mesh = Mesh(np.array(jax.devices()[:1]), ("data",))
    sharding = NamedSharding(mesh, PartitionSpec(PartitionSpec.UNCONSTRAINED))
    with make_batch_reader(synthetic_dataset, schema_fields=["id"], workers_count=1) as reader:
        with pytest.raises(PetastormArgumentError, match=r"UNCONSTRAINED axis.*with_sharding_constraint"):
            make_jax_iterator(reader, batch_size=4, sharding=sharding)


@pytest.mark.timeout(60)
def test_a_sharding_naming_the_data_axis_over_one_device_places_every_row(synthetic_dataset):
    mesh = Mesh(np.array(jax.devices()[:1]), ("data",))
    sharding = NamedSharding(mesh, PartitionSpec("data"))
    with make_batch_reader(synthetic_dataset, schema_fields=["id"], shuffle_row_groups=False,
                           workers_count=1) as reader, \
            make_jax_iterator(reader, batch_size=7, sharding=sharding) as batches:
        got = list(batches)
    assert all(b["id"].sharding == sharding for b in got)
    assert np.concatenate([np.asarray(b["id"]) for b in got]).tolist() == list(range(100))
