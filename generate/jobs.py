"""A generation job from its settings to its shards, callable from Python as from `ptgen`: the
checks made before anything is written, the model and its dtype, the output folder (staged
locally for a URL), the confirmation of very large jobs, and the start and end lines."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import click

from ptcommon.cli import InputError
from ptcommon.outputs import free_bytes, human_bytes, human_seconds
from ptcommon.shards import sample_bytes_bound
from ptcommon.storage import Location

from .distributed import rank_and_world
from .generator import Generator, GuidanceRange
from .models import choose_dtype, load_generator, takes_option

if TYPE_CHECKING:
    from .filtering import FilterSettings

# Above these a job is more likely a slip of the keyboard than a plan: it waits for --yes.
CONFIRM_BYTES = 10**12
CONFIRM_SECONDS = 7 * 86400


def parse_class_ids(text: str) -> list[int]:
    """'3,7,10-12' -> [3, 7, 10, 11, 12]."""
    ids: list[int] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise InputError(f"--class-ids {text}: '{part}' is not a class id or a range such as 10-19")
        lo, hi = int(m[1]), int(m[2] or m[1])
        if hi < lo:
            raise InputError(f"--class-ids {text}: range '{part}' runs backwards")
        ids.extend(range(lo, hi + 1))
    if not ids:
        raise InputError(f"--class-ids {text!r}: no class id given")
    return ids


def choose_classes(classes: int | None, class_ids: str | None, num_classes: int) -> list[int]:
    if classes is not None and class_ids is not None:
        raise InputError("--classes and --class-ids exclude each other: give one")
    if class_ids is not None:
        ids = parse_class_ids(class_ids)
        bad = [i for i in ids if i >= num_classes]
        if bad:
            raise InputError(f"--class-ids {class_ids}: {bad[0]} is out of range; the model's ids are 0..{num_classes - 1}")
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            raise InputError(f"--class-ids {class_ids}: {repeated[0]} is repeated; list each class once")
        return ids
    if classes is None:
        return list(range(num_classes))
    if classes > num_classes:
        raise InputError(f"--classes {classes}: the model has {num_classes} classes; give at most {num_classes}")
    return list(range(classes))


def check_compile(device: str) -> None:
    """Refuse --compile where torch.compile cannot run, before loading anything."""
    import os
    import shutil

    import torch

    if not torch._dynamo.is_dynamo_supported():
        raise InputError("--compile: torch.compile does not support this Python or platform; drop --compile")
    compiler = os.environ.get("CXX", "g++")
    if device != "cuda" and shutil.which(compiler) is None:
        raise InputError(f"--compile: compiling for the CPU needs a C++ compiler ({compiler} not found on PATH); "
                         "install one or drop --compile")


@dataclass
class Generation:
    """What synth and pseudo share, as one object: `open` checks it and loads the model before
    anything is written, `write` runs a job into `out`."""

    out: str
    model: str
    steps: int | None
    guidance: float | GuidanceRange | None
    image_size: int | None
    class_names: Path | None
    prompt: tuple[str, ...]  # --prompt, once or more; () when not given
    prompts: Path | None
    negative_prompt: str | None
    seed: int
    batch_size: int
    shard_size: int
    image_format: str
    quality: int | None
    encode_workers: int | None
    device: str
    dtype: str
    decode_batch: int | None
    compile_: bool
    rank: int | None
    world: int | None
    overwrite: bool
    yes: bool
    quiet: bool
    dtype_reason: str = field(default="as given", init=False)  # how `open` chose --dtype, for the start line
    location: Location = field(init=False)  # --out, checked by `open`
    staging: Path | None = field(default=None, init=False)  # for a URL --out: where this rank's shard is written first
    # What `open` capped, said beside the start line, once nothing is left to refuse: a refusal
    # stays the only line.
    notices: list[str] = field(default_factory=list, init=False)

    @property
    def local_dir(self) -> Path:
        """The local folder this rank writes in: --out itself, or for a URL the staging folder."""
        return self.staging if self.location.remote else self.location.path

    def open(self) -> tuple[Generator, dict]:
        """The generator, and the JobSettings fields with the model's own defaults filled in."""
        self.rank, self.world = rank_and_world(self.rank, self.world)
        if self.image_format == "png" and self.quality is not None:
            raise InputError(self._quality_refusal("png"))
        self.encode_workers = self._encoders()
        self.location = Location(self.out, "--out")
        self.location.check_writable()
        if self.location.remote:
            import atexit
            import shutil
            import tempfile

            self.staging = Path(tempfile.mkdtemp(prefix="ptgen-stage-"))
            atexit.register(shutil.rmtree, self.staging, ignore_errors=True)
        if self.compile_:
            check_compile(self.device)
        # Only where the model takes --decode-batch: elsewhere loading refuses the value as given.
        if self.decode_batch is not None and self.decode_batch > self.batch_size and takes_option(
                self.model, "decode_batch"):
            self.notices.append(f"--decode-batch {self.decode_batch} is larger than --batch-size {self.batch_size}; "
                                f"decoding {self.batch_size} at a time")
            self.decode_batch = self.batch_size
        self.dtype, self.dtype_reason = choose_dtype(self.model, self.device, self.dtype)
        options = {"image_size": self.image_size, "class_names": self.class_names, "prompt": self.prompt or None,
                   "prompts": self.prompts, "negative_prompt": self.negative_prompt, "decode_batch": self.decode_batch}
        generator = load_generator(self.model, device=self.device, dtype=self.dtype, options=options)
        if self.compile_:
            generator.compile()
        if self.image_format == "auto":
            from .writer import auto_format

            self.image_format = auto_format(generator.image_size, generator.channels)
            if self.image_format == "png" and self.quality is not None:
                raise InputError(self._quality_refusal("png (what --image-format auto chose for this model)"))
        steps = self.steps if self.steps is not None else generator.defaults.steps
        guidance = self.guidance if self.guidance is not None else generator.defaults.guidance
        ranged = isinstance(guidance, GuidanceRange)
        if ranged and not generator.supports_guidance:
            raise InputError(f"--guidance {guidance}: {self.model} has no null class, so it takes no guidance range; "
                             "give one scale of 1 or less, or leave --guidance out")
        if not ranged and guidance > 1 and not generator.supports_guidance:
            raise InputError(f"--guidance {guidance}: {self.model} has no null class, so guidance must be 1 or less")
        if self.negative_prompt and (guidance.high if ranged else guidance) <= 1:
            raise InputError(f"--negative-prompt {self.negative_prompt!r}: guidance {guidance} is 1 or less, so no "
                             "sample takes the unconditional pass it steers; give --guidance above 1, or drop "
                             "--negative-prompt")
        return generator, {"model": self.model, "steps": steps, "guidance": guidance, "seed": self.seed,
                           "shard_size": self.shard_size, "image_format": self.image_format, "quality": self.quality,
                           "dtype": self.dtype, "compiled": self.compile_, "batch_size": self.batch_size}

    def _quality_refusal(self, what: str) -> str:
        return (f"--quality {self.quality}: {what} is lossless and has no quality; give --quality with "
                "--image-format jpg or webp, or drop it")

    def _encoders(self) -> int:
        """--encode-workers, or its default; capped at this rank's share of the cores, since more
        threads only contend."""
        from .runner import default_encode_workers, rank_cores

        cores = rank_cores()
        if self.encode_workers is None:
            return default_encode_workers()
        if self.encode_workers > cores:
            self.notices.append(f"--encode-workers {self.encode_workers}: this process may keep {cores} cores busy "
                                f"(its share of the node's); encoding with {cores}")
            return cores
        return self.encode_workers

    def _space_note(self, job, bound: int) -> str:
        """What the job takes on local disk: all of it, or for a URL one shard at a time."""
        if not self.location.remote:
            return f"up to {human_bytes(bound)} on disk, {human_bytes(free_bytes(self.local_dir))} free"
        shard = min(job.plan.count, job.plan.shard_size) * sample_bytes_bound(job.generator.image_size,
                                                                            job.generator.channels)
        return (f"up to {human_bytes(bound)} uploaded; each shard staged in {self.staging} first, up to "
                f"{human_bytes(shard)} a rank, {human_bytes(free_bytes(self.staging))} free there")

    def write(self, job, what: str, on_ready: Callable[[], None] | None = None) -> None:
        """Run `job` into --out; `on_ready` runs once --out is checked and prepared, before sampling."""
        from .runner import generate_shards

        rank, world, out = self.rank, self.world, self.out
        bound = job.plan.count * sample_bytes_bound(job.generator.image_size, job.generator.channels)
        if bound > CONFIRM_BYTES and not self.yes:
            raise InputError(f"this job writes {job.plan.count:,} images, up to {human_bytes(bound)} in {out}, more "
                             f"than {human_bytes(CONFIRM_BYTES)}; check --classes/--per-class, or pass --yes to start it")

        def announce(job) -> None:
            if on_ready is not None:
                on_ready()
            if rank == 0:
                for notice in self.notices:
                    click.echo(f"ptgen: {notice}", err=True)
                s = job.settings
                click.echo(f"ptgen: {job.plan.count:,} {what} of {s.model} -> {out} ({s.steps} steps, guidance "
                           f"{s.guidance}, {s.dtype} ({self.dtype_reason}), {job.generator.image_size}px {s.image_format}, "
                           f"{job.plan.num_shards:,} shards, world {world}, "
                           f"{self.encode_workers} encoder{'s' if self.encode_workers > 1 else ''} a rank; "
                           f"{self._space_note(job, bound)})", err=True)

        def estimate(rate: float, left: int, screened: tuple[int, int] | None) -> None:
            # With a screen RATE counts candidates, and each image costs drawn/kept of them: where the
            # first batch kept none, at least all it drew.
            kept, drawn = screened or (1, 1)
            cost = drawn / max(kept, 1)
            seconds = left * cost / rate
            unit, about = ("img/s", "about") if screened is None else ("candidates/s", "about" if kept else "at least")
            if seconds > CONFIRM_SECONDS and not self.yes:
                raise InputError(f"at the first batch's {rate:.1f} {unit}{_cost_note(job, screened)}, rank {rank}'s "
                                 f"{left:,} remaining images take {about} {human_seconds(seconds)}, more than "
                                 f"{CONFIRM_SECONDS // 86400} days; check --classes/--per-class, or pass --yes to run "
                                 "it")
            if rank == 0:
                click.echo(f"ptgen: first batch at {rate:.1f} {unit}{_cost_note(job, screened)}; the rest takes "
                           f"{about} {human_seconds(seconds)}", err=True)

        stats = generate_shards(job, self.location, rank=rank, world=world, overwrite=self.overwrite,
                                encode_workers=self.encode_workers, progress=not self.quiet and rank == 0,
                                on_ready=announce, on_first_batch=estimate, staging=self.staging)
        state = "folder complete" if stats.complete else "other ranks' shards still missing"
        fitted = f" at batch {stats.batch_size} (what fitted in memory)" if stats.batch_size < self.batch_size else ""
        screened = (f", {stats.sampled / stats.kept:.2f} candidates a kept image ({stats.kept} of {stats.sampled})"
                    if getattr(job, "screen", None) is not None and stats.kept else "")
        click.echo(f"rank {rank}: wrote {stats.images} images in {stats.shards_written} shards "
                   f"({stats.shards_skipped} already done) to {out} in {stats.seconds:.1f} s, "
                   f"{stats.images_per_s:.1f} img/s{fitted}{screened}; {state}")


def _cost_note(job, screened: tuple[int, int] | None) -> str:
    """What the first batch says of a screened job's extra cost: candidates drawn per image kept."""
    if screened is None:
        return ""
    kept, drawn = screened
    at = f"at --min-confidence {job.screen.settings.min_confidence:g}"
    if not kept:
        return f", none of its {drawn} candidates kept {at}: over {drawn} candidates per image"
    return f", {kept} of its {drawn} candidates kept {at}: {drawn / kept:.1f} candidates per image"




def run_synth(gen: Generation, classes: int | None, class_ids: str | None, per_class: int,
              screen: FilterSettings | None = None) -> None:
    """`ptgen synth`: PER_CLASS labeled samples of each chosen class (the first CLASSES, the ids CLASS_IDS
    names, or all); with SCREEN, each one the source classifier recognises (generate/filtering.py)."""
    from .filtering import load_screen
    from .synth import SynthJob, SynthSettings

    generator, common = gen.open()
    ids = choose_classes(classes, class_ids, generator.num_classes)
    settings = SynthSettings(**common, class_ids=tuple(ids), per_class=per_class)
    what = f"images ({len(ids)} classes x {per_class})"
    if screen is None:
        gen.write(SynthJob(settings, generator), what)
        return
    # Loaded before anything is written, since loading checks its classes against the generator's.
    job = SynthJob(settings, generator, load_screen(screen, generator, ids, gen.seed))
    gen.write(job, f"{what[:-1]}, each the first candidate {screen.classifier} gives its class at least "
                   f"{screen.min_confidence:g}, up to {screen.max_candidates} a sample)")


@dataclass(frozen=True)
class PseudoRequest:
    """What `ptgen pseudo` adds to a generation: the targets, the source classifier and the soft label."""

    target: Path
    classifier: str
    classifier_weights: Path | None
    per_target: int
    temperature: float
    top_k: int | None  # None: every class keeps its probability
    condition: str  # soft (PCS) or random (the ablation baseline)
    strength: float = 1.0  # below 1: each sample begins from its target image (SDEdit)


def run_pseudo(gen: Generation, req: PseudoRequest) -> None:
    """`ptgen pseudo`: REQ.per_target samples conditioned on each target image's soft label."""
    from ptcommon.classifiers import check_classifier, classifier_digest

    from .pseudo import PseudoJob, PseudoSettings, check_readable, target_images, targets_digest
    from .soft_labels import (check_soft_labels, confidence_note, load_source, preprocessing, shared_soft_labels,
                              soft_labels)

    if req.top_k == 1 and req.temperature != 1 and req.condition == "soft":
        raise InputError(f"--temperature {req.temperature:g} does nothing at --top-k 1 (the default): the most "
                         "probable class is the same at every T; add --top-k 5 or --top-k all to soften the condition")
    if not 0 < req.strength <= 1:
        raise InputError(f"--strength {req.strength:g}: give a number in (0, 1]; 1 samples from noise, less begins "
                         "each sample from its target image (the lower, the closer to it)")
    targets = target_images(req.target)
    check_readable(req.target, targets)
    paths, keys = targets.items, targets.keys
    check_classifier(req.classifier, "--classifier", req.classifier_weights)
    generator, common = gen.open()
    if req.strength < 1:
        generator.check_start(f"--strength {req.strength:g}")
    digest = classifier_digest(req.classifier, req.classifier_weights)
    key = {"classifier_sha256": digest, "preprocessing": preprocessing(req.classifier),
           "targets_sha256": targets_digest(keys), "temperature": req.temperature, "top_k": req.top_k,
           "generator_classes": generator.num_classes}
    check_soft_labels(gen.location, gen.local_dir, key, gen.overwrite)
    # Loaded before anything is written, since loading checks its classes against the generator's.
    source = load_source(req.classifier, generator, req.classifier_weights)
    settings = PseudoSettings(**common, classifier=req.classifier, per_target=req.per_target,
                              temperature=req.temperature, top_k=req.top_k, condition=req.condition,
                              preprocessing=key["preprocessing"], strength=req.strength)
    job = PseudoJob(settings, generator, targets, None, digest)

    def label_targets() -> None:  # once --out is checked and prepared, so that a refusal writes nothing
        job.probs, job.confidence = shared_soft_labels(gen.location, gen.local_dir, key, lambda: soft_labels(
            paths, source, generator, req.temperature, req.top_k))
        if req.condition == "soft" and gen.rank == 0:  # random ignores the classifier: its confidence says nothing
            note, unsure = confidence_note(job.confidence)
            click.echo(("warning: " if unsure else "") + note, err=unsure)

    grown = f", grown from the targets at strength {req.strength:g}" if req.strength < 1 else ""
    gen.write(job, f"pseudo samples ({len(paths)} targets x {req.per_target}{grown})", on_ready=label_targets)
