"""Resolving a generator SPEC: `builtin:NAME`, a diffusers model folder, or a hub id."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from ptcommon import builtin
from ptcommon.cli import InputError
from .generator import Generator

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class BuiltinInfo:
    name: str
    path: Path
    installed: bool
    num_classes: int | None
    image_size: int | None

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "path": str(self.path),
            "num_classes": self.num_classes,
            "image_size": self.image_size,
            "installed": self.installed,
        }


def builtin_info(name: str) -> BuiltinInfo:
    """Describe a built-in model from its config files, without loading weights."""
    path = builtin.folder(name, "generator")
    unet_config = path / "unet" / "config.json"
    if not unet_config.exists():
        return BuiltinInfo(builtin.PREFIX + name, path, False, None, None)
    config = json.loads(unet_config.read_text())
    meta_path = path / "ptgen.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    rows = config["num_class_embeds"]
    size = config["sample_size"]
    return BuiltinInfo(
        builtin.PREFIX + name,
        path,
        True,
        rows - 1 if meta.get("null_class") else rows,
        size if isinstance(size, int) else size[0],
    )


def list_builtins() -> list[BuiltinInfo]:
    return [builtin_info(name) for name in builtin.names()]


def _model_folder(spec: str) -> Path:
    if builtin.is_builtin(spec):
        return builtin.resolve(spec, "generator", "--model")
    path = Path(spec).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise InputError(f"--model {spec}: is a file; expected a diffusers model folder (unet/, scheduler/)")
    if _HUB_ID.match(spec) and not spec.startswith((".", "/")):
        return _download(spec)
    raise InputError(
        f"--model {spec}: no such folder; expected {builtin.DEFAULT_SPEC}, a diffusers model folder "
        "(unet/, scheduler/) or a hub id such as owner/name"
    )


def _download(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id))
    except Exception as err:  # the hub client raises many types: offline, missing repo, auth
        raise InputError(
            f"--model {repo_id}: could not fetch it from the model hub ({type(err).__name__}); "
            "without network access pass a local diffusers model folder"
        ) from None


def load_generator(spec: str, device: str = "cpu", dtype: str = "fp32") -> Generator:
    """Load the generator a SPEC names, on `device` in `dtype` (fp32, fp16 or bf16)."""
    from .unet_backend import UNetGenerator

    folder = _model_folder(spec)
    return UNetGenerator(folder, device=resolve_device(device), dtype=DTYPES[dtype])


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA device is visible; use --device cpu or auto")
    return device
