"""Weights files that came from elsewhere: read without running pickled code, and identified by hash.

Both stages load weights a user brings (a BigGAN's checkpoint, a timm classifier's state dict);
a pickle can run code when loaded, so a state dict is read from safetensors or under
`torch.load(weights_only=True)`, and anything else is a one-line refusal.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterable

import torch

from .cli import InputError


def read_state_dict(path: Path, label: str) -> dict[str, torch.Tensor]:
    """The tensors of `path` (`.safetensors`, else a torch file read under weights_only); training
    checkpoints that nest them under `state_dict` or `model` are unwrapped. `label` starts the error."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # safetensors' and pickle's errors, and torch's own for anything but plain tensors
        reason = str(err).strip().splitlines()[0][:120] if str(err).strip() else type(err).__name__
        raise InputError(f"{label}: {path.name} is not a plain state dict ({reason}); refusing to unpickle it") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise InputError(f"{label}: {path.name} holds a {type(state).__name__}, not a state dict")
    return state


def sha256_of(paths: Iterable[Path]) -> str:
    """One SHA-256 over the files' bytes, in the order given, read in blocks."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()
