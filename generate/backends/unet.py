"""Backend: a diffusers folder holding a class-conditional `UNet2DModel` and a scheduler.

Layout (diffusers' own): `unet/` (config + weights), `scheduler/` (scheduler_config.json), and
optionally `ptgen.json` with class names, whether the last embedding row is the null class
used for classifier-free guidance, the sampling defaults the model was tuned for, and the name
of a template file: a table of one image per class (same rows as the embedding table) that the
UNet sees as extra input channels, a spatial class condition beside the embedding.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ptcommon.cli import InputError
from ptcommon.weights import sha256_of

from ..conditioning import mix
from ..generator import (Generator, GuidanceRange, SamplingDefaults, Start, batch_guidance, denoise, is_guided,
                         to_uint8)
from .folder import META_FILE, folder_sampler, pipeline_class, public_config, read_json, read_meta, weights_digest


class UNetGenerator(Generator):
    """Samples a class-conditional UNet2DModel with its scheduler.

    Soft labels condition on the probability-weighted mixture of the class-embedding rows,
    `p @ E`, computed as one matrix product. To feed that mixture through the UNet, the
    embedding table is taken out of the model and replaced by an identity: the UNet then adds
    whatever vector it is given to the timestep embedding, exactly as it would add a table row.
    """

    name = "unet"
    network = "unet"
    layout = "unet/ (a class-conditional UNet2DModel), scheduler/, optionally ptgen.json"

    @classmethod
    def claims(cls, folder: Path) -> bool:
        # Text-to-image pipelines also hold a unet/; theirs is a UNet2DConditionModel.
        return (folder / "unet").is_dir() and pipeline_class(folder) is None

    @classmethod
    def describe(cls, folder: Path) -> dict:
        config = read_json(folder / "unet" / "config.json")
        rows, size = config.get("num_class_embeds"), config.get("sample_size")
        null = bool(read_meta(folder).get("null_class"))
        return {"num_classes": rows - 1 if rows and null else rows,
                "image_size": size if isinstance(size, int) or size is None else size[0],
                "channels": config.get("out_channels")}

    def __init__(self, folder: str | Path, device: str = "cpu", dtype: torch.dtype = torch.float32):
        from diffusers import UNet2DModel

        self.folder = Path(folder)
        if not (self.folder / "unet").is_dir():
            raise InputError(
                f"--model {folder}: no unet/ subfolder; expected a diffusers folder with unet/ and scheduler/"
            )
        unet = UNet2DModel.from_pretrained(self.folder, subfolder="unet", low_cpu_mem_usage=False, torch_dtype=dtype)
        table = unet.class_embedding
        if unet.config.num_class_embeds is None or not isinstance(table, nn.Embedding):
            raise InputError(
                f"--model {folder}: the UNet is not class-conditional (its config sets no num_class_embeds); "
                "ptgen needs a model with a class-embedding table"
            )
        self._sampler = folder_sampler(self.folder)

        meta = read_meta(self.folder)
        rows = unet.config.num_class_embeds
        self._has_null = bool(meta.get("null_class", False))
        # The null class of guidance: the table's last row, when the model was trained with one.
        self._null = rows - 1 if self._has_null else None
        n = rows - 1 if self._has_null else rows
        self._num_classes = n
        self._class_names = list(meta.get("class_names") or [f"class_{i}" for i in range(n)])
        if len(self._class_names) != n:
            raise InputError(
                f"--model {folder}: {META_FILE} names {len(self._class_names)} classes but the UNet has {n}"
            )
        self._defaults = SamplingDefaults(**meta.get("defaults", {}))
        self._templates = self._load_templates(meta.get("template"), rows, unet.config)

        self.device = torch.device(device)
        self.dtype = dtype
        self._table = table.weight.detach().to(self.device)
        if self._templates is not None:
            self._templates = self._templates.to(self.device, self._table.dtype)
        unet.class_embedding = nn.Identity()
        self.unet = unet.to(self.device).eval()
        self._fingerprint = {
            "backend": "diffusers-unet2d",
            "unet": public_config(dict(unet.config)),
            "scheduler": self._sampler.fingerprint(),
            "weights_sha256": weights_digest(self.folder / "unet"),
            "template": sha256_of([self.folder / meta["template"]])
            if self._templates is not None
            else None,
            "null_class": self._has_null,
        }

    @property
    def num_classes(self) -> int:
        return self._num_classes

    @property
    def class_names(self) -> list[str]:
        return self._class_names

    @property
    def image_size(self) -> int:
        size = self.unet.config.sample_size
        return size if isinstance(size, int) else size[0]

    @property
    def channels(self) -> int:
        return self.unet.config.out_channels

    @property
    def supports_guidance(self) -> bool:
        return self._has_null

    @property
    def defaults(self) -> SamplingDefaults:
        return self._defaults

    def fingerprint(self) -> dict:
        return self._fingerprint

    def _load_templates(self, name: str | None, rows: int, config) -> torch.Tensor | None:
        if name is None:
            return None
        from safetensors.torch import load_file

        templates = load_file(self.folder / name)["templates"]
        extra = config.in_channels - config.out_channels
        if templates.shape[0] != rows or templates.shape[1] != extra:
            raise InputError(
                f"--model {self.folder}: {name} holds templates of shape {tuple(templates.shape)}; "
                f"expected {rows} rows of {extra} channels"
            )
        return templates.flatten(1)

    def class_embedding(self, condition: torch.Tensor) -> torch.Tensor:
        """Rows of the embedding table for class ids, or their mixture for soft labels."""
        return mix(self._table, condition, self._num_classes)

    @torch.inference_mode()
    def sample(
        self, condition: torch.Tensor, seeds: Sequence[int], steps: int, guidance: float | GuidanceRange, *,
        start: Start | None = None,
    ) -> np.ndarray:
        scales = batch_guidance(guidance, seeds)
        guided = is_guided(scales)
        if guided and not self._has_null:
            raise ValueError("classifier-free guidance needs a model trained with a null class")
        scheduler, generators, x, begin = self._sampler.start(steps, seeds, len(condition),
                                                              (self.channels, self.image_size, self.image_size),
                                                              self.device, self.dtype, start)

        emb = self.class_embedding(condition)
        if guided:
            emb = torch.cat([emb, self._table[self._null].expand_as(emb)])
        template = None
        if self._templates is not None:
            template = mix(self._templates, condition, self._num_classes)
            if guided:
                template = torch.cat([template, self._templates[self._null].expand_as(template)])
            template = template.view(len(emb), -1, self.image_size, self.image_size).to(self.dtype)

        def predict(x_in: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            if template is not None:
                x_in = torch.cat([x_in, template], dim=1)
            return self.unet(x_in, t, class_labels=emb).sample

        return to_uint8(denoise(scheduler, x, generators, predict, scales, begin=begin))
