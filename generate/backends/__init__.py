"""Generator backends, and which one a model folder is.

A new backend is one module here with a `Generator` subclass (its `claims` and `describe` read
the folder's own description files) and one line in BACKENDS.
"""

from __future__ import annotations

from pathlib import Path

from ptcommon.cli import InputError

from ..generator import Generator
from .biggan import BigGANGenerator
from .dit import DiTGenerator
from .folder import pipeline_class
from .noise import NoiseGenerator
from .text_to_image import TextToImageGenerator
from .unet import UNetGenerator

BACKENDS: list[type[Generator]] = [
    DiTGenerator,
    TextToImageGenerator,  # before unet: a text-to-image folder holds a unet/ too
    UNetGenerator,
    BigGANGenerator,
    NoiseGenerator,  # claims no folder: its SPEC, noise:..., names it (models.py)
]

# Pipelines diffusers knows that no backend here samples yet: named in the refusal.
_UNSUPPORTED = {"StableDiffusionXLPipeline": "text-to-image", "PixArtAlphaPipeline": "text-to-image",
                "DDPMPipeline": "unconditional", "LDMPipeline": "unconditional"}


def backend_for(folder: Path, flag: str = "--model") -> type[Generator]:
    """The backend whose kind of folder `folder` is; a folder of no known kind is a one-line error
    naming what each backend expects."""
    kind = pipeline_class(folder)
    if kind in _UNSUPPORTED:
        raise InputError(f"{flag} {folder}: a {kind} ({_UNSUPPORTED[kind]}) is not supported yet; ptgen samples "
                         f"class-conditional models: {', '.join(b.name for b in BACKENDS)}")
    for backend in BACKENDS:
        if backend.claims(folder):
            return backend
    expected = "; ".join(f"{b.name}: {b.layout}" for b in BACKENDS)
    found = ", ".join(sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())[:8]) or "nothing"
    raise InputError(f"{flag} {folder}: not a generator folder ptgen knows (found {found}); expected {expected}")
