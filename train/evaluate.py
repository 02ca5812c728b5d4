"""Accuracy of a classifier on labeled data: top-1, top-5, per class, confusion matrix."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import torch
from torch.utils.data import Dataset, Subset


@dataclass
class Evaluation:
    top1: float
    top5: float
    n: int
    per_class: list[float]
    confusion: torch.Tensor  # (true, predicted) counts

    def summary(self) -> dict:
        return {"top1": self.top1, "top5": self.top5, "n": self.n}


def rank_slice(dataset: Dataset, rank: int, world: int) -> Dataset:
    """The samples RANK of WORLD scores: every world-th one from its rank, none twice, none left out."""
    return dataset if world == 1 else Subset(dataset, range(rank, len(dataset), world))


@torch.inference_mode()
def evaluate(model: torch.nn.Module, batches: Iterable, num_classes: int, device: torch.device,
             sum_ranks: Callable[[torch.Tensor], torch.Tensor] = lambda t: t) -> Evaluation:
    """Scores of MODEL on BATCHES; with several processes each passes its own slice and SUM_RANKS adds
    up their counts (on DEVICE, as NCCL needs), so every rank returns the whole set's figures."""
    model.eval()
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long, device=device)
    top5_hits = torch.zeros((), dtype=torch.long, device=device)
    k = min(5, num_classes)
    for images, labels in batches:
        labels = torch.as_tensor(labels).to(device, non_blocking=True)
        logits = model(images.to(device, non_blocking=True)).float()
        top5_hits += (logits.topk(k, 1).indices == labels[:, None]).any(1).sum()
        confusion.index_put_((labels, logits.argmax(1)), torch.ones_like(labels), accumulate=True)
    counts = sum_ranks(torch.cat([confusion.flatten(), top5_hits[None]])).cpu()
    confusion, top5_hits = counts[:-1].view(num_classes, num_classes), int(counts[-1])
    n = int(confusion.sum())
    per_class = (confusion.diag() / confusion.sum(1).clamp(min=1)).tolist()
    return Evaluation(float(confusion.diag().sum()) / max(n, 1), top5_hits / max(n, 1), n, per_class, confusion)


def plot_confusion(evaluation: Evaluation, class_names: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(class_names)
    size = min(12, 2 + 0.35 * n)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(evaluation.confusion.float() / evaluation.confusion.sum(1, keepdim=True).clamp(min=1), cmap="Blues")
    if n <= 40:
        ax.set_xticks(range(n), [c[:12] for c in class_names], rotation=90, fontsize=7)
        ax.set_yticks(range(n), [c[:12] for c in class_names], fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"top-1 {evaluation.top1:.3f} on {evaluation.n} images")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
