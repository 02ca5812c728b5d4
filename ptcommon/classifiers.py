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

from .runfolder import WEIGHTS_FILE, ModelConfig, load_run, resolve_run
from .timm_specs import check_spec, create, data_config, is_timm, tagged, timm_name
from .weights import sha256_of


def check_classifier(spec: str, flag: str, weights: Path | None = None) -> None:
    """Refuse a SPEC that names nothing loadable, before any work: cheap checks only."""
    check_spec(spec, flag, weights)
    if not is_timm(spec):
        resolve_run(spec, flag)


def _timm_classes(num_classes: int) -> list[str]:
    if num_classes == 1000:
        from timm.data import ImageNetInfo

        info = ImageNetInfo()
        return [info.index_to_description(i) for i in range(num_classes)]
    return [f"class_{i}" for i in range(num_classes)]


def _load_timm(spec: str, flag: str, weights: Path | None) -> tuple[torch.nn.Module, ModelConfig]:
    check_classifier(spec, flag, weights)
    model = create(spec, flag, weights)
    data = data_config(timm_name(spec))
    size = data["input_size"]
    config = ModelConfig(arch=timm_name(spec), num_classes=model.num_classes,
                         class_names=_timm_classes(model.num_classes), image_size=size[-1], in_chans=size[0],
                         mean=list(data["mean"]), std=list(data["std"]), source_ids=list(range(model.num_classes)))
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
        return f"{tagged(spec)}:pretrained"
    return sha256_of([path])
