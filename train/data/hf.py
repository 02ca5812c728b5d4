"""Hugging Face datasets as labeled target data (the reader itself is `ptcommon.hf_data`, shared
with `ptgen pseudo --target`): one of its parts as LabeledImages."""

from __future__ import annotations

from ptcommon.hf_data import HFTarget

from .labeled import LabeledImages


def hf_part(target: HFTarget, part: str, transform=None) -> LabeledImages | None:
    """PART (train, val, test) of TARGET, or None when the dataset has no such split."""
    images = target.part(part)
    if images is None:
        return None
    return LabeledImages(images, target.labels(part), target.classes, f"--data {target.spec}", transform=transform)
