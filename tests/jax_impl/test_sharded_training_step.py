"""A data-parallel training step as a user writes it: a 1-D mesh over 2 CPU devices, parameters replicated, a
``jax.jit`` step that donates its parameters and the batch, the pass ending with a short batch."""
import pytest

from tests.jax_impl._child_facts import child_facts

_CHILD = """
import json, sys
import numpy as np
import jax, jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from petastorm import make_batch_reader
from petastorm.jax import make_jax_iterator

mesh = Mesh(np.array(jax.devices()), ("data",))
rows, replicated = NamedSharding(mesh, PartitionSpec("data")), NamedSharding(mesh, PartitionSpec())

def loss_fn(w, x, y):
    return jnp.mean((x.reshape(x.shape[0], -1) @ w - y) ** 2)

def step(w, x, y):
    loss, grad = jax.value_and_grad(loss_fn)(w, x, y)
    return w - 1e-3 * grad, loss, jnp.sum(y)

step = jax.jit(step, donate_argnums=(0, 1, 2), out_shardings=(replicated, replicated, replicated))
out = {}
for drop_last in (False, True):
    w = jax.device_put(jnp.zeros((12,), jnp.float32), replicated)
    losses, sizes, shardings, sums = [], [], set(), []
    with make_batch_reader(sys.argv[1], schema_fields=["id", "matrix"], shuffle_row_groups=False,
                           workers_count=1, num_epochs=2) as reader, \\
            make_jax_iterator(reader, batch_size=6, sharding=rows, drop_last=drop_last,
                              transform_fn=lambda b: {"x": b["matrix"] / 100.0, "y": b["id"].astype(np.float32) / 100.0},
                              shuffling_queue_capacity=20, seed=0) as batches:
        for batch in batches:
            sizes.append(int(batch["y"].shape[0]))
            shardings.add(batch["x"].sharding == rows and batch["y"].sharding == rows)
            w, loss, y_sum = step(w, batch["x"], batch["y"])
            losses.append(float(loss))
            sums.append(float(y_sum))
    out[str(drop_last)] = {"sizes": sizes, "shardings": sorted(shardings), "sums": sums,
                           "finite": all(np.isfinite(losses)) and bool(jnp.isfinite(w).all()),
                           "w_sharding": w.sharding == replicated}
print("RESULT" + json.dumps(out))
"""


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_a_donating_jit_step_over_two_devices_sees_every_row_and_the_short_last_batch(synthetic_dataset):
    facts = child_facts(_CHILD, synthetic_dataset, devices=2)
    kept, dropped = facts["False"], facts["True"]
    assert kept["sizes"] == [6] * 33 + [2]          # 200 rows (2 epochs): the short last batch splits 1 + 1
    assert dropped["sizes"] == [6] * 33
    for run in (kept, dropped):
        assert run["shardings"] == [True] and run["w_sharding"] and run["finite"]
    assert sum(kept["sums"]) == pytest.approx(2 * sum(range(100)) / 100.0, rel=1e-5)  # every row, once an epoch
    assert dropped["sums"] == kept["sums"][:-1]  # the same seeded order, less the short last batch
