"""Consistency-based semi-supervised learning on labeled target data plus unlabeled (pseudo)
samples (docs/method.md, P-SSL step 2). Each algorithm says only how its unlabeled loss differs.

A batch is ((images, labels), (weak views, strong views)); the labeled part is plain
cross-entropy for both algorithms.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .trainer import Algorithm


@dataclass
class FixMatch(Algorithm):
    """Pseudo-labels from the weak view, kept where confident, taught to the strong view
    (Sohn et al., 2020: threshold 0.95, weight 1, 7 unlabeled per labeled image)."""

    threshold: float = 0.95
    weight: float = 1.0

    def unlabeled_loss(self, weak_logits: torch.Tensor, strong_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        probs = weak_logits.softmax(1)
        confidence, targets = probs.max(1)
        mask = (confidence >= self.threshold).float()
        return (F.cross_entropy(strong_logits, targets, reduction="none") * mask).mean(), mask.mean()

    def loss(self, model, batch, device):
        (images, labels), (weak, strong) = batch
        labels = torch.as_tensor(labels).to(device)
        n, m = len(images), len(weak)
        # One forward pass over all three parts keeps batch-norm statistics consistent.
        logits = model(torch.cat([images, weak, strong]).to(device))
        labeled, weak_logits, strong_logits = logits[:n], logits[n : n + m], logits[n + m :]
        supervised = F.cross_entropy(labeled, labels)
        unsupervised, used = self.unlabeled_loss(weak_logits.detach(), strong_logits)
        loss = supervised + self.weight * unsupervised
        return loss, {"loss_x": supervised.item(), "loss_u": unsupervised.item(), "mask": used.item()}


@dataclass
class UDA(FixMatch):
    """Sharpened weak-view predictions as soft targets, KL consistency where confident
    (Xie et al., 2020: sharpening temperature 0.4, confidence threshold 0.8)."""

    threshold: float = 0.8
    temperature: float = 0.4

    def unlabeled_loss(self, weak_logits, strong_logits):
        probs = weak_logits.softmax(1)
        mask = (probs.max(1).values >= self.threshold).float()
        target = (weak_logits / self.temperature).softmax(1)
        kl = F.kl_div(strong_logits.log_softmax(1), target, reduction="none").sum(1)
        return (kl * mask).mean(), mask.mean()


ALGORITHMS = {"fixmatch": FixMatch, "uda": UDA}
