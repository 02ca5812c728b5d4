"""Backend: a diffusers DiT pipeline folder (`DiTPipeline.save_pretrained`, e.g. facebook/DiT-XL-2-256).

Layout: `transformer/` (DiTTransformer2DModel), `vae/` (AutoencoderKL), `scheduler/`, and
`model_index.json`, whose `id2label` (string keys "0", "1", ...) names the classes when present;
optionally `ptgen.json` with the sampling defaults the model was tuned for, as for the UNet backend.
The null class of classifier-free guidance is row `num_embeds_ada_norm` of the label tables, read
from the transformer's config rather than fixed at 1000 as in diffusers' `DiTPipeline`.

Guidance combines all latent channels of the noise prediction (eps), as `DiTPipeline` does; the
original DiT code guides only the first 3 of the 4, an artefact its authors keep only to reproduce
their reported numbers. With a learned sigma the transformer also returns a variance half: it is
never guided, and is taken from the conditional half when the scheduler reads a learned variance
(DDPM with `variance_type` "learned"/"learned_range"), dropped otherwise, as `DiTPipeline` drops it.
The default sampler is DPM-Solver++ (the folder's scheduler config under
`DPMSolverMultistepScheduler`, as diffusers' DiT docs swap in) at 25 steps and guidance 1.5, the
DiT paper's FID-optimal scale (its 4.0 is for showcase images, which trade diversity for
fidelity; a pseudo dataset needs the diversity).
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ptcommon.cli import InputError

from ..conditioning import mix
from ..generator import (Generator, GuidanceRange, SamplingDefaults, Start, batch_guidance, check_condition,
                         decode_latents, denoise, encode_images, is_guided, to_uint8)
from .folder import (SCHEDULER_CONFIG, folder_sampler, load_component, pipeline_class, public_config, read_json,
                     read_meta, vae_scale_factor, weights_digest)

DEFAULT_SAMPLER = "DPMSolverMultistepScheduler"
DEFAULT_SAMPLING = SamplingDefaults(steps=25, guidance=1.5)
_SUBFOLDERS = ("transformer", "vae", "scheduler")
# Schedulers that split a learned variance off the channels themselves. DPM-Solver's "learned"
# mode instead keeps channels [:3] (pixel-space models), which would drop a latent channel, so
# every other scheduler is built without a variance_type and gets eps alone.
_VARIANCE_READERS = ("DDPMScheduler", "DDPMParallelScheduler")
_LEARNED = ("learned", "learned_range")


class MixedLabelEmbedding(nn.Module):
    """Stands in for diffusers' `LabelEmbedding` (one per DiT block): rows of that block's label
    table for class ids, `p @ table` for a probability matrix over the table's rows.

    The transformer passes `class_labels` untouched to every block and again to block 0's
    embedding for the final layer, so a float matrix given as `class_labels` reaches every copy of
    the table and that final use. Sampling only: there is no label dropout, which `LabelEmbedding`
    applies in training mode alone.
    """

    def __init__(self, embedding_table: nn.Embedding):
        super().__init__()
        # Same attribute name as LabelEmbedding's, so parameter names and counts are unchanged.
        self.embedding_table = embedding_table

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        return mix(self.embedding_table.weight, labels, self.embedding_table.num_embeddings)


def install_mixed_label_embeddings(transformer: nn.Module) -> int:
    """Replace every `LabelEmbedding` inside `transformer` by a `MixedLabelEmbedding`; returns how many."""
    from diffusers.models.embeddings import LabelEmbedding

    found = [
        (parent, name, child)
        for parent in transformer.modules()
        for name, child in parent.named_children()
        if isinstance(child, LabelEmbedding)
    ]
    for parent, name, child in found:
        setattr(parent, name, MixedLabelEmbedding(child.embedding_table))
    return len(found)


class DiTGenerator(Generator):
    """Samples a class-conditional DiT in the VAE's latent space and decodes the latents to images."""

    name = "dit"
    network = "transformer"
    layout = "model_index.json (DiTPipeline), transformer/, vae/, scheduler/"

    @classmethod
    def claims(cls, folder: Path) -> bool:
        return pipeline_class(folder) == "DiTPipeline" or all((folder / s).is_dir() for s in ("transformer", "vae"))

    @classmethod
    def describe(cls, folder: Path) -> dict:
        transformer = read_json(folder / "transformer" / "config.json")
        vae = read_json(folder / "vae" / "config.json")
        return {"num_classes": transformer.get("num_embeds_ada_norm"),
                "image_size": transformer.get("sample_size", 0) * vae_scale_factor(vae),
                "channels": vae.get("out_channels")}

    def __init__(
        self,
        folder: str | Path,
        device: str = "cpu",
        dtype: torch.dtype = torch.float32,
        sampler: str | None = DEFAULT_SAMPLER,
        decode_batch: int | None = None,
    ):
        """`sampler` names the diffusers scheduler class to sample with, configured from the
        folder's scheduler config; None keeps the folder's own class. `decode_batch`: images a VAE
        decode takes at most (None: the whole sampling batch)."""
        from diffusers import AutoencoderKL, DiTTransformer2DModel

        self.folder = Path(folder)
        missing = [f"{name}/" for name in _SUBFOLDERS if not (self.folder / name).is_dir()]
        if not missing and not (self.folder / SCHEDULER_CONFIG).exists():
            missing = [SCHEDULER_CONFIG]
        if missing:
            raise InputError(
                f"--model {folder}: no {', '.join(missing)}; expected a DiT pipeline folder with "
                "transformer/ (config.json + weights), vae/ (config.json + weights) and "
                "scheduler/scheduler_config.json"
            )
        scheduling = folder_sampler(self.folder, sampler)

        transformer = self._load(DiTTransformer2DModel, "transformer", dtype)
        vae = self._load(AutoencoderKL, "vae", dtype)
        config = transformer.config
        self._latent_channels = config.in_channels
        learned_sigma = transformer.out_channels == 2 * config.in_channels
        if not learned_sigma and transformer.out_channels != config.in_channels:
            raise InputError(
                f"--model {folder}: the transformer maps {config.in_channels} channels to "
                f"{transformer.out_channels}; expected as many, or twice as many (learned sigma)"
            )
        if vae.config.latent_channels != config.in_channels:
            raise InputError(
                f"--model {folder}: the VAE has {vae.config.latent_channels} latent channels but the "
                f"transformer takes {config.in_channels}"
            )
        if install_mixed_label_embeddings(transformer) == 0:
            raise InputError(
                f"--model {folder}: the transformer has no class-label embedding; "
                "ptgen needs a class-conditional DiT"
            )
        self._rows = transformer.transformer_blocks[0].norm1.emb.class_embedder.embedding_table.num_embeddings

        if scheduling.cls.__name__ not in _VARIANCE_READERS:
            config_without = {k: v for k, v in scheduling.config.items() if k != "variance_type"}
            scheduling = dataclasses.replace(scheduling, config=config_without)
        self._pass_variance = scheduling.config.get("variance_type") in _LEARNED
        if self._pass_variance and not learned_sigma:
            raise InputError(
                f"--model {folder}: the scheduler reads a learned variance "
                f"({scheduling.config['variance_type']}) but the transformer predicts none"
            )
        self._sampler = scheduling

        self._class_names = self._read_class_names(config.num_embeds_ada_norm)
        meta = read_meta(self.folder)
        self._defaults = dataclasses.replace(DEFAULT_SAMPLING, **meta.get("defaults", {}))

        self.device = torch.device(device)
        self.dtype = dtype
        self.decode_batch = decode_batch
        self.transformer = transformer.to(self.device).eval()
        self.vae = vae.to(self.device).eval()
        self._fingerprint = {
            "backend": "diffusers-dit",
            "transformer": public_config(dict(config)),
            "vae": public_config(dict(vae.config)),
            "scheduler": scheduling.fingerprint(),
            "transformer_sha256": weights_digest(self.folder / "transformer"),
            "vae_sha256": weights_digest(self.folder / "vae"),
            "guided_channels": "all",
        }

    def _load(self, model_cls: type[nn.Module], subfolder: str, dtype: torch.dtype) -> nn.Module:
        return load_component(self.folder, model_cls, subfolder, low_cpu_mem_usage=False, torch_dtype=dtype)

    def _read_class_names(self, n: int) -> list[str]:
        index_path = self.folder / "model_index.json"
        id2label = json.loads(index_path.read_text()).get("id2label") if index_path.exists() else None
        if not id2label:
            return [f"class_{i}" for i in range(n)]
        if sorted(id2label) != sorted(str(i) for i in range(n)):
            raise InputError(
                f"--model {self.folder}: model_index.json's id2label names {len(id2label)} classes "
                f"but the transformer has {n} (keys must be \"0\" to \"{n - 1}\")"
            )
        return [id2label[str(i)] for i in range(n)]

    @property
    def num_classes(self) -> int:
        return self.transformer.config.num_embeds_ada_norm

    @property
    def image_size(self) -> int:
        return self.transformer.config.sample_size * vae_scale_factor(self.vae.config)

    @property
    def channels(self) -> int:
        return self.vae.config.out_channels

    @property
    def supports_guidance(self) -> bool:
        # A LabelEmbedding trained with class dropout has one extra row: the null class.
        return self._rows > self.num_classes

    @property
    def class_names(self) -> list[str]:
        return self._class_names

    @property
    def defaults(self) -> SamplingDefaults:
        return self._defaults

    def fingerprint(self) -> dict:
        return self._fingerprint

    def class_labels(self, condition: torch.Tensor, guided: bool) -> torch.Tensor:
        """What the transformer gets as `class_labels`: the conditions, then (guided) as many null
        classes; ids stay ids, probabilities become a matrix over all table rows."""
        null = self.num_classes
        if condition.is_floating_point():
            labels = nn.functional.pad(condition, (0, self._rows - self.num_classes))
            if guided:
                null_row = torch.zeros(self._rows, dtype=labels.dtype, device=labels.device)
                null_row[null] = 1
                labels = torch.cat([labels, null_row.expand_as(labels)])
        else:
            labels = torch.cat([condition, torch.full_like(condition, null)]) if guided else condition
        return labels.to(self.device)

    @torch.inference_mode()
    def sample(
        self, condition: torch.Tensor, seeds: Sequence[int], steps: int, guidance: float | GuidanceRange, *,
        start: Start | None = None,
    ) -> np.ndarray:
        check_condition(condition, self.num_classes)
        scales = batch_guidance(guidance, seeds)
        guided = is_guided(scales)
        if guided and not self.supports_guidance:
            raise ValueError("classifier-free guidance needs a model trained with a null class")
        size = self.transformer.config.sample_size
        scheduler, generators, x, begin = self._sampler.start(
            steps, seeds, len(condition), (self._latent_channels, size, size), self.device, self.dtype, start,
            functools.partial(encode_images, self.vae, batch=self.decode_batch))

        labels = self.class_labels(condition, guided)
        c = self._latent_channels

        def predict(x_in: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            out = self.transformer(x_in, timestep=t.expand(len(x_in)), class_labels=labels).sample
            return out if self._pass_variance else out[:, :c]

        x = denoise(scheduler, x, generators, predict, scales, guided_channels=c, begin=begin)
        return to_uint8(decode_latents(self.vae, x, self.decode_batch))
