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
its class id, bit for bit. Guidance contrasts with the empty prompt, as in diffusers' pipeline,
or with `--negative-prompt`.

Prompt sets: a class may have several prompts, from several `--prompt` templates (`set:photo`
names a set of ptgen's) or from a `--prompts FILE` that lists a class's own sentences. Each sample
draws one 32-bit number u from its seed (a stream of its own, so its noise is unchanged), and class
c takes its prompt floor(u * n_c / 2**32) of its n_c; E is then built per sample, each class's row
from the prompt u picks for it. A class id conditions on its picked prompt, a soft label p on
p @ E over every class's picked prompt, so that a one-hot p is still its class id, bit for bit, and
nothing about a sample depends on its batch-mates. Every prompt's embedding stays on the device for
the run: the table grows with the number of prompts.

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
import json
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ptcommon.cli import InputError
from ptcommon.inputs import read_class_names

from ..conditioning import mix
from ..generator import (PROMPT_STREAM, Generator, GuidanceRange, SamplingDefaults, Start, batch_guidance,
                         check_condition, decode_latents, denoise, encode_images, is_guided, seed_word, to_uint8)
from .folder import (SCHEDULER_CONFIG, folder_sampler, load_component, pipeline_class, public_config, read_json,
                     read_meta, vae_scale_factor, weights_digest)

DEFAULT_SAMPLER = "DPMSolverMultistepScheduler"
DEFAULT_SAMPLING = SamplingDefaults(steps=25, guidance=2.0)
DEFAULT_PROMPT = "a photo of a {}."
# Template sets of ptgen's own, named as `--prompt set:NAME`: defaults to start from, not a tuned
# choice. "photo": the default template and seven photographic variations of it, all from the
# templates CLIP's authors wrote for ImageNet (Radford et al., 2021).
SET_PREFIX = "set:"
PROMPT_SETS = {"photo": ("a photo of a {}.", "a close-up photo of a {}.", "a photo of the large {}.",
                         "a photo of the small {}.", "a bright photo of a {}.", "a dark photo of a {}.",
                         "a cropped photo of the {}.", "a good photo of a {}.")}
# A --prompts file with this suffix is JSON Lines; any other, one JSON object.
LINES_SUFFIX = ".jsonl"
PROMPTS_FORMS = ('a JSON object of class name -> list of prompts, {"tench": ["a tench in a net.", ...], ...}, or '
                 f'in a {LINES_SUFFIX} file one {{"class": NAME, "prompts": [TEXT, ...]}} a line')
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
                         f"{DEFAULT_PROMPT!r}, or name a set: {', '.join(SET_PREFIX + n for n in PROMPT_SETS)}")
    if count > 1:
        raise InputError(f"--prompt {template!r}: {{}} appears {count} times; give it once, where the class "
                         "name goes")
    return template


def templates_of(prompt: str | Sequence[str]) -> list[str]:
    """--prompt's values as templates, each checked, a `set:NAME` as its set's templates."""
    templates: list[str] = []
    for value in [prompt] if isinstance(prompt, str) else prompt:
        if value.startswith(SET_PREFIX) and "{}" not in value:
            named = PROMPT_SETS.get(value[len(SET_PREFIX):])
            if named is None:
                raise InputError(f"--prompt {value!r}: no such set; the sets are "
                                 f"{', '.join(SET_PREFIX + n for n in PROMPT_SETS)}")
            found = list(named)
        else:
            found = [check_template(value)]
        for template in found:
            if template in templates:
                raise InputError(f"--prompt {template!r}: given twice (a set gives each of its templates); give "
                                 "each template once")
            templates.append(template)
    return templates


def _prompt_list(value: object, flag: str, where: str) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise InputError(f"{flag}: {where}: expected a non-empty list of prompts (strings); got "
                         f"{json.dumps(value)[:60]}")
    return value


def _load_json(text: str, flag: str, line: int | None = None) -> object:
    """TEXT as JSON; LINE, for one line of a JSON Lines file, is where its errors are."""
    def unique(pairs: list[tuple[str, object]]) -> dict:
        keys = [k for k, _ in pairs]
        twice = next((k for k in keys if keys.count(k) > 1), None)
        if twice is not None:
            raise InputError(f"{flag}: {'line ' + str(line) + ': ' if line else ''}{twice!r} is a key twice in one "
                             "object; give it once")
        return dict(pairs)

    try:
        return json.loads(text, object_pairs_hook=unique)
    except json.JSONDecodeError as err:
        raise InputError(f"{flag}: line {line or err.lineno}: not valid JSON ({err.msg}); expected "
                         f"{PROMPTS_FORMS}") from None


def read_prompts_file(path: Path, names: Sequence[str]) -> dict[str, list[str]]:
    """--prompts FILE: class name -> its prompts (whole sentences, used as they are), for the classes
    of NAMES the file names; a file that names none of them is refused, others it names are skipped
    with one warning."""
    flag = f"--prompts {path}"
    if not path.is_file():
        raise InputError(f"{flag}: no such file; expected {PROMPTS_FORMS}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"{flag}: not UTF-8 text; expected {PROMPTS_FORMS}") from None
    given: dict[str, list[str]] = {}
    if path.suffix == LINES_SUFFIX:
        first_line: dict[str, int] = {}
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            entry = _load_json(line, flag, number)
            if not isinstance(entry, dict) or set(entry) != {"class", "prompts"} or not isinstance(entry["class"], str):
                raise InputError(f'{flag}: line {number}: expected {{"class": NAME, "prompts": [TEXT, ...]}}')
            name = entry["class"]
            if name in first_line:
                raise InputError(f"{flag}: line {number}: class {name!r} again (first on line {first_line[name]}); "
                                 "give each class one line")
            first_line[name] = number
            given[name] = _prompt_list(entry["prompts"], flag, f"line {number}")
    else:
        entries = _load_json(text, flag)
        if not isinstance(entries, dict):
            raise InputError(f"{flag}: expected {PROMPTS_FORMS} (a file ending {LINES_SUFFIX} is read as JSON Lines)")
        given = {name: _prompt_list(value, flag, f"class {name!r}") for name, value in entries.items()}
    known = set(names)
    unknown = [name for name in given if name not in known]
    if len(unknown) == len(given):
        named = f"it names {len(given)}, e.g. {unknown[0]!r}" if given else "it names none"
        raise InputError(f"{flag}: names none of the model's {len(names)} classes ({named}; the model's first is "
                         f"{names[0]!r}); use the names --class-names gives, or ImageNet-1k's short names without it")
    if unknown:
        print(f"ptgen: warning: --prompts {path}: {len(unknown)} of its {len(given)} classes are not the model's "
              f"(e.g. {unknown[0]!r}) and are not used", file=sys.stderr)
    return {name: prompts for name, prompts in given.items() if name in known}


def _pick(draw: int | torch.Tensor, count: int | torch.Tensor) -> int | torch.Tensor:
    """Which of COUNT prompts a sample's 32-bit DRAW picks: floor(draw * count / 2**32), exact in int64."""
    return (draw * count) >> 32


def _draws(seeds: Sequence[int]) -> list[int]:
    """Each sample's 32-bit prompt draw, from its seed's prompt stream."""
    return [seed_word(seed, PROMPT_STREAM) >> 32 for seed in seeds]


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
        prompt: str | Sequence[str] = DEFAULT_PROMPT,
        prompts: Path | None = None,
        negative_prompt: str | None = None,
        image_size: int | None = None,
        sampler: str | None = DEFAULT_SAMPLER,
        decode_batch: int | None = None,
    ):
        """`class_names`: a file of names, one a line (default: ImageNet-1k's); `prompt`: the
        template they fill, or several (`set:NAME` for a set of ptgen's); `prompts`: a file of
        classes' own prompts (`read_prompts_file`), the templates serving the classes it does not
        name; `negative_prompt`: what guidance contrasts with (default: the empty prompt);
        `image_size`: pixels a side (default: the UNet's native size);
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
        templates = templates_of(prompt)
        self.class_names_file = Path(class_names) if class_names is not None else None
        names = read_class_names(self.class_names_file) if self.class_names_file else imagenet_class_names()
        own = read_prompts_file(Path(prompts), names) if prompts is not None else {}
        # Each class's prompts: its own from the file, else the templates filled with its name.
        self._class_prompts = [own.get(name) or [t.replace("{}", name) for t in templates] for name in names]
        # Whether a sample's prompt is drawn, and so goes in its record: one template alone makes
        # it the class's, which dataset.json already says.
        self._drawn = prompts is not None or len(templates) > 1
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
        counts = torch.tensor([len(p) for p in self._class_prompts])
        # Class c's prompts are rows [offset c, offset c + count c) of the prompt table.
        self._counts, self._offsets = counts, counts.cumsum(0) - counts
        flat = [text for class_prompts in self._class_prompts for text in class_prompts]
        negative = negative_prompt or ""
        tokens, embeddings = self._encode(text_encoder.to(self.device).eval(), tokenizer, flat, negative)
        # The prompt table (E itself when each class has one prompt) stays on the device for the run;
        # the text encoder is no longer needed.
        self._prompts = embeddings[:-1].to(dtype)
        self._unconditional = embeddings[-1:].to(dtype)
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
            "prompt": templates[0] if len(templates) == 1 else templates,
            # Away from the defaults only, so that a dataset made without them keeps its hash.
            **({"class_prompts_sha256": hashlib.sha256(json.dumps(self._class_prompts).encode()).hexdigest()}
               if prompts is not None else {}),
            **({"negative_prompt": negative} if negative else {}),
            # What the text encoder reads: every prompt's token ids, after the tokenizer's own
            # rules and the cut to the encoder's length, which the files alone do not pin down.
            "prompt_tokens_sha256": hashlib.sha256(tokens.numpy().astype("<i8").tobytes()).hexdigest(),
            "image_size": self._image_size,
        }

    @torch.inference_mode()
    def _encode(self, text_encoder: torch.nn.Module, tokenizer, prompts: list[str],
                negative: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids and last hidden states of `prompts` and then the NEGATIVE one, PROMPTS_PER_CALL a call."""
        length = min(tokenizer.model_max_length, text_encoder.config.max_position_embeddings)
        self._warn_if_cut(tokenizer, [*prompts, negative] if negative else prompts, length)
        batch = tokenizer([*prompts, negative], padding="max_length", max_length=length, truncation=True,
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
                  "(shorten it: a name in --class-names, a --prompt template, a --prompts entry or "
                  "--negative-prompt)", file=sys.stderr)

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
        return True  # the empty (or negative) prompt is the unconditional input

    @property
    def defaults(self) -> SamplingDefaults:
        return self._defaults

    def fingerprint(self) -> dict:
        return self._fingerprint

    def prompt(self, label: int, seed: int) -> str:
        """The prompt class LABEL takes in the sample of SEED."""
        prompts = self._class_prompts[label]
        return prompts[_pick(_draws([seed])[0], len(prompts))]

    def record_fields(self, label: int, seed: int, guidance: float | GuidanceRange) -> dict:
        fields = super().record_fields(label, seed, guidance)
        return {**fields, "prompt": self.prompt(label, seed)} if self._drawn else fields

    def prompt_embeddings(self, condition: torch.Tensor, guided: bool,
                          seeds: Sequence[int] | None = None) -> torch.Tensor:
        """What the UNet attends to: E's rows for class ids or p @ E for probabilities, then
        (guided) as many copies of the unconditional prompt's embedding. Where a class has several
        prompts, E is each sample's own, from the prompts its seed (in SEEDS) picks."""
        n = self.num_classes
        if int(self._counts.max()) == 1:  # one prompt a class: one E for every sample
            context = mix(self._prompts, condition, n)
        else:
            check_condition(condition, n)
            rows = (self._offsets + _pick(torch.tensor(_draws(seeds))[:, None], self._counts)).to(self._prompts.device)
            if condition.is_floating_point():
                context = torch.cat([mix(self._prompts[r], p[None], n) for r, p in zip(rows, condition)])
            else:
                context = self._prompts[rows[torch.arange(len(rows)), condition]]
        return torch.cat([context, self._unconditional.expand_as(context)]) if guided else context

    @torch.inference_mode()
    def sample(
        self, condition: torch.Tensor, seeds: Sequence[int], steps: int, guidance: float | GuidanceRange, *,
        start: Start | None = None,
    ) -> np.ndarray:
        scales = batch_guidance(guidance, seeds)
        context = self.prompt_embeddings(condition, is_guided(scales), seeds)
        size = self._image_size // vae_scale_factor(self.vae.config)
        scheduler, generators, x, begin = self._sampler.start(
            steps, seeds, len(condition), (self.unet.config.in_channels, size, size), self.device, self.dtype, start,
            functools.partial(encode_images, self.vae, batch=self.decode_batch))

        def predict(x_in: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return self.unet(x_in, t, encoder_hidden_states=context).sample

        x = denoise(scheduler, x, generators, predict, scales, begin=begin)
        return to_uint8(decode_latents(self.vae, x, self.decode_batch))
