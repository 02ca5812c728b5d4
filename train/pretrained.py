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

from ptcommon.classifiers import TIMM_PREFIX, WEIGHTS_SUFFIXES
from ptcommon.cli import InputError
from ptcommon.hf_data import quiet_hub
from ptcommon.weights import load_fitting, read_state_dict

from .models import check_arch


def timm_name(init: str) -> str:
    """NAME of timm:NAME, which may carry a pretrained tag (resnet50.a1_in1k)."""
    return init[len(TIMM_PREFIX):]


def base_arch(name: str) -> str:
    return name.split(".", 1)[0]


def check_init_weights(init: str, weights: Path | None) -> None:
    """--init-weights only with timm:NAME, and only a state dict that exists; cheap checks before anything is read."""
    if weights is None:
        return
    if not init.startswith(TIMM_PREFIX):
        raise InputError(f"--init-weights {weights}: only for --init timm:NAME; --init {init} carries its own weights")
    if not weights.is_file():
        raise InputError(f"--init-weights {weights}: no such file")
    if weights.suffix not in WEIGHTS_SUFFIXES:
        raise InputError(f"--init-weights {weights}: expected a state dict in {', '.join(WEIGHTS_SUFFIXES)}")


def pretrained_data_config(name: str) -> dict:
    """mean, std, interpolation, crop_pct and input size of NAME's pretrained weights (its tag's, if named)."""
    import timm
    from timm.data import resolve_data_config

    cfg = timm.models.get_pretrained_cfg(name) or timm.models.get_pretrained_cfg(base_arch(name))
    return resolve_data_config(pretrained_cfg=cfg.to_dict() if cfg else {"architecture": base_arch(name)})


def timm_init(init: str, weights: Path | None, num_classes: int, in_chans: int) -> torch.nn.Module:
    """NAME with its pretrained weights (from WEIGHTS, else timm's hub) and a fresh head of NUM_CLASSES."""
    import timm

    name = timm_name(init)
    check_arch(base_arch(name), "--init")
    check_init_weights(init, weights)
    if weights is None:
        try:
            with quiet_hub():
                return timm.create_model(name, pretrained=True, num_classes=num_classes, in_chans=in_chans)
        except Exception as err:  # offline: the hub client raises many types
            raise InputError(f"--init {init}: could not fetch timm's pretrained weights ({type(err).__name__}); "
                             "without network access pass a local state dict with --init-weights FILE "
                             "(.safetensors, or .pth)") from None
    model = timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_chans)
    state = read_state_dict(weights, f"--init-weights {weights.parent}")
    first_conv, head = model.pretrained_cfg.get("first_conv"), model.pretrained_cfg.get("classifier")
    if in_chans != 3 and isinstance(first_conv, str) and f"{first_conv}.weight" in state:
        from timm.models import adapt_input_conv

        state[f"{first_conv}.weight"] = adapt_input_conv(in_chans, state[f"{first_conv}.weight"])
    heads = (head,) if isinstance(head, str) else tuple(head or ())
    load_fitting(model, state, f"--init-weights {weights}", name, skip=heads)
    return model
