"""Backend: `noise:CLASSESxSIZE[xCHANNELS]`, seeded noise without a network, for dry runs.

It rehearses a job's storage and loader at full size before any GPU hour is spent (docs/shards.md,
"Rehearsing a job at full size"): the same plan, writer, store and manifest as every backend, with
images that cost microseconds. Each image is uniform noise, the raw output of NumPy's PCG64 seeded
with the sample's seed alone, so it is the same at any batch size, split or rank, and compresses
as little as anything does: a codec meets its worst case, not a flattering one. The image ignores
its class; the labels are the plan's, as with any generator.

There is no folder: the SPEC itself says what the model is. `noise:1000x32` is 1,000 classes of
32 px RGB, `noise:1000x32x1` the same in gray.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ptcommon.cli import InputError

from ..generator import OnePassGenerator, Start, check_condition

PREFIX = "noise:"
_FORM = f"{PREFIX}CLASSESxSIZE[xCHANNELS]"
_EXAMPLES = f"e.g. {PREFIX}1000x32 (RGB) or {PREFIX}1000x32x1 (gray)"


def is_noise(spec: str) -> bool:
    return str(spec).startswith(PREFIX)


def parse(spec: str, flag: str = "--model") -> tuple[int, int, int]:
    """(classes, image size, channels) of a noise SPEC; a malformed one is a one-line error."""
    m = re.fullmatch(r"(\d+)x(\d+)(?:x(\d+))?", str(spec)[len(PREFIX):])
    if m is None:
        raise InputError(f"{flag} {spec}: expected {_FORM}, {_EXAMPLES}")
    classes, size, channels = int(m[1]), int(m[2]), int(m[3] or 3)
    if classes < 1:
        raise InputError(f"{flag} {spec}: {classes} classes; give at least 1, {_EXAMPLES}")
    if size < 1:
        raise InputError(f"{flag} {spec}: images of {size} px; give at least 1, {_EXAMPLES}")
    if channels not in (1, 3):
        raise InputError(f"{flag} {spec}: {channels} channels; give 1 (gray) or 3 (RGB), {_EXAMPLES}")
    return classes, size, channels


def noise_image(seed: int, size: int, channels: int) -> np.ndarray:
    """One image, uint8 (size, size, channels), from SEED alone: PCG64's raw words, whose stream NumPy
    keeps stable across releases (unlike its Generator's sampling methods), read as little-endian bytes."""
    count = size * size * channels
    words = np.random.PCG64(int(seed)).random_raw(-(-count // 8))
    return words.astype("<u8").view(np.uint8)[:count].reshape(size, size, channels)


class NoiseGenerator(OnePassGenerator):
    """Class-conditional in name only: every image is its seed's noise."""

    name = "noise"
    layout = f"no folder: --model {_FORM} (seeded noise, no network: a dry run at full size)"

    @classmethod
    def claims(cls, folder: Path) -> bool:
        return False  # never a folder: models.py routes its SPEC here by the prefix

    @classmethod
    def describe(cls, folder: Path | str) -> dict:
        """What the SPEC (which stands where other backends have a folder) holds."""
        classes, size, channels = parse(str(folder))
        return {"num_classes": classes, "image_size": size, "channels": channels}

    def __init__(self, spec: str, device: str = "cpu", dtype: torch.dtype = torch.float32):
        self.spec = str(spec)
        self._classes, self._size, self._channels = parse(self.spec)
        self.device = torch.device(device)  # where a source classifier runs beside it (ptgen pseudo)

    @property
    def num_classes(self) -> int:
        return self._classes

    @property
    def class_names(self) -> list[str]:
        return [f"class_{i}" for i in range(self._classes)]

    @property
    def image_size(self) -> int:
        return self._size

    @property
    def channels(self) -> int:
        return self._channels

    def compile(self) -> None:
        raise InputError(f"--compile: {self.spec} has no network to compile; drop --compile")

    def fingerprint(self) -> dict:
        # The canonical SPEC: noise:1000x32 and noise:1000x32x3 are one model, and resume each other.
        return {"backend": "noise", "spec": f"{PREFIX}{self._classes}x{self._size}x{self._channels}",
                "bits": "PCG64(sample seed).random_raw, little-endian"}

    from_noise = "its seeded noise"

    def no_way_back(self) -> str:
        return f"{self.spec} has no model, so nothing can start from an image"

    def sample(self, condition: torch.Tensor, seeds: Sequence[int], steps: int, guidance: float, *,
               start: Start | None = None) -> np.ndarray:
        check_condition(condition, self._classes)
        if start is not None:
            self.check_start("start")
        return np.stack([noise_image(seed, self._size, self._channels) for seed in seeds])
