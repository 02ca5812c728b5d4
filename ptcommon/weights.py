"""Weights files that came from elsewhere: read without running pickled code, and identified by hash.

Both stages load weights a user brings (a BigGAN's checkpoint, a timm classifier's state dict);
a pickle can run code when loaded, so a state dict is read from safetensors or under
`torch.load(weights_only=True)`, and anything else is a one-line refusal.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path
from typing import Iterable

import torch

from .cli import InputError


def read_state_dict(path: Path, label: str) -> dict[str, torch.Tensor]:
    """The tensors of `path` (`.safetensors`, else a torch file read under weights_only); training
    checkpoints that nest them under `state_dict` or `model` are unwrapped (timm's train.py writes
    `state_dict`, with its arguments as an argparse Namespace). `label` starts the error."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        # timm's train.py keeps its argparse Namespace beside the weights: plain attributes, safe to rebuild.
        with torch.serialization.safe_globals([argparse.Namespace]):
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


def first_mismatch(model_state: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> str | None:
    """The first key, in the model's order, that STATE lacks or holds in another shape, else the first
    key of STATE the model lacks, said as a phrase; None when STATE fits."""
    for key, value in model_state.items():
        if key not in state:
            return f"first mismatched key {key!r} is missing from the file"
        if tuple(state[key].shape) != tuple(value.shape):
            return (f"first mismatched key {key!r} has shape {tuple(state[key].shape)} in the file, "
                    f"{tuple(value.shape)} in the model")
    extra = next((k for k in state if k not in model_state), None)
    return None if extra is None else f"first mismatched key {extra!r} is in the file but not in the model"


def load_fitting(model: torch.nn.Module, state: dict[str, torch.Tensor], label: str, arch: str,
                 skip: tuple[str, ...] = ()) -> None:
    """Load STATE into MODEL, leaving out keys under the prefixes SKIP (a head to be replaced) on both
    sides; weights of another architecture are a one-line refusal naming the first mismatched key."""
    def kept(d: dict) -> dict:
        return {k: v for k, v in d.items() if not any(k == p or k.startswith(p + ".") for p in skip)}

    wanted, given = kept(model.state_dict()), kept(state)
    problem = first_mismatch(wanted, given)
    if problem is not None:
        raise InputError(f"{label}: does not fit {arch} ({problem}); pass weights of {arch}")
    model.load_state_dict(given, strict=False)


def sha256_of(paths: Iterable[Path]) -> str:
    """One SHA-256 over the files' bytes, in the order given, read in blocks."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()
