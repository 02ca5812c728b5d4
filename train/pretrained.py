"""`--init timm:NAME`: a backbone trained elsewhere (timm's ImageNet weights from the hub, or a local
state dict, e.g. one that timm's own train.py wrote) as the start of finetune, pssl or kd.

The target's head replaces the checkpoint's (the file's classifier keys are left out), and the run
keeps the weights' input contract: their mean and std, interpolation and crop_pct (the
architecture's pretrained_cfg), RGB unless --in-chans 1 folds the first convolution's weights
(timm's adapt_input_conv).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ptcommon.timm_specs import check_spec, create


def timm_init(init: str, weights: Path | None, num_classes: int, in_chans: int) -> torch.nn.Module:
    """NAME with its pretrained weights (from WEIGHTS, else timm's hub) and a fresh head of NUM_CLASSES."""
    check_spec(init, "--init", weights)
    return create(init, "--init", weights, fresh_head=True, num_classes=num_classes, in_chans=in_chans)
