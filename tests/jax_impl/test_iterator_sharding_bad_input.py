"""make_jax_iterator with a sharding over 2 CPU devices, against a hostile user: the defects its input showed.

JAX fixes its device count when first imported, so the cases run in one child Python with
``XLA_FLAGS=--xla_force_host_platform_device_count=2``; it prints JSON facts (errors, row counts), and each
test asserts on its own case's facts here.
"""
import textwrap

import pytest

from tests.jax_impl._child_facts import child_facts

_CHILD = textwrap.dedent("""
    import json, sys, threading
    import numpy as np
    import jax
    from jax.sharding import Mesh, NamedSharding, PartitionSpec
    from petastorm import make_batch_reader
    from petastorm.jax import make_jax_iterator

    assert len(jax.devices()) == 2, jax.devices()
    URL = sys.argv[1]
    data = NamedSharding(Mesh(np.array(jax.devices()), ("data",)), PartitionSpec("data"))

    def run(**kwargs):
        reader = make_batch_reader(URL, schema_fields=["id", "value"], shuffle_row_groups=False, workers_count=1)
        try:
            with make_jax_iterator(reader, sharding=data, **kwargs) as batches:
                return {"rows": [int(b["id"].shape[0]) for b in batches]}
        except Exception as error:  # noqa: BLE001 - recorded for the test
            reader.stop()
            reader.join()
            return {"error": [type(error).__name__, str(error)]}

    facts = {
        "odd_rows_from_transform_fn": run(batch_size=10, transform_fn=lambda b: {k: v[:3] for k, v in b.items()}),
        "odd_rows_from_transform_fn_drop_last": run(batch_size=10, drop_last=True,
                                                    transform_fn=lambda b: {k: v[:3] for k, v in b.items()}),
        "scalar_from_transform_fn": run(batch_size=10, transform_fn=lambda b: {"w": np.float32(1)}),
        "short_last_batch": run(batch_size=8),
        "even_rows_from_transform_fn": run(batch_size=10, transform_fn=lambda b: {k: v[:4] for k, v in b.items()}),
    }
    with make_batch_reader(URL, workers_count=1) as reader:
        try:
            abstract = NamedSharding(jax.sharding.AbstractMesh((2,), ("data",)), PartitionSpec("data"))
            make_jax_iterator(reader, batch_size=4, sharding=abstract)
        except Exception as error:  # noqa: BLE001 - recorded for the test
            facts["abstract_mesh"] = [type(error).__name__, str(error)]
    facts["threads"] = [t.name for t in threading.enumerate() if t.name == "petastorm-batch-prefetch"]
    print("RESULT" + json.dumps(facts))
""")


@pytest.fixture(scope="module")
def facts(synthetic_dataset):
    return child_facts(_CHILD, synthetic_dataset, devices=2)


@pytest.mark.slow
def test_odd_row_counts_from_transform_fn_are_blamed_on_it_not_on_the_last_batch(facts):
    # the error said "the last batch has 3 rows ... pass drop_last=True", also with drop_last=True given
    for case in ("odd_rows_from_transform_fn", "odd_rows_from_transform_fn_drop_last"):
        name, message = facts[case]["error"]
        assert name == "PetastormArgumentError"
        assert "transform_fn" in message and "3 rows" in message and "2 shards" in message
        assert "the last batch" not in message


@pytest.mark.slow
def test_a_scalar_from_transform_fn_is_an_error_naming_the_field(facts):
    name, message = facts["scalar_from_transform_fn"]["error"]  # was a bare TypeError: len() of unsized object
    assert name == "PetastormArgumentError" and "'w'" in message and "scalar" in message


@pytest.mark.slow
def test_the_short_last_batch_and_even_transform_fn_batches_still_pass(facts):
    assert facts["short_last_batch"]["rows"] == [8] * 12 + [4]
    assert facts["even_rows_from_transform_fn"]["rows"] == [4] * 10
    assert facts["threads"] == []


@pytest.mark.slow
def test_a_sharding_over_an_abstract_mesh_is_refused_saying_why(facts):
    # the error said the sharding "cannot be applied to arrays of rank 1 to 8"
    name, message = facts["abstract_mesh"]
    assert name == "PetastormArgumentError" and "AbstractMesh" in message and "no devices" in message
