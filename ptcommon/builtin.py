"""The built-in source world: where `builtin:NAME` SPECs resolve, for generators and classifiers alike.

A built-in world ships both halves of a source, side by side, so that both stages find them in
one place: `builtin/NAME/generator/` (a diffusers folder) and `builtin/NAME/classifier/` (a run
folder, read by `ptcommon.runfolder`). The generation stage uses both (sampling, pseudo
conditional sampling); the training stage only the classifier (a KD teacher).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from .cli import InputError

PREFIX = "builtin:"
ROOT = Path(__file__).resolve().parent / "builtin"
DEFAULT_NAME = "glyphs-1k"
DEFAULT_SPEC = PREFIX + DEFAULT_NAME

Part = Literal["generator", "classifier"]


def is_builtin(spec: str) -> bool:
    return spec.startswith(PREFIX)


def names() -> list[str]:
    """The built-in worlds shipped with this installation."""
    return sorted(p.name for p in ROOT.iterdir() if p.is_dir()) if ROOT.is_dir() else []


def folder(name: str, part: Part) -> Path:
    """Where a built-in world's generator or classifier lies (it may be missing from a slim build)."""
    return ROOT / name / part


def resolve(spec: str, part: Part, flag: str) -> Path:
    """The folder a `builtin:NAME` SPEC names; an unknown or uninstalled one is a one-line error naming `flag`."""
    name = spec[len(PREFIX):]
    if name not in names():
        known = ", ".join(PREFIX + n for n in names()) or "none in this installation"
        raise InputError(f"{flag} {spec}: no such built-in {part}; built-in: {known}")
    path = folder(name, part)
    if not path.is_dir():
        raise InputError(f"{flag} {spec}: the built-in {part} is missing from this installation (expected at {path})")
    return path
