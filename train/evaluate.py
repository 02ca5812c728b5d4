"""Accuracy of a classifier on labeled data: top-1, top-5, per class, confusion matrix."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import torch


@dataclass
class Evaluation:
    top1: float
    top5: float
    n: int
    per_class: list[float]
    confusion: torch.Tensor  # (true, predicted) counts

    def summary(self) -> dict:
        return {"top1": self.top1, "top5": self.top5, "n": self.n}


@torch.inference_mode()
def evaluate(model: torch.nn.Module, batches: Iterable, num_classes: int, device: torch.device) -> Evaluation:
    model.eval()
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
    top5_hits = 0
    for images, labels in batches:
        labels = torch.as_tensor(labels)
        logits = model(images.to(device)).float().cpu()
        k = min(5, num_classes)
        top5_hits += int((logits.topk(k, 1).indices == labels[:, None]).any(1).sum())
        confusion.index_put_((labels, logits.argmax(1)), torch.ones(len(labels), dtype=torch.long), accumulate=True)
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
