"""Data-parallel training with ``torch.distributed``: each rank reads its own balanced shard of the dataset.

Every rank makes its reader with ``cur_shard=rank, shard_count=world_size, shard_mode='balanced'``, so every
rank gets the same number of rows, hence of batches, in every epoch: no rank waits at the end of an epoch
for another in a collective (with the original's row-group shards, ranks could differ and the job hung).
The model is the convnet of ``pytorch_example.py`` wrapped in ``DistributedDataParallel``.

This script starts ``--world-size`` processes itself (``torch.multiprocessing``, the ``gloo`` backend on
CPU). Write the dataset first (``generate_petastorm_mnist.py``), then::

    python examples/mnist/pytorch_distributed_example.py --dataset-url file:///tmp/mnist --world-size 2

Under ``torchrun``, the body of :func:`run` is what each rank runs (``nccl`` and ``device=cuda:<local
rank>`` on GPUs).
"""
from __future__ import annotations

import argparse
import os
import socket
import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from pytorch_example import Net, images_from_columns  # noqa: E402

from petastorm import make_batch_reader  # noqa: E402
from petastorm.pytorch import BatchedDataLoader  # noqa: E402

__all__ = ["run"]


def run(rank: int, args: argparse.Namespace) -> None:
    """One rank: join the group, train ``args.epochs`` epochs over this rank's shard, report."""
    dist.init_process_group("gloo", rank=rank, world_size=args.world_size)
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)                     # the same initial weights on every rank
    model = DistributedDataParallel(Net())
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    device = torch.device("cpu")
    losses = []
    for epoch in range(args.epochs):
        batches = 0
        reader = make_batch_reader(f"{args.dataset_url}/train", schema_fields=["image", "digit"], num_epochs=1,
                                   seed=args.seed + epoch, shuffle_rows=True, workers_count=1,
                                   cur_shard=rank, shard_count=args.world_size, shard_mode="balanced")
        with BatchedDataLoader(reader, batch_size=args.batch_size, shuffling_queue_capacity=500) as loader:
            for batch in loader:
                optimizer.zero_grad()
                loss = F.nll_loss(model(images_from_columns(batch, device)), batch["digit"])
                loss.backward()                      # gradients are all-reduced across the ranks here
                optimizer.step()
                losses.append(loss.item())
                batches += 1
        # Every rank must have run the same number of steps (each one a collective): check it.
        counts = [torch.zeros(1, dtype=torch.int64) for _ in range(args.world_size)]
        dist.all_gather(counts, torch.tensor([batches]))
        counts = [int(c) for c in counts]
        assert len(set(counts)) == 1, f"ranks ran different numbers of steps: {counts}"
        if rank == 0:
            print(f"epoch {epoch}: {batches} batches on each of {args.world_size} ranks {counts}", flush=True)
    k = max(1, min(10, len(losses) // 3))
    print(f"rank {rank}: {len(losses)} steps, loss {sum(losses[:k]) / k:.4f} -> {sum(losses[-k:]) / k:.4f} "
          f"(mean of the first and last {k})", flush=True)
    # every rank is done with the group before any tears it down (a rank that destroys it while its peer is
    # still in a collective can make gloo abort the peer at exit)
    dist.barrier()
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description="Petastorm MNIST example: torch.distributed with balanced shards")
    parser.add_argument("--dataset-url", default="file:///tmp/mnist",
                        help="parent URL of the train and test datasets (default: %(default)s)")
    parser.add_argument("--world-size", type=int, default=2, help="processes (ranks) (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=1, help="training epochs (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=64, help="batch size per rank (default: %(default)s)")
    parser.add_argument("--lr", type=float, default=0.05, help="learning rate (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    args = parser.parse_args()
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(_free_port()))
    mp.spawn(run, args=(args,), nprocs=args.world_size, join=True)


if __name__ == "__main__":
    main()
