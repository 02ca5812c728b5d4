"""Preprocessing and augmentation, from torchvision's transforms.v2.

Policy (also in `--help`): every image is converted to the model's channels (grayscale "L" for
one input channel, "RGB" for three), resized to the run's `image_size` square (by default the
data's size, raised to 32 px when smaller: `train.models.default_image_size`; bilinear, with
antialiasing when shrinking; aspect ratio is not kept, since the built-in data is square),
scaled to [0, 1] and normalised with the run's mean and std. Training adds a mild random
affine jitter; no flips, since glyphs and digits are not mirror-symmetric. The strong view of
semi-supervised learning adds RandAugment (2 operations, magnitude 9, on the resized image so that
its geometric operations act at the model's resolution) and a random erasing of 2-15% of the
image, FixMatch's Cutout.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from PIL import Image
from torchvision.transforms import v2


@dataclass(frozen=True)
class Preprocess:
    image_size: int
    in_chans: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def mode(self) -> str:
        return "L" if self.in_chans == 1 else "RGB"

    def to_tensor(self, augment: bool, strong: bool = False) -> v2.Compose:
        steps: list = [v2.ToImage(), v2.Resize((self.image_size, self.image_size), antialias=True)]
        if augment:
            steps.append(v2.RandomAffine(degrees=8, translate=(0.08, 0.08), scale=(0.9, 1.1)))
        if strong:
            steps.append(v2.RandAugment(num_ops=2, magnitude=9))
        steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(self.mean), list(self.std))]
        if strong:
            steps.append(v2.RandomErasing(p=1.0, scale=(0.02, 0.15), value=0))
        return v2.Compose(steps)

    def transform(self, augment: bool, strong: bool = False):
        """PIL image of any mode and size -> normalised float tensor (in_chans, size, size)."""
        pipeline = self.to_tensor(augment, strong)

        def apply(image: Image.Image) -> torch.Tensor:
            return pipeline(image.convert(self.mode))

        return apply


def weak_and_strong(pre: Preprocess):
    """The two views of an unlabeled image that consistency-based SSL compares."""
    weak, strong = pre.transform(augment=True), pre.transform(augment=True, strong=True)

    def apply(image: Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
        return weak(image), strong(image)

    return apply
