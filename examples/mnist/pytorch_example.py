"""Train a small convnet on the Petastorm MNIST dataset with ``petastorm.pytorch``, two ways.

1. ``DataLoader`` over ``make_reader``: decoded rows, a ``TransformSpec`` that normalises each image in the
   reader's workers, rows collated into batches of tensors (the original example's way).
2. ``BatchedDataLoader`` over ``make_batch_reader``: whole columns batched and shuffled at once, sent to
   ``--device`` (pinned first when it is a GPU) by a background thread, normalised on the device.

Write the dataset first (``generate_petastorm_mnist.py``), then::

    python examples/mnist/pytorch_example.py --dataset-url file:///tmp/mnist             # real: 1 epoch
    python examples/mnist/pytorch_example.py --dataset-url file:///tmp/mnist --steps 30  # a quick look
"""
from __future__ import annotations

import argparse
from typing import Callable, Dict, Iterable, List

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from petastorm import TransformSpec, make_batch_reader, make_reader
from petastorm.pytorch import BatchedDataLoader, DataLoader

__all__ = ["Net", "train", "evaluate", "images_from_rows", "images_from_columns", "train_with_data_loader",
           "train_with_batched_data_loader"]

MEAN, STD = 0.1307, 0.3081  # the original example's normalisation (MNIST's mean and std)


class Net(nn.Module):
    """The original example's network: two 5x5 convolutions and two linear layers, 10 logits."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        self.conv2_drop = nn.Dropout2d()
        self.fc1 = nn.Linear(320, 50)
        self.fc2 = nn.Linear(50, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: float32 (batch, 1, 28, 28), normalised; returns log-probabilities (batch, 10)."""
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2_drop(self.conv2(x)), 2))
        x = x.flatten(1)
        x = F.relu(self.fc1(x))
        x = F.dropout(x, training=self.training)
        return F.log_softmax(self.fc2(x), dim=1)


def _normalize_row(row: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """TransformSpec function (runs in the reader's workers): uint8 (28, 28) -> float32 (1, 28, 28)."""
    row["image"] = ((row["image"].astype(np.float32) / 255.0 - MEAN) / STD)[None]
    return row


def images_from_rows(batch: Dict[str, torch.Tensor], device: torch.device) -> torch.Tensor:
    """The model's input from a ``DataLoader`` batch: images already normalised by the TransformSpec."""
    return batch["image"].to(device)


def images_from_columns(batch: Dict[str, torch.Tensor], device: torch.device) -> torch.Tensor:
    """The model's input from a ``BatchedDataLoader`` batch: uint8 (batch, 28, 28), already on the
    device, normalised there to float32 (batch, 1, 28, 28)."""
    return ((batch["image"].to(device).float() / 255.0 - MEAN) / STD).unsqueeze(1)


def train(model: nn.Module, loader: Iterable[Dict[str, torch.Tensor]], optimizer: torch.optim.Optimizer,
          images: Callable[[Dict[str, torch.Tensor], torch.device], torch.Tensor], device: torch.device,
          steps: int | None, log_interval: int, name: str, losses: List[float] | None = None) -> List[float]:
    """Train over ``loader`` for at most ``steps`` batches; append the loss of every step to ``losses``
    (the steps of earlier epochs: the step count goes on from there) and return it."""
    model.train()
    losses = [] if losses is None else losses
    for step, batch in enumerate(loader, 1):
        x, y = images(batch, device), batch["digit"].to(device)
        optimizer.zero_grad()
        loss = F.nll_loss(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if len(losses) % log_interval == 0:
            recent = losses[-log_interval:]
            print(f"{name}: step {len(losses)} loss {sum(recent) / len(recent):.4f}", flush=True)
        if steps is not None and step >= steps:
            break
    return losses


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable[Dict[str, torch.Tensor]],
             images: Callable[[Dict[str, torch.Tensor], torch.device], torch.Tensor],
             device: torch.device) -> float:
    """Accuracy of ``model`` over every batch of ``loader``."""
    model.eval()
    correct = total = 0
    for batch in loader:
        predicted = model(images(batch, device)).argmax(dim=1)
        correct += int((predicted == batch["digit"].to(device)).sum())
        total += len(predicted)
    return correct / max(total, 1)


def _report(name: str, losses: List[float], accuracy: float) -> None:
    k = max(1, min(10, len(losses) // 3))
    first, last = sum(losses[:k]) / k, sum(losses[-k:]) / k
    print(f"{name}: {len(losses)} steps, loss {first:.4f} -> {last:.4f} (mean of the first and last {k}), "
          f"test accuracy {accuracy:.3f}", flush=True)


def train_with_data_loader(args: argparse.Namespace, device: torch.device) -> List[float]:
    """``DataLoader`` over ``make_reader``: rows, normalised by a TransformSpec, collated into batches."""
    torch.manual_seed(args.seed)
    model = Net().to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum)
    # The transform changes the image's dtype and shape: say so, so the loader knows what comes.
    transform = TransformSpec(_normalize_row, edit_fields=[("image", np.float32, (1, 28, 28), False)],
                              removed_fields=["idx"])
    losses: List[float] = []
    for epoch in range(args.epochs):
        with DataLoader(make_reader(f"{args.dataset_url}/train", num_epochs=1, transform_spec=transform,
                                    seed=args.seed + epoch, shuffle_rows=True, workers_count=args.workers),
                        batch_size=args.batch_size, shuffling_queue_capacity=args.shuffle) as loader:
            train(model, loader, optimizer, images_from_rows, device, args.steps, args.log_interval, "DataLoader",
                  losses)
    with DataLoader(make_reader(f"{args.dataset_url}/test", num_epochs=1, transform_spec=transform,
                                workers_count=args.workers), batch_size=args.test_batch_size) as loader:
        accuracy = evaluate(model, loader, images_from_rows, device)
    _report("DataLoader", losses, accuracy)
    return losses


def train_with_batched_data_loader(args: argparse.Namespace, device: torch.device) -> List[float]:
    """``BatchedDataLoader`` over ``make_batch_reader``: column batches, on ``device``, prefetched."""
    torch.manual_seed(args.seed)
    model = Net().to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum)
    fields = ["image", "digit"]
    pin = device.type == "cuda"
    losses: List[float] = []
    for epoch in range(args.epochs):
        with BatchedDataLoader(make_batch_reader(f"{args.dataset_url}/train", schema_fields=fields, num_epochs=1,
                                                 seed=args.seed + epoch, shuffle_rows=True,
                                                 workers_count=args.workers),
                               batch_size=args.batch_size, shuffling_queue_capacity=args.shuffle,
                               device=device, pin_memory=pin) as loader:
            train(model, loader, optimizer, images_from_columns, device, args.steps, args.log_interval,
                  "BatchedDataLoader", losses)
    with BatchedDataLoader(make_batch_reader(f"{args.dataset_url}/test", schema_fields=fields, num_epochs=1,
                                             workers_count=args.workers),
                           batch_size=args.test_batch_size, device=device, pin_memory=pin) as loader:
        accuracy = evaluate(model, loader, images_from_columns, device)
    _report("BatchedDataLoader", losses, accuracy)
    return losses


def main() -> None:
    parser = argparse.ArgumentParser(description="Petastorm MNIST example: PyTorch")
    parser.add_argument("--dataset-url", default="file:///tmp/mnist",
                        help="parent URL of the train and test datasets (default: %(default)s)")
    parser.add_argument("--loader", choices=["rows", "batched", "both"], default="both",
                        help="DataLoader over make_reader, BatchedDataLoader over make_batch_reader, or both")
    parser.add_argument("--batch-size", type=int, default=64, help="training batch size (default: %(default)s)")
    parser.add_argument("--test-batch-size", type=int, default=1000, help="test batch size (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=1, help="training epochs (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=None, help="stop each epoch after this many batches")
    parser.add_argument("--lr", type=float, default=0.05, help="learning rate (default: %(default)s)")
    parser.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default: %(default)s)")
    parser.add_argument("--shuffle", type=int, default=1000,
                        help="shuffling_queue_capacity in rows, 0 for none (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=2, help="reader worker threads (default: %(default)s)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="torch device (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default: %(default)s: this small model runs fastest on one, and "
                             "the reader's workers get the other cores)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default: %(default)s)")
    parser.add_argument("--log-interval", type=int, default=10, help="steps between loss lines (default: %(default)s)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.loader in ("rows", "both"):
        train_with_data_loader(args, device)
    if args.loader in ("batched", "both"):
        train_with_batched_data_loader(args, device)


if __name__ == "__main__":
    main()
