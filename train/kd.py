"""The knowledge-distillation baseline: the source classifier teaches the target architecture.

The label spaces differ, so the student carries an auxiliary head over the teacher's classes
beside its target head: loss = CE(target head, y) + alpha * T^2 * KL(teacher_T || aux head_T),
with teacher and student seeing the same augmented image, each through its own preprocessing.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from .data.transforms import Preprocess
from .trainer import Algorithm


class KDStudent(nn.Module):
    """A timm model with its target head, plus an auxiliary head over the teacher's classes."""

    def __init__(self, backbone: nn.Module, teacher_classes: int):
        super().__init__()
        self.backbone = backbone
        self.aux = nn.Linear(backbone.num_features, teacher_classes)

    def forward(self, x: torch.Tensor, with_aux: bool = False):
        pooled = self.backbone.forward_head(self.backbone.forward_features(x), pre_logits=True)
        logits = self.backbone.get_classifier()(pooled)
        return (logits, self.aux(pooled)) if with_aux else logits


def paired_views(student: Preprocess, teacher: Preprocess):
    """One augmentation of the student's policy (glyph: a random affine jitter; natural: a random
    resized crop, flip and colour jitter), then each model's own resizing and normalisation."""
    jitter = student.jitter()
    to_student, to_teacher = student.square(), teacher.square()

    def apply(image: Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
        moved = jitter(image.convert(student.mode))
        return to_student(moved), to_teacher(moved)

    return apply


@dataclass
class Distillation(Algorithm):
    teacher: nn.Module
    alpha: float = 1.0
    temperature: float = 4.0

    def loss(self, model, batch, device):
        (student_x, teacher_x), labels = batch
        labels = torch.as_tensor(labels).to(device)
        with torch.no_grad():
            teacher_logits = self.teacher(teacher_x.to(device)).float()
        logits, aux = model(student_x.to(device), with_aux=True)
        supervised = F.cross_entropy(logits, labels)
        t = self.temperature
        distill = F.kl_div((aux.float() / t).log_softmax(1), (teacher_logits / t).softmax(1), reduction="batchmean") * t * t
        return supervised + self.alpha * distill, {"loss_ce": supervised.detach(), "loss_kd": distill.detach()}
