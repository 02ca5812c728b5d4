"""Preprocessing and augmentation: two policies, `glyph` and `natural`.

Either way, every image is first converted to the model's channels (grayscale "L" for one input
channel, "RGB" for three), and ends as a float tensor (in_chans, image_size, image_size)
normalised with the run's mean and std. The model input size is by default the data's size,
raised to 32 px when smaller (`train.models.default_image_size`).

glyph (small square grayscale glyphs and digits; torchvision's transforms.v2): resized to
`image_size` square (bilinear, with antialiasing when shrinking; aspect ratio is not kept, since
the built-in data is square) and scaled to [0, 1]. Training adds a mild random affine jitter; no
flips, since glyphs and digits are not mirror-symmetric. The strong view of semi-supervised
learning adds RandAugment (torchvision's, 2 operations, magnitude 9, on the resized image so that
its geometric operations act at the model's resolution) and a random erasing of 2-15% of the
image, FixMatch's Cutout.

natural (photos and the samples of ImageNet generators; timm's `create_transform`, with the
interpolation and crop_pct of the architecture's pretrained_cfg): training takes a random resized
crop (8-100% of the area, aspect 3/4-4/3), a horizontal flip and a colour jitter (0.4 brightness,
contrast, saturation); evaluation resizes the shorter side to image_size / crop_pct and takes the
center crop. The strong view adds timm's RandAugment (`rand_augment_transform`,
"rand-m9-n2-mstd0.5": 2 operations, magnitude 9) after the colour jitter and timm's random
erasing (always, 2-33% of the image, filled with zeros after normalisation) at the end.

`--augment auto` picks by the data's channels and the model's input size (`AUTO_POLICY`), as
measured in docs/results.md ("Augmentation policy by kind of data", "Augmentation policy for RGB
photos, by input size"): glyph for both, since it won on grayscale digits and was never behind
natural beyond the seed spread on RGB photo crops, from scratch and after pre-training; natural is
there for `--augment natural`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from PIL import Image
from torchvision.transforms import v2

POLICIES = ("glyph", "natural")
STRONG_RANDAUGMENT = "rand-m9-n2-mstd0.5"
# What `--augment auto` picks, by the data's channels (grayscale, RGB). Measured with resnet18, test
# top-1 (docs/results.md): from scratch at 32 px over 4 seeds (augment_policy), digits glyph 0.957
# vs natural 0.770, RGB photo patches glyph 0.946 vs natural 0.933; on RGB photo crops (photo_policy,
# natural minus glyph, paired) -0.010 / +0.023 at 64 px (scratch / pre-trained, 3 seeds), -0.042 /
# -0.012 at 128 px and -0.052 / -0.043 at 224 px (2 seeds each). Not measured: pre-training on a
# million generated images, where docs/gpu.md gives --augment natural.
# An entry is a policy for every size, or {smallest model input size in px: policy, ...}, e.g.
# {0: "glyph", 64: "natural"}: the row of the largest size not above the model's input size.
AUTO_POLICY: dict[str, str | dict[int, str]] = {"grayscale": "glyph", "rgb": "glyph"}


def auto_policy(channels: int, image_size: int = 0) -> str:
    """The policy `--augment auto` picks for data of CHANNELS channels fed to a model at IMAGE_SIZE px."""
    entry = AUTO_POLICY["grayscale" if channels == 1 else "rgb"]
    if isinstance(entry, str):
        return entry
    return entry[max((s for s in entry if s <= image_size), default=min(entry))]


def pretrained_input_size(arch: str) -> int:
    """The input size of ARCH's default pretrained weights (224 for resnet50); timm's default, 224,
    for an architecture without pretrained weights."""
    from ptcommon.timm_specs import data_config

    return int(data_config(arch)["input_size"][-1])


def per_channel(values, channels: int) -> list[float]:
    """RGB statistics for a model of CHANNELS inputs: their average for one channel."""
    values = [float(v) for v in values]
    if len(values) == channels:
        return values
    return [sum(values) / len(values)] * channels


def _glyph_jitter() -> v2.RandomAffine:
    return v2.RandomAffine(degrees=8, translate=(0.08, 0.08), scale=(0.9, 1.1))


@dataclass(frozen=True)
class Preprocess:
    image_size: int
    in_chans: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    policy: str = "glyph"
    interpolation: str = "bilinear"  # natural only, as crop_pct: the architecture's pretrained_cfg
    crop_pct: float = 0.875

    @property
    def mode(self) -> str:
        return "L" if self.in_chans == 1 else "RGB"

    def to_tensor(self, augment: bool, strong: bool = False):
        if self.policy == "natural":
            return self._natural(augment, strong)
        steps: list = [v2.ToImage(), v2.Resize((self.image_size, self.image_size), antialias=True)]
        if augment:
            steps.append(_glyph_jitter())
        if strong:
            steps.append(v2.RandAugment(num_ops=2, magnitude=9))
        steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(self.mean), list(self.std))]
        if strong:
            steps.append(v2.RandomErasing(p=1.0, scale=(0.02, 0.15), value=0))
        return v2.Compose(steps)

    def _timm(self, is_training: bool, **kwargs):
        from timm.data import create_transform

        return create_transform(self.image_size, is_training=is_training, interpolation=self.interpolation,
                                mean=self.mean, std=self.std, crop_pct=self.crop_pct, **kwargs)

    def _natural(self, augment: bool, strong: bool):
        from torchvision import transforms
        from timm.data.auto_augment import rand_augment_transform
        from timm.data.random_erasing import RandomErasing
        from timm.data.transforms import str_to_pil_interp

        if not (augment or strong):
            return self._timm(is_training=False)
        crop_flip, colour, to_tensor = self._timm(is_training=True, separate=True)
        if not strong:
            return transforms.Compose([crop_flip, colour, to_tensor])
        # the hyper-parameters timm's own create_transform gives RandAugment
        randaugment = rand_augment_transform(STRONG_RANDAUGMENT, {
            "translate_const": int(self.image_size * 0.45), "img_mean": tuple(round(255 * m) for m in self.mean),
            "interpolation": str_to_pil_interp(self.interpolation)})
        return transforms.Compose([crop_flip, colour, randaugment, to_tensor,
                                   RandomErasing(1.0, mode="const", device="cpu")])

    def jitter(self):
        """The augmentation of a PIL image (no resizing to the model's size, no tensor) that
        distillation's two views share: glyph's affine jitter; natural's crop, flip and colour jitter."""
        if self.policy == "natural":
            from torchvision import transforms

            crop_flip, colour, _ = self._timm(is_training=True, separate=True)
            return transforms.Compose([crop_flip, colour])
        return _glyph_jitter()

    def square(self):
        """Resize to image_size square and normalise, no augmentation: glyph's evaluation view, and
        the view of an image a `jitter` has already cropped."""
        return replace(self, policy="glyph").transform(augment=False)

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
