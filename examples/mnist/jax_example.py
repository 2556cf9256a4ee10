"""Train a small MLP on the Petastorm MNIST dataset with plain JAX (no optax) and ``make_jax_iterator``.

Batches arrive as ``jax.Array`` already on the device (prefetched by a background thread). With
``--data-parallel``, each batch is split across every local device along a 1-D ``('data',)`` mesh and the
parameters are replicated: the same ``jit``-compiled step then runs data-parallel. Write the dataset first
(``generate_petastorm_mnist.py``), then::

    python examples/mnist/jax_example.py --dataset-url file:///tmp/mnist
    XLA_FLAGS=--xla_force_host_platform_device_count=2 \\
        python examples/mnist/jax_example.py --dataset-url file:///tmp/mnist --data-parallel   # 2 CPU devices
"""
from __future__ import annotations

import argparse
from typing import Dict, Iterable, List, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from petastorm import make_batch_reader
from petastorm.jax import make_jax_iterator

__all__ = ["init_params", "loss_fn", "sgd_step", "accuracy"]

Params = List[Tuple[jax.Array, jax.Array]]
MEAN, STD = 0.1307, 0.3081


def init_params(key: jax.Array, sizes: Tuple[int, ...] = (784, 256, 10)) -> Params:
    """He-initialised weights and zero biases of an MLP with layer ``sizes``."""
    params = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        key, sub = jax.random.split(key)
        params.append((jax.random.normal(sub, (n_in, n_out)) * jnp.sqrt(2.0 / n_in), jnp.zeros(n_out)))
    return params


def _logits(params: Params, image: jax.Array) -> jax.Array:
    """``image``: uint8 (batch, 28, 28) -> logits float32 (batch, 10)."""
    x = (image.reshape(image.shape[0], -1).astype(jnp.float32) / 255.0 - MEAN) / STD
    for w, b in params[:-1]:
        x = jax.nn.relu(x @ w + b)
    w, b = params[-1]
    return x @ w + b


def loss_fn(params: Params, image: jax.Array, digit: jax.Array) -> jax.Array:
    """Mean cross-entropy of the batch."""
    log_probs = jax.nn.log_softmax(_logits(params, image))
    return -jnp.mean(jnp.take_along_axis(log_probs, digit[:, None].astype(jnp.int32), axis=1))


@jax.jit
def sgd_step(params: Params, image: jax.Array, digit: jax.Array, lr: float) -> Tuple[Params, jax.Array]:
    """One step of plain SGD; returns the new parameters and the batch's loss."""
    loss, grads = jax.value_and_grad(loss_fn)(params, image, digit)
    return jax.tree_util.tree_map(lambda p, g: p - lr * g, params, grads), loss


@jax.jit
def _correct(params: Params, image: jax.Array, digit: jax.Array) -> jax.Array:
    return jnp.sum(jnp.argmax(_logits(params, image), axis=1) == digit)


def accuracy(params: Params, batches: Iterable[Dict[str, jax.Array]]) -> float:
    """Share of the rows of ``batches`` (dicts with ``image`` and ``digit``) classified right."""
    correct = total = 0
    for batch in batches:
        correct += int(_correct(params, batch["image"], batch["digit"]))
        total += batch["digit"].shape[0]
    return correct / max(total, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description="Petastorm MNIST example: plain JAX")
    parser.add_argument("--dataset-url", default="file:///tmp/mnist",
                        help="parent URL of the train and test datasets (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=128, help="batch size (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=1, help="training epochs (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=None, help="stop after this many steps")
    parser.add_argument("--lr", type=float, default=0.1, help="learning rate (default: %(default)s)")
    parser.add_argument("--shuffle", type=int, default=2000,
                        help="shuffling_queue_capacity in rows, 0 for none (default: %(default)s)")
    parser.add_argument("--data-parallel", action="store_true",
                        help="split every batch across all local devices (a 1-D 'data' mesh)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    parser.add_argument("--log-interval", type=int, default=10, help="steps between loss lines (default: %(default)s)")
    args = parser.parse_args()

    params = init_params(jax.random.PRNGKey(args.seed))
    sharding = None
    if args.data_parallel:
        mesh = Mesh(np.array(jax.devices()), ("data",))
        sharding = NamedSharding(mesh, PartitionSpec("data"))             # batch rows split across devices
        params = jax.device_put(params, NamedSharding(mesh, PartitionSpec()))  # parameters replicated
        print(f"data-parallel over {len(jax.devices())} devices: {[str(d) for d in jax.devices()]}")

    fields = ["image", "digit"]
    losses: List[float] = []
    # The reader runs every epoch (num_epochs) and the iterator batches across epoch boundaries.
    # drop_last: every batch has the same shape (one compilation; always divisible by the device count).
    with make_batch_reader(f"{args.dataset_url}/train", schema_fields=fields, num_epochs=args.epochs,
                           seed=args.seed, shuffle_rows=True, workers_count=2) as reader, \
            make_jax_iterator(reader, args.batch_size, sharding=sharding, shuffling_queue_capacity=args.shuffle,
                              seed=args.seed, drop_last=True) as batches:
        for step, batch in enumerate(batches, 1):
            if step == 1:
                print(f"batch: image {batch['image'].shape} {batch['image'].dtype} "
                      f"sharding {batch['image'].sharding}")
            params, loss = sgd_step(params, batch["image"], batch["digit"], args.lr)
            losses.append(float(loss))
            if step % args.log_interval == 0:
                recent = losses[-args.log_interval:]
                print(f"jax: step {step} loss {sum(recent) / len(recent):.4f}", flush=True)
            if args.steps is not None and step >= args.steps:
                break

    with make_batch_reader(f"{args.dataset_url}/test", schema_fields=fields, num_epochs=1,
                           workers_count=2) as reader, \
            make_jax_iterator(reader, args.batch_size, sharding=sharding, drop_last=True) as batches:
        test_accuracy = accuracy(params, batches)
    k = max(1, min(10, len(losses) // 3))
    print(f"jax: {len(losses)} steps, loss {sum(losses[:k]) / k:.4f} -> {sum(losses[-k:]) / k:.4f} "
          f"(mean of the first and last {k}), test accuracy {test_accuracy:.3f}", flush=True)


if __name__ == "__main__":
    main()
