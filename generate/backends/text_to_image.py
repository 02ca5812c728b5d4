"""Backend: a Stable Diffusion text-to-image pipeline folder (`StableDiffusionPipeline.save_pretrained`,
e.g. stable-diffusion-v1-5/stable-diffusion-v1-5 or stabilityai/sd-turbo), sampled as a
class-conditional model. It needs transformers, the `sd` extra (`pip install -e '.[sd]'`).

Layout: `model_index.json`, `text_encoder/` (CLIPTextModel), `tokenizer/` (CLIPTokenizer),
`unet/` (UNet2DConditionModel), `vae/` (AutoencoderKL), `scheduler/`; optionally `ptgen.json` with
the sampling defaults the model was tuned for, as for the other backends.

Classes are prompts: class i's prompt is the template (`--prompt`, default "a photo of a {}.")
with name i in place of `{}`. The names come from `--class-names FILE` (its first line names
class 0), or are ImageNet-1k's in its index order, so that an ImageNet classifier (`timm:NAME`)
maps onto them by index. All prompts are encoded once, when the generator is made, into
E (classes, tokens, width): the text encoder's last hidden states, which the UNet reads through
cross-attention, as diffusers' pipeline feeds them. A class id conditions on its row of E, a soft
label p on p @ E, the p-weighted mixture of every token's embedding; a one-hot p is therefore
its class id, bit for bit. Guidance contrasts with the empty prompt, as in diffusers' pipeline.

Sampling defaults: DPM-Solver++ (the folder's scheduler config under DPMSolverMultistepScheduler),
25 steps, guidance 2.0. Stable Diffusion's showcase scale, 7.5, buys striking single images by
pulling every sample of a prompt towards a few typical looks; studies that train classifiers on
Stable Diffusion's images (e.g. Sariyildiz et al., "Fake it till you make it", CVPR 2023) found
that a scale of about 2 gives better training data, because a training set needs the variety
that strong guidance removes. A distilled one-step model (sd-turbo) runs with --steps 1
--guidance 0, or with {"defaults": {"steps": 1, "guidance": 0}} in its ptgen.json.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ptcommon.cli import InputError
from ptcommon.inputs import read_class_names

from ..conditioning import mix
from ..generator import Generator, SamplingDefaults, decode_latents, denoise, to_uint8
from .folder import (SCHEDULER_CONFIG, folder_sampler, load_component, pipeline_class, public_config, read_json,
                     read_meta, vae_scale_factor, weights_digest)

DEFAULT_SAMPLER = "DPMSolverMultistepScheduler"
DEFAULT_SAMPLING = SamplingDefaults(steps=25, guidance=2.0)
DEFAULT_PROMPT = "a photo of a {}."
# Prompts per text-encoder call when E is built: 1000 ImageNet prompts in 16 calls.
PROMPTS_PER_CALL = 64
_SUBFOLDERS = ("text_encoder", "tokenizer", "unet", "vae", "scheduler")
_EXTRA = "pip install -e '.[sd]'"
# ImageNet-1k's short names are the first WordNet lemmas of its classes, and three collide (two
# cranes, two maillots); these classes take a name of their own, so that no two share a prompt.
_IMAGENET_RENAMED = {134: "crane bird", 517: "construction crane", 639: "tank suit"}


@functools.cache
def _imagenet_names() -> tuple[str, ...]:
    from timm.data import ImageNetInfo

    info = ImageNetInfo("imagenet-1k")
    return tuple(_IMAGENET_RENAMED.get(i) or info.index_to_description(i).split(",")[0].strip()
                 for i in range(1000))


def imagenet_class_names() -> list[str]:
    """ImageNet-1k's short class names ("tench", "goldfish", ...) in its index order."""
    return list(_imagenet_names())


def check_template(template: str) -> str:
    """A --prompt template: text with one `{}` where the class name goes."""
    count = template.count("{}")
    if count == 0:
        raise InputError(f"--prompt {template!r}: no {{}} in it; put {{}} where the class name goes, e.g. "
                         f"{DEFAULT_PROMPT!r}")
    if count > 1:
        raise InputError(f"--prompt {template!r}: {{}} appears {count} times; give it once, where the class "
                         "name goes")
    return template


def _sample_size(unet_config: dict) -> int:
    size = unet_config.get("sample_size") or 0
    return size if isinstance(size, int) else size[0]


def check_image_size(requested: int | None, unet_config: dict, vae_config: dict, folder: Path) -> int:
    """The image size to sample at: `requested`, if the UNet can take it, else the native one."""
    scale = vae_scale_factor(vae_config)
    if requested is None:
        return _sample_size(unet_config) * scale
    # The UNet halves its latents at every down block but the last, and upsamples back to the
    # sizes it saw on the way down: latents must divide evenly all the way.
    step = scale * 2 ** (len(unet_config.get("down_block_types", ())) - 1)
    if requested % step:
        below = requested // step * step
        nearest = " and ".join(str(s) for s in (below, below + step) if s > 0)
        raise InputError(f"--image-size {requested}: the UNet of {folder} takes multiples of {step} px (its VAE "
                         f"scales by {scale}, its down blocks by {step // scale}); the nearest are {nearest}")
    return requested


def _quiet_transformers():
    """Turn off transformers' loading progress bars, which would interleave with ptgen's output;
    returns how to turn them back on."""
    from transformers.utils import logging

    if not logging.is_progress_bar_enabled():
        return lambda: None
    logging.disable_progress_bar()
    return logging.enable_progress_bar


class TextToImageGenerator(Generator):
    """Samples a Stable Diffusion UNet in the VAE's latent space, conditioned on class prompts."""

    name = "sd"
    network = "unet"
    layout = "model_index.json (StableDiffusionPipeline), text_encoder/, tokenizer/, unet/, vae/, scheduler/"

    @classmethod
    def claims(cls, folder: Path) -> bool:
        # Two text encoders make an SDXL folder, which conditions its UNet differently.
        layout = all((folder / s).is_dir() for s in ("text_encoder", "unet")) and not (folder / "text_encoder_2").is_dir()
        return pipeline_class(folder) == "StableDiffusionPipeline" or layout

    @classmethod
    def describe(cls, folder: Path) -> dict:
        unet = read_json(folder / "unet" / "config.json")
        vae = read_json(folder / "vae" / "config.json")
        # The classes are ImageNet's unless --class-names names others.
        return {"num_classes": len(_imagenet_names()), "image_size": _sample_size(unet) * vae_scale_factor(vae),
                "channels": vae.get("out_channels")}

    def __init__(
        self,
        folder: str | Path,
        device: str = "cpu",
        dtype: torch.dtype = torch.float32,
        class_names: Path | None = None,
        prompt: str = DEFAULT_PROMPT,
        image_size: int | None = None,
        sampler: str | None = DEFAULT_SAMPLER,
        decode_batch: int | None = None,
    ):
        """`class_names`: a file of names, one a line (default: ImageNet-1k's); `prompt`: the
        template they fill; `image_size`: pixels a side (default: the UNet's native size);
        `sampler`: the diffusers scheduler class, configured from the folder's scheduler config
        (None keeps the folder's own class); `decode_batch`: images a VAE decode takes at most
        (None: the whole sampling batch)."""
        self.folder = Path(folder)
        try:
            from transformers import CLIPTextModel, CLIPTokenizer
        except ImportError:
            raise InputError(f"--model {folder}: a text-to-image model needs transformers: {_EXTRA}") from None
        from diffusers import AutoencoderKL, UNet2DConditionModel

        missing = [f"{name}/" for name in _SUBFOLDERS if not (self.folder / name).is_dir()]
        if not missing:
            # The configs are read before any weights, to check --image-size.
            needed = [SCHEDULER_CONFIG, "unet/config.json", "vae/config.json"]
            missing = [name for name in needed if not (self.folder / name).exists()]
        if missing:
            raise InputError(f"--model {folder}: no {', '.join(missing)}; expected a Stable Diffusion pipeline "
                             f"folder: {self.layout}")
        self._template = check_template(prompt)
        self.class_names_file = Path(class_names) if class_names is not None else None
        names = read_class_names(self.class_names_file) if self.class_names_file else imagenet_class_names()
        unet_config = read_json(self.folder / "unet" / "config.json")
        vae_config = read_json(self.folder / "vae" / "config.json")
        self._image_size = check_image_size(image_size, unet_config, vae_config, self.folder)
        self._sampler = folder_sampler(self.folder, sampler)

        unet = load_component(self.folder, UNet2DConditionModel, "unet", low_cpu_mem_usage=False, torch_dtype=dtype)
        # SD's VAE overflows in fp16 (its config says force_upcast): it decodes in fp32 then, as in
        # diffusers' pipeline.
        upcast = dtype == torch.float16 and vae_config.get("force_upcast", True)
        vae = load_component(self.folder, AutoencoderKL, "vae", low_cpu_mem_usage=False,
                             torch_dtype=torch.float32 if upcast else dtype)
        restore = _quiet_transformers()
        try:
            # fp32 whatever --dtype: it runs once per class per run, and E is cast afterwards.
            text_encoder = load_component(self.folder, CLIPTextModel, "text_encoder")
            tokenizer = load_component(self.folder, CLIPTokenizer, "tokenizer")
        finally:
            restore()
        if vae.config.latent_channels != unet.config.in_channels:
            raise InputError(f"--model {folder}: the UNet takes {unet.config.in_channels} channels but the VAE "
                             f"has {vae.config.latent_channels} latent channels (an inpainting UNet takes extra "
                             "channels; ptgen samples text-to-image UNets)")
        width = text_encoder.config.hidden_size
        if unet.config.cross_attention_dim != width:
            raise InputError(f"--model {folder}: the UNet attends to {unet.config.cross_attention_dim}-wide text "
                             f"embeddings but the text encoder makes {width}-wide ones")

        self.device = torch.device(device)
        self.dtype = dtype
        self.decode_batch = decode_batch
        self._names = names
        self.unet = unet.to(self.device).eval()
        self.vae = vae.to(self.device).eval()
        prompts = [self._template.replace("{}", name) for name in names]
        tokens, embeddings = self._encode(text_encoder.to(self.device).eval(), tokenizer, prompts)
        # E stays on the device for the run; the text encoder is no longer needed.
        self._prompts = embeddings[:-1].to(dtype)
        self._empty = embeddings[-1:].to(dtype)
        meta = read_meta(self.folder)
        self._defaults = dataclasses.replace(DEFAULT_SAMPLING, **meta.get("defaults", {}))
        self._fingerprint = {
            "backend": "diffusers-sd",
            "unet": public_config(dict(unet.config)),
            "vae": public_config(dict(vae.config)),
            "text_encoder": public_config(read_json(self.folder / "text_encoder" / "config.json")),
            "scheduler": self._sampler.fingerprint(),
            "unet_sha256": weights_digest(self.folder / "unet"),
            "vae_sha256": weights_digest(self.folder / "vae"),
            "text_encoder_sha256": weights_digest(self.folder / "text_encoder"),
            "class_names": {"count": len(names), "sha256": hashlib.sha256("\n".join(names).encode()).hexdigest()},
            "prompt": self._template,
            # What the text encoder reads: every prompt's token ids, after the tokenizer's own
            # rules and the cut to the encoder's length, which the files alone do not pin down.
            "prompt_tokens_sha256": hashlib.sha256(tokens.numpy().astype("<i8").tobytes()).hexdigest(),
            "image_size": self._image_size,
        }

    @torch.inference_mode()
    def _encode(self, text_encoder: torch.nn.Module, tokenizer, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids and last hidden states of `prompts` and then the empty prompt, PROMPTS_PER_CALL a call."""
        length = min(tokenizer.model_max_length, text_encoder.config.max_position_embeddings)
        self._warn_if_cut(tokenizer, prompts, length)
        batch = tokenizer([*prompts, ""], padding="max_length", max_length=length, truncation=True,
                          return_tensors="pt")
        # Some text encoders are trained to read the padding, and get no mask, as in diffusers' pipeline.
        masked = getattr(text_encoder.config, "use_attention_mask", False)
        rows = []
        for start in range(0, len(batch.input_ids), PROMPTS_PER_CALL):
            ids = batch.input_ids[start : start + PROMPTS_PER_CALL].to(self.device)
            mask = batch.attention_mask[start : start + PROMPTS_PER_CALL].to(self.device) if masked else None
            rows.append(text_encoder(ids, attention_mask=mask)[0])
        return batch.input_ids, torch.cat(rows)

    @staticmethod
    def _warn_if_cut(tokenizer, prompts: list[str], length: int) -> None:
        counts = [len(ids) for ids in tokenizer(prompts, verbose=False).input_ids]
        longest = max(range(len(prompts)), key=counts.__getitem__)
        if counts[longest] > length:
            cut = sum(n > length for n in counts)
            print(f"ptgen: warning: {cut} of {len(prompts)} prompts are longer than the text encoder reads, and are "
                  f"cut to {length} tokens; the longest, {prompts[longest]!r}, has {counts[longest]} "
                  "(shorten its name in --class-names or the --prompt template)", file=sys.stderr)

    @property
    def num_classes(self) -> int:
        return len(self._names)

    @property
    def class_names(self) -> list[str]:
        return self._names

    @property
    def image_size(self) -> int:
        return self._image_size

    @property
    def channels(self) -> int:
        return self.vae.config.out_channels

    @property
    def supports_guidance(self) -> bool:
        return True  # the empty prompt is the unconditional input

    @property
    def defaults(self) -> SamplingDefaults:
        return self._defaults

    def fingerprint(self) -> dict:
        return self._fingerprint

    def prompt_embeddings(self, condition: torch.Tensor, guided: bool) -> torch.Tensor:
        """What the UNet attends to: E's rows for class ids or p @ E for probabilities, then
        (guided) as many copies of the empty prompt's embedding."""
        context = mix(self._prompts, condition, self.num_classes)
        return torch.cat([context, self._empty.expand_as(context)]) if guided else context

    @torch.inference_mode()
    def sample(
        self, condition: torch.Tensor, seeds: Sequence[int], steps: int, guidance: float
    ) -> np.ndarray:
        context = self.prompt_embeddings(condition, guidance > 1.0)
        size = self._image_size // vae_scale_factor(self.vae.config)
        scheduler, generators, x = self._sampler.start(steps, seeds, len(condition),
                                                       (self.unet.config.in_channels, size, size),
                                                       self.device, self.dtype)

        def predict(x_in: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return self.unet(x_in, t, encoder_hidden_states=context).sample

        x = denoise(scheduler, x, generators, predict, guidance)
        return to_uint8(decode_latents(self.vae, x, self.decode_batch))
