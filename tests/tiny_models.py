"""Tiny, randomly initialised models that tests build and save locally (the hub is unreachable)."""

from __future__ import annotations

import json
from pathlib import Path

import torch


def save_tiny_unet(
    folder: Path,
    num_classes: int = 5,
    null_class: bool = True,
    image_size: int = 8,
    channels: int = 1,
    scheduler: str = "DPMSolverMultistepScheduler",
    class_conditional: bool = True,
    template: bool = False,
    seed: int = 0,
) -> Path:
    """A diffusers folder (unet/, scheduler/, ptgen.json) small enough to sample in milliseconds."""
    import diffusers
    from diffusers import UNet2DModel

    torch.manual_seed(seed)
    unet = UNet2DModel(
        sample_size=image_size,
        in_channels=channels * (2 if template else 1),
        out_channels=channels,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
        num_class_embeds=(num_classes + int(null_class)) if class_conditional else None,
    )
    # Random weights give near-uniform grey images; widen the output so that images differ visibly.
    with torch.no_grad():
        unet.conv_out.weight.mul_(20)
    unet.save_pretrained(folder / "unet")
    getattr(diffusers, scheduler)(num_train_timesteps=100).save_pretrained(folder / "scheduler")
    meta = {
        "null_class": null_class,
        "class_names": [f"tiny class {i}" for i in range(num_classes)],
        "defaults": {"steps": 4, "guidance": 2.0 if null_class else 1.0},
    }
    if template:
        from safetensors.torch import save_file

        rows = num_classes + int(null_class)
        table = torch.rand(rows, channels, image_size, image_size) * 2 - 1
        if null_class:
            table[-1] = 0
        save_file({"templates": table}, folder / "templates.safetensors")
        meta["template"] = "templates.safetensors"
    (folder / "ptgen.json").write_text(json.dumps(meta))
    return folder
