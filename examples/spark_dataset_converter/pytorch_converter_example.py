"""Train a small PyTorch convnet straight from a Spark DataFrame with ``make_spark_converter``.

The converter caches the DataFrame as Parquet under the ``petastorm.spark.converter.parentCacheDirUrl``
directory (once per DataFrame), and ``converter.make_torch_dataloader()`` reads the cache back as batches:
dicts of tensors, ``features`` float32 ``(batch, 784)`` and ``label`` int64 ``(batch,)``. The data is MNIST
as the original example read it (a ``Vector`` column of pixels and a label; see ``mnist_data.py``)::

    python examples/spark_dataset_converter/pytorch_converter_example.py                 # synthetic digits
    python examples/spark_dataset_converter/pytorch_converter_example.py --rows 3000 --steps 40   # a quick look
    python examples/spark_dataset_converter/pytorch_converter_example.py --libsvm-path /data/mnist.bz2

``main(argv, spark)`` runs it with a session of yours (e.g. in a notebook); otherwise it makes a local one
(``--master``, default ``local[2]``) and stops it at the end.
"""
from __future__ import annotations

import os
import sys
from typing import Any, Dict, Iterable, List, Optional

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from converter_run import converter_parser, mnist_converters  # noqa: E402

__all__ = ["Net", "train", "evaluate", "main"]


class Net(nn.Module):
    """Two 5x5 convolutions and two linear layers: pixels float32 (batch, 784), 0-255 -> 10 logits."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        self.fc1 = nn.Linear(320, 50)
        self.fc2 = nn.Linear(50, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x / 255.0).view(-1, 1, 28, 28)
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2(x), 2))
        x = F.relu(self.fc1(x.flatten(1)))
        return self.fc2(x)


def train(loader: Iterable[Dict[str, torch.Tensor]], steps: int, lr: float, log_interval: int) -> tuple:
    """Train a new :class:`Net` on ``steps`` batches of ``loader``; return ``(model, losses)``."""
    model = Net()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    losses: List[float] = []
    for step, batch in enumerate(loader, 1):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(batch["features"]), batch["label"])
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if step % log_interval == 0:
            print(f"torch: step {step} loss {sum(losses[-log_interval:]) / log_interval:.4f}", flush=True)
        if step >= steps:
            break
    return model, losses


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable[Dict[str, torch.Tensor]]) -> float:
    """Accuracy of ``model`` over every batch of ``loader``."""
    model.eval()
    correct = total = 0
    for batch in loader:
        correct += int((model(batch["features"]).argmax(dim=1) == batch["label"]).sum())
        total += len(batch["label"])
    return correct / max(total, 1)


def main(argv: Optional[List[str]] = None, spark: Any = None) -> Dict[str, Any]:
    """Run the example; return ``{'losses', 'accuracy', 'train_rows', 'test_rows'}``."""
    args = converter_parser("Petastorm Spark converter example: PyTorch",
                            "file:///tmp/petastorm/cache/torch-example").parse_args(argv)
    torch.manual_seed(args.seed)
    with mnist_converters(args, spark, "petastorm-torch-converter-example") as (converter_train, converter_test):
        # num_epochs=None: the loader cycles through the data until `steps` batches are taken
        with converter_train.make_torch_dataloader(batch_size=args.batch_size, num_epochs=None,
                                                   shuffling_queue_capacity=1000, seed=args.seed) as loader:
            model, losses = train(loader, args.steps, args.lr, min(args.log_interval, args.steps))
        with converter_test.make_torch_dataloader(batch_size=1000, num_epochs=1) as loader:
            accuracy = evaluate(model, loader)
    k = max(1, min(10, len(losses) // 3))
    print(f"torch: {len(losses)} steps, loss {sum(losses[:k]) / k:.4f} -> {sum(losses[-k:]) / k:.4f} "
          f"(mean of the first and last {k}), test accuracy {accuracy:.3f}", flush=True)
    return {"losses": losses, "accuracy": accuracy, "train_rows": len(converter_train),
            "test_rows": len(converter_test)}


if __name__ == "__main__":
    main()
