"""Classifier SPECs, for both stages: `builtin:NAME`, a run folder, or `timm:NAME` (an ImageNet model).

A source classifier is read in two places: pseudo conditional sampling (`ptgen pseudo
--classifier`) and the distillation baseline (`pttrain kd --teacher`). Run folders and built-ins
carry their classes and preprocessing in `config.json` (`ptcommon.runfolder`); a `timm:` model
gets them from timm: its data config (input size, mean, std) and ImageNet-1k's classes in index
order, which is the order DiT and BigGAN use for their labels, so its outputs map onto such a
generator's classes by index.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .cli import InputError
from .runfolder import WEIGHTS_FILE, ModelConfig, check_arch, load_run, resolve_run
from .weights import load_fitting, read_state_dict, sha256_of

TIMM_PREFIX = "timm:"
WEIGHTS_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".tar")  # .tar: timm train.py's .pth.tar


def is_timm(spec: str) -> bool:
    return spec.startswith(TIMM_PREFIX)


def check_classifier(spec: str, flag: str, weights: Path | None = None) -> None:
    """Refuse a SPEC that names nothing loadable, before any work: cheap checks only."""
    if not is_timm(spec):
        if weights is not None:
            raise InputError(f"{flag}-weights {weights}: only for a timm:NAME classifier; {spec} carries its own")
        resolve_run(spec, flag)
        return
    check_arch(spec[len(TIMM_PREFIX):], flag)
    if weights is not None:
        if not weights.is_file():
            raise InputError(f"{flag}-weights {weights}: no such file")
        if weights.suffix not in WEIGHTS_SUFFIXES:
            raise InputError(f"{flag}-weights {weights}: expected a state dict in {', '.join(WEIGHTS_SUFFIXES)}")


def _timm_classes(num_classes: int) -> list[str]:
    if num_classes == 1000:
        from timm.data import ImageNetInfo

        info = ImageNetInfo()
        return [info.index_to_description(i) for i in range(num_classes)]
    return [f"class_{i}" for i in range(num_classes)]


def _load_timm(spec: str, flag: str, weights: Path | None) -> tuple[torch.nn.Module, ModelConfig]:
    import timm
    from timm.data import resolve_data_config

    name = spec[len(TIMM_PREFIX):]
    check_classifier(spec, flag, weights)
    try:
        model = timm.create_model(name, pretrained=weights is None)
    except Exception as err:  # offline: the hub client raises many types
        raise InputError(f"{flag} {spec}: could not fetch timm's pretrained weights ({type(err).__name__}); "
                         f"without network access pass a local weights file with {flag}-weights FILE") from None
    if weights is not None:
        load_fitting(model, read_state_dict(weights, f"{flag}-weights {weights.parent}"), f"{flag}-weights {weights}",
                     name)
    data = resolve_data_config({}, model=model)
    size = data["input_size"]
    config = ModelConfig(arch=name, num_classes=model.num_classes, class_names=_timm_classes(model.num_classes),
                         image_size=size[-1], in_chans=size[0], mean=list(data["mean"]), std=list(data["std"]),
                         source_ids=list(range(model.num_classes)))
    return model.eval(), config


def load_classifier(spec: str, flag: str, weights: Path | None = None) -> tuple[torch.nn.Module, ModelConfig]:
    """The model a classifier SPEC names, in eval mode, with the config that says how to feed it."""
    if is_timm(spec):
        return _load_timm(spec, flag, weights)
    check_classifier(spec, flag, weights)
    return load_run(spec, flag)


def classifier_digest(spec: str, weights: Path | None = None) -> str:
    """What identifies a classifier's weights, for a dataset's config hash."""
    path = weights if is_timm(spec) else resolve_run(spec, "--classifier") / WEIGHTS_FILE
    if path is None:  # timm's hub weights: the name and timm's pretrained tag say which
        return f"{_tagged(spec)}:pretrained"
    return sha256_of([path])


def _tagged(spec: str) -> str:
    """A timm SPEC with its pretrained tag: for a name without one, the tag the installed timm
    gives it, since a newer timm may move an architecture's default to other weights, whose soft
    labels must not mix with these; and so that both spellings of the same weights agree."""
    from timm.models import get_pretrained_cfg, split_model_name_tag

    arch, tag = split_model_name_tag(spec[len(TIMM_PREFIX):])
    cfg = None if tag else get_pretrained_cfg(arch)
    return f"{TIMM_PREFIX}{arch}.{cfg.tag}" if cfg is not None and cfg.tag else spec
