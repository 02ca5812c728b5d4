"""The interface every generator backend implements.

The rest of the generation stage (the work plan, the shard writer, PCS) talks to generators only
through this class, so a new backend (a DiT pipeline, a GAN) plugs in by implementing it.
"""

from __future__ import annotations

import abc
import inspect
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
import torch

from ptcommon.cli import InputError

if TYPE_CHECKING:
    from diffusers import AutoencoderKL, SchedulerMixin


# Streams a sample's seed feeds besides its noise (which torch draws from the seed itself), one a
# purpose, so that drawing a prompt or a guidance scale leaves the noise as it is.
PROMPT_STREAM = 1
GUIDANCE_STREAM = 2
CANDIDATE_STREAM = 3  # the seeds of a filtered sample's further candidates (generate/filtering.py)


def seed_word(seed: int, stream: int) -> int:
    """A 64-bit word from a sample's seed for one purpose (`stream`): the first uint64 of NumPy's
    SeedSequence([seed, stream]), an algorithm NumPy keeps fixed across releases."""
    return int(np.random.SeedSequence([int(seed), stream]).generate_state(1, np.uint64)[0])


def _number(value: float) -> str:
    return str(int(value)) if value.is_integer() else repr(value)


class GuidanceRange(str):
    """`--guidance LO:HI`: each sample's classifier-free guidance scale, drawn uniformly in [LO, HI]
    from its seed. A str, canonical ("1:3", "1.5:4"), so that the settings, dataset.json and the
    config hash hold it as text."""

    low: float
    high: float

    def __new__(cls, low: float, high: float) -> GuidanceRange:
        low, high = float(low), float(high)
        if not 0 <= low <= high < float("inf"):
            raise ValueError(f"a guidance range needs 0 <= LO <= HI, finite; got {low}:{high}")
        text = super().__new__(cls, f"{_number(low)}:{_number(high)}")
        text.low, text.high = low, high
        return text

    def __getnewargs__(self) -> tuple[float, float]:  # copies (dataclasses.asdict) rebuild it from its ends
        return self.low, self.high

    def scale(self, seed: int) -> float:
        """Sample `seed`'s scale: LO + (HI - LO) * u, u in [0, 1) from the top 53 bits of its guidance word."""
        u = (seed_word(seed, GUIDANCE_STREAM) >> 11) * 2.0**-53
        return self.low + (self.high - self.low) * u


def batch_guidance(guidance: float | GuidanceRange, seeds: Sequence[int]) -> float | torch.Tensor:
    """What `denoise` takes for a batch: the one scale as it is, or for a range each sample's scale
    (float64, shape (B,)). A range at or below 1 guides no sample: 1.0, the unguided path."""
    if not isinstance(guidance, GuidanceRange):
        return guidance
    if guidance.high <= 1.0:
        return 1.0
    return torch.tensor([guidance.scale(s) for s in seeds], dtype=torch.float64)


def is_guided(scales: float | torch.Tensor) -> bool:
    """Whether `denoise` runs the unconditional rows for SCALES (from `batch_guidance`): a range
    above 1 runs them for its whole batch, so that no row's path depends on its batch-mates."""
    return isinstance(scales, torch.Tensor) or scales > 1.0


@dataclass(frozen=True)
class SamplingDefaults:
    """The settings a model was tuned for; the CLI uses them when a flag is left out."""

    steps: int = 25
    guidance: float = 1.0


@dataclass(frozen=True)
class Start:
    """Images that sampling begins from instead of pure noise (SDEdit; `ptgen pseudo --strength`):
    each is noised with its sample's own seeded noise to the step `strength` names, and only the
    steps from there on run, so that 1 would be sampling from noise and less keeps more of the image."""

    images: torch.Tensor  # float (B, C, H, W) in [-1, 1], at the generator's image size and channels
    strength: float  # in (0, 1)


class Generator(abc.ABC):
    """A class-conditional image generator over a fixed set of source classes.

    A backend also says, from a folder's files alone, whether the folder is its kind (`claims`)
    and what it holds (`describe`), so that `--model` picks the backend from the folder's own
    description and `ptgen models` can report on a folder without loading weights.
    """

    name: str = ""  # short backend name, as `ptgen models` lists it
    layout: str = ""  # the files a folder of this backend has, for error messages
    network: str = ""  # the attribute holding the network every sampling step runs (what --compile compiles)
    device: torch.device  # where it samples; a source classifier that scores its images runs there too
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
        guidance: float | GuidanceRange,
        *,
        start: Start | None = None,
    ) -> np.ndarray:
        """Draw one image per row of `condition`.

        `condition` is either a LongTensor of class ids, shape (B,), or a float tensor of class
        probabilities, shape (B, num_classes) (soft labels, used by pseudo conditional sampling).
        Sample b uses only `seeds[b]` for all of its randomness, so an image does not depend on
        which other images share its batch. `guidance` is one scale for every sample, or a range
        from which each sample draws its own (`batch_guidance`). With `start`, each sample begins
        from its start image rather than from noise (`Start`); a backend that cannot refuses it
        (`check_start`). Returns uint8 images shaped (B, H, W, C).
        """

    def check_start(self, flag: str) -> None:
        """Refuse, as a one-line InputError naming FLAG, to begin sampling from images (`sample`'s
        `start`) where this backend has no way from an image back into its sampling; a diffusion
        backend takes them, as this base does."""

    def record_fields(self, label: int, seed: int, guidance: float | GuidanceRange) -> dict:
        """What a sample's record says about the draws its seed made besides its noise: under a
        --guidance range, its scale. `label` is the sample's class (a soft label's most probable one)."""
        return {"guidance": guidance.scale(seed)} if isinstance(guidance, GuidanceRange) else {}


class OnePassGenerator(Generator):
    """A generator that turns a sample's noise into its image in one pass (a GAN, or seeded noise
    itself): no classifier-free guidance, one step, and no way from an image back into sampling."""

    from_noise: str = "samples from noise"  # what --strength 1 gives, in the refusal of any other

    @abc.abstractmethod
    def no_way_back(self) -> str:
        """Why this generator cannot start from an image, for the --strength refusal."""

    @property
    def supports_guidance(self) -> bool:
        return False

    @property
    def defaults(self) -> SamplingDefaults:
        return SamplingDefaults(steps=1, guidance=1.0)

    def check_start(self, flag: str) -> None:
        raise InputError(f"{flag}: {self.no_way_back()}; give 1 ({self.from_noise}) or a diffusion model "
                         "(unet, dit, sd)")


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


def seeded_noise(
    seeds: Sequence[int],
    shape: tuple[int, ...],
    device: torch.device,
    dtype: torch.dtype,
) -> tuple[list[torch.Generator], torch.Tensor]:
    """Unit Gaussian noise for a batch, each `shape`-sized row from its own CPU generator seeded
    with its seed; also the generators, for the scheduler's steps.

    Passing the same generators to `scheduler.step` keeps an ancestral sampler's per-step noise
    per sample too, so an image depends on its own seed only, whatever its batch-mates and whatever
    the device (DiTPipeline draws the whole batch from one generator).
    """
    from diffusers.utils.torch_utils import randn_tensor

    generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
    return generators, randn_tensor((len(seeds), *shape), generator=generators, device=device, dtype=dtype)


def seeded_latents(
    scheduler: SchedulerMixin,
    seeds: Sequence[int],
    shape: tuple[int, ...],
    device: torch.device,
    dtype: torch.dtype,
) -> tuple[list[torch.Generator], torch.Tensor]:
    """`seeded_noise` scaled for `scheduler`: where sampling from noise begins."""
    generators, x = seeded_noise(seeds, shape, device, dtype)
    return generators, x * scheduler.init_noise_sigma


def start_latents(scheduler: SchedulerMixin, x0: torch.Tensor, noise: torch.Tensor, steps: int,
                  strength: float) -> tuple[torch.Tensor, int]:
    """Where sampling from start images begins, as diffusers' img2img pipelines begin: of the
    `steps` timesteps `scheduler` is set to, the last round(steps * strength) (half up, at least
    one) are run, from `x0` (the images in the model's space) noised with `noise` (unit Gaussian, from
    `seeded_noise`) to the first of them by the scheduler's own `add_noise`, which scales the noise
    for that step (so `init_noise_sigma`, the scale of pure noise, plays no part). Returns the
    noised latents and the index in `scheduler.timesteps` where `denoise` begins; a multistep
    scheduler is told that index too, since its step counter and its noise level follow it.
    """
    begin = (steps - max(1, math.floor(steps * strength + 0.5))) * scheduler.order
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(begin)
    first = scheduler.timesteps[begin : begin + 1].repeat(len(x0))
    return scheduler.add_noise(x0, noise, first), begin


def denoise(
    scheduler: SchedulerMixin,
    x: torch.Tensor,
    generators: list[torch.Generator],
    predict: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    guidance: float | torch.Tensor,
    guided_channels: int | None = None,
    begin: int = 0,
) -> torch.Tensor:
    """Run `scheduler`'s steps from the noise `x` (from `seeded_latents`, with its `generators`),
    or from `begin` on, from start latents noised to that step (`start_latents`).

    `predict(x_in, t)` is one call of the network. `guidance` is one scale, or one per row (from
    `batch_guidance`). When guided (`is_guided`), `x_in` holds the batch twice and `predict`
    conditions the first copy and leaves the second unconditional, so that one call serves both;
    the step then takes uncond + scale * (cond - uncond) over the first `guided_channels` channels
    (all when None) and the remaining channels (a learned variance) from the conditional half.
    With one scale per row, a row at scale 1 or less takes the conditional prediction as it is
    (1 or less means unguided), and each row's arithmetic is its own. Otherwise `predict` gets the
    conditional rows alone.
    """
    guided = is_guided(guidance)
    per_row = isinstance(guidance, torch.Tensor)
    # A sampler that draws noise in its steps takes the samples' own generators; a deterministic one
    # (PNDM, UniPC) has no such argument and needs none.
    drawn = {"generator": generators} if "generator" in inspect.signature(scheduler.step).parameters else {}
    if per_row:
        scales = guidance.to(x.device, torch.float32).view(-1, *(1,) * (x.dim() - 1))
    for t in scheduler.timesteps[begin:]:
        x_in = scheduler.scale_model_input(x, t)
        out = predict(torch.cat([x_in, x_in]) if guided else x_in, t)
        if guided:
            cond, uncond = out.chunk(2)
            c = guided_channels if guided_channels is not None else out.shape[1]
            diff = cond[:, :c] - uncond[:, :c]
            if per_row:
                # The product in fp32, as a Python scale's is, whatever the network's dtype.
                out = torch.where(scales > 1, uncond[:, :c] + (scales * diff.float()).to(diff.dtype), cond[:, :c])
            else:
                out = uncond[:, :c] + guidance * diff
            if c < cond.shape[1]:
                out = torch.cat([out, cond[:, c:]], dim=1)
        x = scheduler.step(out, t, x, **drawn).prev_sample
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


def encode_images(vae: AutoencoderKL, images: torch.Tensor, batch: int | None = None) -> torch.Tensor:
    """The latents of images in [-1, 1], the inverse of `decode_latents`, `batch` at a time: the
    mode of the encoder's distribution (no draw, so a start image has one latent), shifted by the
    VAE's `shift_factor` where its config has one and scaled by its `scaling_factor`."""
    config = vae.config
    images = images.to(vae.device, vae.dtype)
    latents = torch.cat([vae.encode(part).latent_dist.mode() for part in images.split(batch or len(images))])
    if getattr(config, "shift_factor", None) is not None:
        latents = latents - config.shift_factor
    return latents * config.scaling_factor


