"""Consistency-based semi-supervised learning on labeled target data plus unlabeled (pseudo)
samples (docs/method.md, P-SSL step 2). Each algorithm says only how its unlabeled loss differs.

A batch is (labeled part, (weak views, strong views[, weights])); the labeled part, (images, labels)
or with --extra-labeled ((images, labels), (extra images, extra labels)), is finetune's loss
(`trainer.Supervised`: cross-entropy, with its label smoothing, mixup / CutMix and extra term) for both
algorithms, and each unlabeled image's loss counts by its weight (the guard's, train/guard.py; 1 when
the batch carries none).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ptcommon.cli import InputError

from .trainer import Algorithm, Supervised


@contextmanager
def running_stats_frozen(model: torch.nn.Module):
    """Batch norm still normalises by the batch, but its running statistics (what evaluation uses)
    do not move."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum


def bn_stats_for(choice: str | None, distributed: bool, batch_size: int) -> str:
    """pssl's --bn-stats: labeled where it can run, else mixed. It cannot under torchrun, whose
    DistributedDataParallel takes one forward pass a backward, nor with one labeled image a batch: batch
    norm in training mode fails on one value a channel, which one image gives wherever a feature map is
    1x1 (resnet18's last stage at 32 px). An explicit labeled there is refused, not quietly changed."""
    if choice is None:
        return "mixed" if distributed or batch_size < 2 else "labeled"
    if choice == "labeled" and distributed:
        raise InputError("--bn-stats labeled: two forward passes before one backward, which DistributedDataParallel "
                         "does not take; run it in one process, or use --bn-stats mixed under torchrun")
    if choice == "labeled" and batch_size < 2:
        raise InputError("--bn-stats labeled needs --batch-size 2 or more: batch norm cannot normalise one image where "
                         "a feature map is 1x1; raise --batch-size or use --bn-stats mixed")
    return choice


def _weighted_mean(losses: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    return (losses if weights is None else losses * weights).mean()


@dataclass
class FixMatch(Algorithm):
    """Pseudo-labels from the weak view, kept where confident, taught to the strong view
    (Sohn et al., 2020: threshold 0.95, weight 1, 7 unlabeled per labeled image)."""

    threshold: float = 0.95
    weight: float = 1.0
    # mixed: one forward pass over labeled and unlabeled images, as FixMatch does. labeled: the
    # unlabeled images pass on their own and leave batch norm's running statistics to the labeled
    # ones, so that evaluation normalises target images by target statistics even when the
    # unlabeled images come from another domain (pseudo samples).
    bn_stats: str = "labeled"
    labeled: Supervised = field(default_factory=Supervised)  # the labeled images' loss: finetune's

    def unlabeled_loss(self, weak_logits: torch.Tensor, strong_logits: torch.Tensor,
                       weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The mean over the batch of each image's loss times its weight, and the share above the threshold."""
        probs = weak_logits.softmax(1)
        confidence, targets = probs.max(1)
        mask = (confidence >= self.threshold).float()
        return _weighted_mean(F.cross_entropy(strong_logits, targets, reduction="none") * mask, weights), mask.mean()

    def loss(self, model, batch, device):
        labeled_part, (weak, strong, *weights) = batch
        weights = weights[0].to(device) if weights else None
        images, score = self.labeled.prepare(labeled_part, device)
        m = len(weak)
        if self.bn_stats == "mixed":
            # One forward pass over all three parts keeps batch-norm statistics consistent.
            logits = model(torch.cat([images, weak.to(device), strong.to(device)]))
            labeled, unlabeled = logits[: len(images)], logits[len(images):]
        else:
            labeled = model(images)
            with running_stats_frozen(model):
                unlabeled = model(torch.cat([weak, strong]).to(device))
        weak_logits, strong_logits = unlabeled[:m], unlabeled[m:]
        supervised, figures = score(labeled)
        unsupervised, used = self.unlabeled_loss(weak_logits.detach(), strong_logits, weights)
        loss = supervised + self.weight * unsupervised
        return loss, {**figures, "loss_x": supervised.detach(), "loss_u": unsupervised.detach(), "mask": used.detach()}


@dataclass
class UDA(FixMatch):
    """Sharpened weak-view predictions as soft targets, KL consistency where confident
    (Xie et al., 2020: sharpening temperature 0.4, confidence threshold 0.8)."""

    threshold: float = 0.8
    temperature: float = 0.4

    def unlabeled_loss(self, weak_logits, strong_logits, weights=None):
        probs = weak_logits.softmax(1)
        mask = (probs.max(1).values >= self.threshold).float()
        target = (weak_logits / self.temperature).softmax(1)
        kl = F.kl_div(strong_logits.log_softmax(1), target, reduction="none").sum(1)
        return _weighted_mean(kl * mask, weights), mask.mean()



ALGORITHMS = {"fixmatch": FixMatch, "uda": UDA}


@dataclass(frozen=True)
class SSLOptions:
    """pssl's choice of algorithm and how the unlabeled samples count."""

    algo: str = "fixmatch"
    threshold: float | None = None  # None: the algorithm's published value
    unlabeled_weight: float = 1.0
    ratio: int = 1  # unlabeled images per labeled image in a batch
    guard: str | None = None  # None: the guard's default for the unlabeled data (train/guard.py)
    guard_threshold: float | None = None
    uda_temperature: float = 0.4
    bn_stats: str | None = None  # None: bn_stats_for's choice

    def algorithm(self, labeled: Supervised, distributed: bool, batch_size: int) -> Algorithm:
        """The algorithm these options name, with finetune's loss LABELED as its labeled branch."""
        kwargs = {"weight": self.unlabeled_weight, "bn_stats": bn_stats_for(self.bn_stats, distributed, batch_size),
                  "labeled": labeled}
        if self.threshold is not None:
            kwargs["threshold"] = self.threshold
        if self.algo == "uda":
            kwargs["temperature"] = self.uda_temperature
        return ALGORITHMS[self.algo](**kwargs)

