"""Labeled target images, whatever reads them (an ImageFolder tree, a Hugging Face dataset): one
dataset type, so that the data's shape, the validation split and the loaders are written once.

A reader gives an `ImageSource`: its images by index, each image's header (mode and size, read
without decoding the pixels) and a key naming it.
"""

from __future__ import annotations

import math
import statistics
from typing import Protocol, Sequence

import torch
from PIL import Image
from torch.utils.data import Dataset

from ptcommon.cli import InputError

# Modes of one channel; any other image (RGB, CMYK, a palette) makes an RGB model.
GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
# The data's size is the median longer side of at most this many images, spread evenly over the data.
SIZE_SAMPLE = 1000


class ImageSource(Protocol):
    def __len__(self) -> int: ...

    def load(self, index: int) -> Image.Image:
        """Image INDEX, decoded."""

    def header(self, index: int) -> tuple[str, tuple[int, int]]:
        """Image INDEX's mode and (width, height), without decoding its pixels."""

    def key(self, index: int) -> str:
        """What names image INDEX in messages and records (a path, a split and row)."""


class LabeledImages(Dataset):
    """Images of SOURCE with their class indices; a view on some of them (`subset`) shares the source."""

    def __init__(self, source: ImageSource, labels: Sequence[int], classes: list[str], where: str,
                 indices: Sequence[int] | None = None, transform=None):
        self.source, self.classes, self.where = source, classes, where
        self.indices = list(range(len(source))) if indices is None else list(indices)
        self.all_labels = list(labels)
        self.transform = transform

    @property
    def targets(self) -> list[int]:
        return [self.all_labels[i] for i in self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int):
        image = self.source.load(self.indices[position])
        label = self.all_labels[self.indices[position]]
        return (self.transform(image) if self.transform is not None else image), label

    def subset(self, positions: Sequence[int], where: str) -> "LabeledImages":
        return LabeledImages(self.source, self.all_labels, self.classes, where,
                             [self.indices[p] for p in positions], self.transform)

    def shape(self) -> tuple[int, int]:
        """(channels, size): 3 when any image is not grayscale, else 1, from every image's header
        (reading stops at the first colour image); the size is the median longer side of up to
        SIZE_SAMPLE images spread evenly over the data (every image of a small set)."""
        if not self.indices:
            raise InputError(f"{self.where}: holds no training images")
        step = max(1, len(self) // SIZE_SAMPLE)
        sampled = {p: self.source.header(self.indices[p]) for p in range(0, len(self), step)}
        colour = any(mode not in GRAY_MODES for mode, _ in sampled.values()) or any(
            self.source.header(self.indices[p])[0] not in GRAY_MODES for p in range(len(self)) if p not in sampled)
        return (3 if colour else 1), int(statistics.median_low(max(size) for _, size in sampled.values()))


def split_off(data: LabeledImages, fraction: float, seed: int, flag: str = "--val-split") -> tuple[LabeledImages, LabeledImages]:
    """(train, val): FRACTION of each class's images (rounded half up) drawn by SEED for validation.
    A class left with no validation image, or with no training image, is refused."""
    by_class: dict[int, list[int]] = {}
    for position, label in enumerate(data.targets):
        by_class.setdefault(label, []).append(position)
    g = torch.Generator().manual_seed(seed)
    train, val = [], []
    for label in sorted(by_class):
        members = by_class[label]
        n_val = math.floor(fraction * len(members) + 0.5)
        name = data.classes[label]
        if n_val == 0:
            least = 1 / len(members)
            raise InputError(f"{flag} {fraction:g}: class {name!r} has {len(members)} training image(s), so it would "
                             f"get no validation image; pass at least {least:.3g}, or give {data.where} a val/ folder")
        if n_val == len(members):
            raise InputError(f"{flag} {fraction:g}: class {name!r} has {len(members)} training image(s), all of which "
                             f"would go to validation; pass a smaller fraction")
        order = torch.randperm(len(members), generator=g).tolist()
        val += [members[i] for i in order[:n_val]]
        train += [members[i] for i in order[n_val:]]
    return data.subset(sorted(train), data.where), data.subset(sorted(val), f"{data.where} ({flag} {fraction:g})")
