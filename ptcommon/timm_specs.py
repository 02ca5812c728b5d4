"""`timm:NAME`, for both stages: a source classifier (`--classifier`, `--teacher`) or a backbone to
start from (`--init`). NAME may carry a pretrained tag (`resnet50.a1_in1k`). Its weights come from
timm's hub, or offline from a local state dict (`--classifier-weights`, `--teacher-weights`,
`--init-weights`); its input contract (size, mean, std, interpolation, crop_pct) from timm's
pretrained config of those weights.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .cli import InputError
from .runfolder import check_arch
from .weights import load_fitting, read_state_dict

TIMM_PREFIX = "timm:"
WEIGHTS_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".tar")  # .tar: timm train.py's .pth.tar


def is_timm(spec: str) -> bool:
    return spec.startswith(TIMM_PREFIX)


def timm_name(spec: str) -> str:
    """NAME of timm:NAME, with its pretrained tag if it has one."""
    return spec[len(TIMM_PREFIX):]


def base_arch(name: str) -> str:
    """The architecture of a timm NAME, without its pretrained tag."""
    return name.split(".", 1)[0]


def check_spec(spec: str, flag: str, weights: Path | None) -> None:
    """A timm SPEC given as FLAG, with its `FLAG-weights` file, or a SPEC of another kind that must not
    take one: cheap checks before anything is loaded."""
    if not is_timm(spec):
        if weights is not None:
            raise InputError(f"{flag}-weights {weights}: only for {flag} timm:NAME; {flag} {spec} carries its own "
                             "weights")
        return
    check_arch(base_arch(timm_name(spec)), flag)
    if weights is not None:
        if not weights.is_file():
            raise InputError(f"{flag}-weights {weights}: no such file")
        if weights.suffix not in WEIGHTS_SUFFIXES:
            raise InputError(f"{flag}-weights {weights}: expected a state dict in {', '.join(WEIGHTS_SUFFIXES)}")


def create(spec: str, flag: str, weights: Path | None, *, fresh_head: bool = False, **kwargs) -> torch.nn.Module:
    """The model of timm SPEC with its pretrained weights: timm's hub's, or WEIGHTS (a local state dict)
    when given. KWARGS go to timm.create_model (num_classes, in_chans); with FRESH_HEAD the file's
    classifier head is left out, for a head of other classes."""
    import timm

    from .hf_data import quiet_hub

    name = timm_name(spec)
    if weights is None:
        try:
            with quiet_hub():
                return timm.create_model(name, pretrained=True, **kwargs)
        except Exception as err:  # offline: the hub client raises many types
            raise InputError(f"{flag} {spec}: could not fetch timm's pretrained weights ({type(err).__name__}); "
                             f"without network access pass a local state dict with {flag}-weights FILE "
                             "(.safetensors, or .pth)") from None
    model = timm.create_model(name, pretrained=False, **kwargs)
    state = read_state_dict(weights, f"{flag}-weights {weights.parent}")
    in_chans = kwargs.get("in_chans", 3)
    first_conv = model.pretrained_cfg.get("first_conv")
    if in_chans != 3 and isinstance(first_conv, str) and f"{first_conv}.weight" in state:
        from timm.models import adapt_input_conv

        # RGB weights folded onto the model's channels, as timm does for its hub weights.
        state[f"{first_conv}.weight"] = adapt_input_conv(in_chans, state[f"{first_conv}.weight"])
    head = model.pretrained_cfg.get("classifier") if fresh_head else None
    skip = (head,) if isinstance(head, str) else tuple(head or ())
    load_fitting(model, state, f"{flag}-weights {weights}", name, skip=skip)
    return model


def data_config(name: str) -> dict:
    """mean, std, interpolation, crop_pct and input size of NAME's pretrained weights (its tag's if it
    names one, else the architecture's default); timm's ImageNet defaults for an architecture with none."""
    import timm
    from timm.data import resolve_data_config

    cfg = timm.models.get_pretrained_cfg(name) or timm.models.get_pretrained_cfg(base_arch(name))
    return resolve_data_config(pretrained_cfg=cfg.to_dict() if cfg else {"architecture": base_arch(name)})


def tagged(spec: str) -> str:
    """A timm SPEC with its pretrained tag: for a name without one, the tag the installed timm gives
    it, since a newer timm may move an architecture's default to other weights, and so that both
    spellings of the same weights agree."""
    from timm.models import get_pretrained_cfg, split_model_name_tag

    arch, tag = split_model_name_tag(timm_name(spec))
    cfg = None if tag else get_pretrained_cfg(arch)
    return f"{TIMM_PREFIX}{arch}.{cfg.tag}" if cfg is not None and cfg.tag else spec
