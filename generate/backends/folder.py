"""What every backend reads from a diffusers model folder: its own description, optional ptgen
metadata, and the fingerprint parts that identify weights and configs wherever the folder lies."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import torch

from ptcommon.cli import InputError
from ptcommon.weights import sha256_of

from ..generator import Start, seeded_latents, seeded_noise, start_latents

if TYPE_CHECKING:
    from diffusers import SchedulerMixin

INDEX_FILE = "model_index.json"
META_FILE = "ptgen.json"
SCHEDULER_CONFIG = "scheduler/scheduler_config.json"
_WEIGHT_SUFFIXES = (".safetensors", ".bin")


def read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def pipeline_class(folder: Path) -> str | None:
    """The `_class_name` of diffusers' `model_index.json` (e.g. "DiTPipeline"), if the folder has one."""
    return read_json(folder / INDEX_FILE).get("_class_name")


def read_meta(folder: Path) -> dict:
    """`ptgen.json`: class names, null class, sampling defaults, templates (all optional)."""
    return read_json(folder / META_FILE)


def public_config(config: dict) -> dict:
    """Drop diffusers' bookkeeping keys (paths, library version) that do not change the samples."""
    return {k: v for k, v in config.items() if not k.startswith("_")}


def weights_digest(folder: Path) -> str:
    """One SHA-256 over a model folder's weight files, in name order."""
    return sha256_of(sorted(p for p in folder.iterdir() if p.suffix in _WEIGHT_SUFFIXES))


def vae_scale_factor(vae_config: dict) -> int:
    """How many pixels one latent covers: each VAE block but the last halves the resolution, as in
    diffusers' own pipelines."""
    return 2 ** (len(vae_config.get("block_out_channels", [0])) - 1)


def load_component(folder: Path, model_cls: Any, subfolder: str, **kwargs: Any) -> Any:
    """`model_cls.from_pretrained(folder, subfolder=subfolder, **kwargs)`; a folder it cannot load
    is a one-line InputError."""
    try:
        return model_cls.from_pretrained(folder, subfolder=subfolder, **kwargs)
    except (OSError, ValueError) as err:  # missing-weights and bad-config errors of diffusers and transformers
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(
            f"--model {folder}: cannot load {subfolder}/ as {model_cls.__name__}: {first_line}"
        ) from None


@dataclass(frozen=True)
class Sampler:
    """A diffusers scheduler class and the config to build it from."""

    cls: type[SchedulerMixin]
    config: dict

    def scheduler(self, steps: int, device: torch.device) -> SchedulerMixin:
        """A fresh scheduler set to `steps`: one per batch, since multistep solvers keep state between steps."""
        scheduler = self.cls.from_config(self.config)
        scheduler.set_timesteps(steps, device=device)
        return scheduler

    def start(self, steps: int, seeds: Sequence[int], conditions: int, shape: tuple[int, ...],
              device: torch.device, dtype: torch.dtype, start: Start | None = None,
              encode: Callable[[torch.Tensor], torch.Tensor] | None = None,
              ) -> tuple[SchedulerMixin, list[torch.Generator], torch.Tensor, int]:
        """What every backend's sampling loop begins with: a fresh scheduler for `steps`, each
        sample's initial noise (of `shape`) from its own seed, one seed for each of `conditions`,
        and the index of the first timestep to run (`denoise`'s `begin`). With `start` the samples
        begin from its images instead, taken into the model's space by `encode` (a latent model's
        VAE; None: the model works on pixels) and noised with that same noise (`start_latents`)."""
        if len(seeds) != conditions:
            raise ValueError(f"{len(seeds)} seeds for {conditions} conditions")
        scheduler = self.scheduler(steps, device)
        if start is None:
            generators, x = seeded_latents(scheduler, seeds, shape, device, dtype)
            return scheduler, generators, x, 0
        x0 = start.images if encode is None else encode(start.images)
        if tuple(x0.shape) != (conditions, *shape):
            raise ValueError(f"start images of shape {tuple(x0.shape)} in the model's space; "
                             f"expected {(conditions, *shape)}")
        generators, noise = seeded_noise(seeds, shape, device, dtype)
        x, begin = start_latents(scheduler, x0.to(device, dtype), noise, steps, start.strength)
        return scheduler, generators, x, begin

    def fingerprint(self) -> dict:
        return {"class": self.cls.__name__, **public_config(self.config)}


def folder_sampler(folder: Path, sampler: str | None = None) -> Sampler:
    """The folder's scheduler config under the scheduler class `sampler` (None: the folder's own class)."""
    import diffusers

    path = folder / SCHEDULER_CONFIG
    if not path.exists():
        raise InputError(f"--model {folder}: no {SCHEDULER_CONFIG}; expected diffusers' folder layout")
    config = json.loads(path.read_text())
    name = sampler or config.get("_class_name", "")
    cls = getattr(diffusers, name, None)
    if cls is None:
        raise InputError(f"--model {folder}: unknown scheduler class {name!r}; expected one of diffusers' schedulers")
    return Sampler(cls, config)
