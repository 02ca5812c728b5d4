"""The interface every generator backend implements.

The rest of the generation stage (the work plan, the shard writer, PCS) talks to generators only
through this class, so a new backend (a DiT pipeline, a GAN) plugs in by implementing it.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
import torch

if TYPE_CHECKING:
    from diffusers import AutoencoderKL, SchedulerMixin


@dataclass(frozen=True)
class SamplingDefaults:
    """The settings a model was tuned for; the CLI uses them when a flag is left out."""

    steps: int = 25
    guidance: float = 1.0


class Generator(abc.ABC):
    """A class-conditional image generator over a fixed set of source classes.

    A backend also says, from a folder's files alone, whether the folder is its kind (`claims`)
    and what it holds (`describe`), so that `--model` picks the backend from the folder's own
    description and `ptgen models` can report on a folder without loading weights.
    """

    name: str = ""  # short backend name, as `ptgen models` lists it
    layout: str = ""  # the files a folder of this backend has, for error messages
    network: str = ""  # the attribute holding the network every sampling step runs (what --compile compiles)
    # The file a flag gave the classes in (text-to-image's --class-names), for messages about
    # them; None when the model carries its own classes.
    class_names_file: Path | None = None

    @classmethod
    @abc.abstractmethod
    def claims(cls, folder: Path) -> bool:
        """Whether `folder` is a model of this backend (from its description files, no weights read)."""

    @classmethod
    @abc.abstractmethod
    def describe(cls, folder: Path) -> dict:
        """{num_classes, image_size, channels} of the model in `folder`, from its config files only."""

    @property
    @abc.abstractmethod
    def num_classes(self) -> int: ...

    @property
    @abc.abstractmethod
    def class_names(self) -> list[str]: ...

    @property
    @abc.abstractmethod
    def image_size(self) -> int: ...

    @property
    @abc.abstractmethod
    def channels(self) -> int: ...

    @property
    @abc.abstractmethod
    def supports_guidance(self) -> bool:
        """Whether classifier-free guidance is possible (the model knows an unconditional class)."""

    @property
    def defaults(self) -> SamplingDefaults:
        return SamplingDefaults()

    def compile(self) -> None:
        """Replace the per-step network by its torch.compile'd form (`ptgen synth --compile`)."""
        setattr(self, self.network, torch.compile(getattr(self, self.network)))

    @abc.abstractmethod
    def fingerprint(self) -> dict:
        """What identifies the weights and sampler, independent of where the files lie.

        It goes into a dataset's config hash, so moving a model folder does not invalidate its shards
        while swapping the weights does.
        """

    @abc.abstractmethod
    def sample(
        self,
        condition: torch.Tensor,
        seeds: Sequence[int],
        steps: int,
        guidance: float,
    ) -> np.ndarray:
        """Draw one image per row of `condition`.

        `condition` is either a LongTensor of class ids, shape (B,), or a float tensor of class
        probabilities, shape (B, num_classes) (soft labels, used by pseudo conditional sampling).
        Sample b uses only `seeds[b]` for all of its randomness, so an image does not depend on
        which other images share its batch. Returns uint8 images shaped (B, H, W, C).
        """


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Map model-space images in [-1, 1], shaped (B, C, H, W), to uint8 (B, H, W, C)."""
    scaled = ((images.float().clamp(-1, 1) + 1) * 127.5).round()
    return scaled.to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def check_condition(condition: torch.Tensor, num_classes: int) -> None:
    """Reject a condition tensor that is neither class ids nor a probability matrix over the classes."""
    if condition.is_floating_point():
        if condition.dim() != 2 or condition.shape[1] != num_classes:
            raise ValueError(
                f"soft labels must have shape (batch, {num_classes}); got {tuple(condition.shape)}"
            )
        return
    if condition.dim() != 1:
        raise ValueError(f"class ids must have shape (batch,); got {tuple(condition.shape)}")
    if len(condition) and (int(condition.min()) < 0 or int(condition.max()) >= num_classes):
        raise ValueError(f"class ids must lie in [0, {num_classes}); got {condition.tolist()}")


def seeded_latents(
    scheduler: SchedulerMixin,
    seeds: Sequence[int],
    shape: tuple[int, ...],
    device: torch.device,
    dtype: torch.dtype,
) -> tuple[list[torch.Generator], torch.Tensor]:
    """Initial noise for a batch, each `shape`-sized row from its own CPU generator seeded with its
    seed, scaled for `scheduler`; also the generators, for the scheduler's steps.

    Passing the same generators to `scheduler.step` keeps an ancestral sampler's per-step noise
    per sample too, so an image depends on its own seed only, whatever its batch-mates and whatever
    the device (DiTPipeline draws the whole batch from one generator).
    """
    from diffusers.utils.torch_utils import randn_tensor

    generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
    x = randn_tensor((len(seeds), *shape), generator=generators, device=device, dtype=dtype)
    return generators, x * scheduler.init_noise_sigma


def denoise(
    scheduler: SchedulerMixin,
    x: torch.Tensor,
    generators: list[torch.Generator],
    predict: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    guidance: float,
    guided_channels: int | None = None,
) -> torch.Tensor:
    """Run `scheduler`'s steps from the noise `x` (from `seeded_latents`, with its `generators`).

    `predict(x_in, t)` is one call of the network. With guidance > 1, `x_in` holds the batch twice
    and `predict` conditions the first copy and leaves the second unconditional, so that one call
    serves both; the step then takes uncond + guidance * (cond - uncond) over the first
    `guided_channels` channels (all when None) and the remaining channels (a learned variance)
    from the conditional half. Otherwise `predict` gets the conditional rows alone.
    """
    guided = guidance > 1.0
    for t in scheduler.timesteps:
        x_in = scheduler.scale_model_input(x, t)
        out = predict(torch.cat([x_in, x_in]) if guided else x_in, t)
        if guided:
            cond, uncond = out.chunk(2)
            c = guided_channels if guided_channels is not None else out.shape[1]
            out = uncond[:, :c] + guidance * (cond[:, :c] - uncond[:, :c])
            if c < cond.shape[1]:
                out = torch.cat([out, cond[:, c:]], dim=1)
        x = scheduler.step(out, t, x, generator=generators).prev_sample
    return x


def decode_latents(vae: AutoencoderKL, latents: torch.Tensor, batch: int | None = None) -> torch.Tensor:
    """Images in [-1, 1] from a latent diffusion model's latents, `batch` at a time (None: all in
    one decode). The decoder treats each image on its own, so `batch` bounds memory only.

    The latents are unscaled by the VAE's `scaling_factor` and shifted by its `shift_factor` where
    its config has one, and cast to the VAE's dtype, which a backend may keep at fp32 when the VAE
    overflows in fp16 (its config's `force_upcast`).
    """
    config = vae.config
    latents = latents / config.scaling_factor
    if getattr(config, "shift_factor", None) is not None:
        latents = latents + config.shift_factor
    latents = latents.to(vae.dtype)
    return torch.cat([vae.decode(part).sample for part in latents.split(batch or len(latents))])


