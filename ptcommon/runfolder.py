"""The run-folder format: a trained classifier as `model.safetensors` + `config.json`.

The training stage writes it; both stages read it (a teacher, the source classifier of pseudo
conditional sampling), so the reader lives here, beside neither stage's logic.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from . import builtin
from .cli import InputError

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


@dataclass
class ModelConfig:
    arch: str
    num_classes: int
    class_names: list[str]
    image_size: int
    in_chans: int
    mean: list[float]
    std: list[float]
    source_ids: list[int] | None = None  # the classes' ids in the source label space, when there is one
    timm_kwargs: dict = field(default_factory=dict)
    # How the natural policy resizes for a model started from pretrained weights (--init timm:NAME):
    # theirs; None takes the architecture's default pretrained_cfg.
    interpolation: str | None = None
    crop_pct: float | None = None

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})

    def as_dict(self) -> dict:
        """The fields, less the resize fields where unset (a config without them reads alike)."""
        return {k: v for k, v in asdict(self).items() if v is not None or k not in ("interpolation", "crop_pct")}


def check_arch(arch: str, flag: str = "--arch") -> None:
    """Refuse an unknown architecture, naming the closest valid ones."""
    import difflib

    import timm

    names = timm.list_models()
    if arch not in names:
        close = difflib.get_close_matches(arch, names, n=5, cutoff=0.5)
        hint = f"closest: {', '.join(close)}" if close else "see timm.list_models()"
        raise InputError(f"{flag} {arch}: not a timm architecture; {hint}")


def create_model(config: ModelConfig) -> torch.nn.Module:
    import timm

    check_arch(config.arch)
    return timm.create_model(config.arch, pretrained=False, num_classes=config.num_classes,
                             in_chans=config.in_chans, **config.timm_kwargs)


def resolve_run(spec: str, flag: str) -> Path:
    """A classifier SPEC (`builtin:NAME` or a run folder) as the folder holding it."""
    if builtin.is_builtin(spec):
        return builtin.resolve(spec, "classifier", flag)
    folder = Path(spec)
    if not folder.is_dir():
        raise InputError(f"{flag} {spec}: no such folder; expected a run folder or builtin:NAME")
    missing = [n for n in (CONFIG_FILE, WEIGHTS_FILE) if not (folder / n).exists()]
    if missing:
        raise InputError(f"{flag} {spec}: not a finished run folder (no {' or '.join(missing)})")
    return folder


def _config_at(folder: Path) -> ModelConfig:
    return ModelConfig.from_dict(json.loads((folder / CONFIG_FILE).read_text()))


def run_config(spec: str, flag: str = "--run") -> ModelConfig:
    """The config of a run folder or built-in classifier, without loading its weights."""
    return _config_at(resolve_run(spec, flag))


def load_run(spec: str, flag: str = "--run") -> tuple[torch.nn.Module, ModelConfig]:
    """Rebuild the model of a run folder or built-in classifier, in eval mode and fp32."""
    from safetensors.torch import load_file

    folder = resolve_run(spec, flag)
    config = _config_at(folder)
    model = create_model(config)
    state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(folder / WEIGHTS_FILE)).items()}
    model.load_state_dict(state)
    return model.eval(), config
