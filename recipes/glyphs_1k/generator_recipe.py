"""The candidate recipes for the built-in generator, and the class codes they condition on.

Each candidate is a `GeneratorRecipe`; `train_generator` trains any of them. docs/results.md,
"Generator design study", compares them under one wall-clock budget.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch

from .render import GlyphRenderer

CODE_DIM = 128  # = the UNet's time-embedding width (4 x the first block's channels), where codes are added
MEAN_RENDERS = 64  # augmented renders averaged into each class mean
MEAN_SEED = 12345


@dataclass(frozen=True)
class GeneratorRecipe:
    name: str
    block_out_channels: tuple[int, ...] = (32, 64, 128)
    layers_per_block: int = 2
    train_codes: bool = True  # PCA codes as a trainable initialisation, or kept fixed
    template: bool = False  # the class-mean render as an extra input channel
    batch_size: int = 128
    lr: float = 1e-3
    warmup_steps: int = 200
    label_dropout: float = 0.1
    min_snr_gamma: float = 5.0
    ema_max_decay: float = 0.999
    sample_steps: int = 20
    guidance: float = 4.0
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)

    def unet_config(self, num_classes: int) -> dict:
        levels = len(self.block_out_channels)
        return {
            "sample_size": 16,
            "in_channels": 2 if self.template else 1,
            "out_channels": 1,
            "layers_per_block": self.layers_per_block,
            "block_out_channels": self.block_out_channels,
            "down_block_types": ("DownBlock2D",) * (levels - 1) + ("AttnDownBlock2D",),
            "up_block_types": ("AttnUpBlock2D",) + ("UpBlock2D",) * (levels - 1),
            "norm_num_groups": 8,
            "num_class_embeds": num_classes + 1,  # the last row is the null class for guidance
            "resnet_time_scale_shift": "scale_shift",
        }


CANDIDATES = {
    r.name: r
    for r in (
        # The best recipe measured before this study: informative codes, trainable.
        GeneratorRecipe("codes"),
        # The same UNet, also shown the class-mean render as a spatial condition.
        GeneratorRecipe("codes+template", template=True),
        # A smaller, faster UNet with the spatial condition: more images per minute,
        # faster sampling, fewer bytes to ship.
        GeneratorRecipe("small+template", block_out_channels=(32, 48, 96), layers_per_block=1, template=True),
    )
}


def class_means(renderer: GlyphRenderer) -> torch.Tensor:
    """(C, 1, H, W) mean augmented render of each class, in [0, 1]."""
    labels = torch.arange(renderer.num_classes).repeat_interleave(MEAN_RENDERS)
    images = renderer.render(labels, MEAN_SEED).float().div_(255.0)
    return images.view(renderer.num_classes, MEAN_RENDERS, 1, renderer.size, renderer.size).mean(1)


def pca_codes(means: torch.Tensor, dim: int = CODE_DIM) -> torch.Tensor:
    """(C + 1, dim) standardised PCA codes of the class means; the last (null) row is zero.

    With codes that describe the glyph, every training image teaches the shared map from code
    to image, so all classes learn together instead of each row learning from its own class.
    """
    flat = means.flatten(1)
    centred = flat - flat.mean(0, keepdim=True)
    _, _, v = torch.linalg.svd(centred, full_matrices=False)
    codes = centred @ v[:dim].T
    codes = codes / codes.std(0, keepdim=True)
    return torch.cat([codes, torch.zeros(1, dim)])


def templates(means: torch.Tensor) -> torch.Tensor:
    """(C + 1, 1, H, W) class means in the model's [-1, 1] range; the null row is zero."""
    return torch.cat([means * 2 - 1, torch.zeros(1, *means.shape[1:])])
