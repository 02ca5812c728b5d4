"""`ptgen`: the generation stage's command line."""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Callable

import click

from ptcommon import builtin
from ptcommon.cli import Group, InputError
from ptcommon.outputs import check_output_file, free_bytes, human_bytes, human_seconds
from ptcommon.shards import IMAGE_FORMATS, sample_bytes_bound, ReadPolicy, read_options, refuse_unexpected
from ptcommon.storage import Location

from .distributed import rank_and_world
from .generator import Generator
from .models import DTYPES, choose_dtype, list_builtins, load_generator, takes_option

DEFAULT_PER_CLASS = 10
DEFAULT_PER_TARGET = 10
DEFAULT_TOP_K = 1
DEFAULT_BATCH = 128
DEFAULT_SHARD_SIZE = 1000
# Above these a job is more likely a slip of the keyboard than a plan: it waits for --yes.
CONFIRM_BYTES = 10**12
CONFIRM_SECONDS = 7 * 86400


@click.group(cls=Group, name="ptgen", context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ptgen", prog_name="ptgen")
def main() -> None:
    """Synthesize pseudo datasets from pre-trained class-conditional generators, as WebDataset shards.

    \b
    ptgen synth    class-conditional samples with their source labels (for pseudo pre-training)
    ptgen pseudo   target-conditioned pseudo samples (pseudo conditional sampling, for P-SSL)
    ptgen inspect  what a shard folder holds; a contact sheet
    ptgen card     a shard folder's Hugging Face dataset card (README.md)
    ptgen models   the built-in models
    """


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


class TopK(click.ParamType):
    """--top-k: a positive number of classes, or `all` (None: every class keeps its probability)."""

    name = "K|all"

    def convert(self, value, param, ctx):
        if value is None or isinstance(value, int) or value == "all":
            return None if value in (None, "all") else value
        if str(value).isdigit() and int(value) >= 1:
            return int(value)
        self.fail(f"{value!r} is neither a positive number of classes nor 'all'", param, ctx)


def generation_options(default_out: str):
    """The flags synth and pseudo share: model, sampling, output, ranks."""
    options = [
        click.option("--out", default=default_out, show_default=True,
                     help="Folder for the shards, a path or an s3://, gs:// or hf:// URL (each shard is staged "
                          "locally and uploaded once complete); a rerun into it resumes, a different config there "
                          "is refused."),
        click.option("--model", default=builtin.DEFAULT_SPEC, show_default=True,
                     help="builtin:NAME, a diffusers folder (`ptgen models` lists the kinds) or a hub id."),
        click.option("--steps", type=click.IntRange(min=1), help="Sampling steps. [default: the model's own]"),
        click.option("--guidance", type=click.FloatRange(min=0), help="Classifier-free guidance scale; 1 or less "
                     "turns it off. [default: the model's own]"),
        click.option("--image-size", type=click.IntRange(min=1), help="Pixels a side; text-to-image models "
                     "only, any other takes its native size alone. [default: the model's native size]"),
        click.option("--class-names", type=click.Path(path_type=Path), help="Text-to-image models only: a file "
                     "of class names, one a line, the first line class 0. [default: ImageNet-1k's, in index order]"),
        click.option("--prompt", help="Text-to-image models only: the prompt of each class, with {} where its "
                     "name goes. [default: 'a photo of a {}.']"),
        click.option("--seed", type=int, default=0, show_default=True,
                     help="Base seed; sample i's noise is seeded by (seed, i)."),
        click.option("--batch-size", type=click.IntRange(min=1), default=DEFAULT_BATCH, show_default=True,
                     help="Images per generator call. Changes speed and memory, not which images come out (a pixel on a "
                          "rounding edge may differ by one level: docs/shards.md). A batch that runs out of memory "
                          "is halved, with one line, until one fits."),
        click.option("--shard-size", type=click.IntRange(min=1), default=DEFAULT_SHARD_SIZE, show_default=True,
                     help="Images per shard."),
        click.option("--image-format", type=click.Choice(["auto", *IMAGE_FORMATS]), default="auto", show_default=True,
                     help="auto, by docs/results.md's measurements at 256 px: JPEG at quality 95 for RGB images (a "
                          "quarter of PNG's bytes, 40 times its encode rate a core, 5 times its decode rate; WebP "
                          "is 20% smaller still but 22 times slower to encode), PNG for grayscale and for images as "
                          "small as the built-in model's, which take one tar block in any format. Part of the "
                          "config hash."),
        click.option("--quality", type=click.IntRange(1, 100), help="JPEG and WebP quality, 1 to 100; part of the "
                     "config hash. [default: 95]"),
        click.option("--encode-workers", type=click.IntRange(min=1),
                     help="Threads that encode images, per rank; the shards' bytes are the same for any number. "
                          "More than this rank's cores are capped. [default: this rank's cores (in an srun step its "
                          "--cpus-per-task, else the cores this process may use divided by the ranks on the node), "
                          "less one for sampling; at least 1]"),
        click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True),
        click.option("--dtype", type=click.Choice(["auto", *DTYPES]), default="auto", show_default=True,
                     help="auto: on CUDA bf16 where the GPU has it, else fp16 for DiT and Stable Diffusion (as "
                          "their pipelines are published) and fp32 for the rest; fp32 on CPU. bf16 also runs on "
                          "CPUs with AVX-512 BF16 or AMX (the built-in model: same class consistency and FD as fp32 "
                          "at 1.5x its rate on 2 cores, docs/results.md); fp16 is for CUDA only. On CUDA fp32 "
                          "matmuls use TF32. The dtype used is part of the config hash."),
        click.option("--decode-batch", type=click.IntRange(min=1),
                     help="Latent models (DiT, Stable Diffusion): images a VAE decode takes at most, to bound its "
                          "memory at large --batch-size; the images are the same for any value. [default: the "
                          "whole batch]"),
        click.option("--compile", "compile_", is_flag=True,
                     help="torch.compile the generator's network: faster sampling after a warm-up of a minute or "
                          "more. Part of the config hash, since compiled kernels may round differently."),
        click.option("--rank", type=click.IntRange(min=0),
                     help="This process's rank. [default: torchrun's RANK, else SLURM_PROCID inside an srun step, else 0]"),
        click.option("--world", type=click.IntRange(min=1),
                     help="Number of processes. [default: torchrun's WORLD_SIZE, else the srun step's task count, else 1]"),
        click.option("--overwrite", is_flag=True, help="Replace shards of another config in --out instead of refusing."),
        click.option("--yes", is_flag=True, help=f"Start a job even if it would write more than "
                     f"{human_bytes(CONFIRM_BYTES)} or take more than {CONFIRM_SECONDS // 86400} days at the rate "
                     "of its first batch (without it, such a job stops and says why)."),
        click.option("--quiet", is_flag=True, help="No progress bar."),
    ]

    def decorate(command):
        @functools.wraps(command)
        def wrapper(**kw):
            return command(gen=GenerationRequest(**{f.name: kw.pop(f.name) for f in fields(GenerationRequest) if f.init}),
                           **kw)

        for option in reversed(options):
            wrapper = option(wrapper)
        return wrapper

    return decorate


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
class GenerationRequest:
    """The flags synth and pseudo share, as one object: `open` checks them before anything is
    written, `write` runs the job into --out."""

    out: str
    model: str
    steps: int | None
    guidance: float | None
    image_size: int | None
    class_names: Path | None
    prompt: str | None
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
        options = {"image_size": self.image_size, "class_names": self.class_names, "prompt": self.prompt,
                   "decode_batch": self.decode_batch}
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
        if guidance > 1 and not generator.supports_guidance:
            raise InputError(f"--guidance {guidance}: {self.model} has no null class, so guidance must be 1 or less")
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

        def estimate(rate: float, left: int) -> None:
            seconds = left / rate
            if seconds > CONFIRM_SECONDS and not self.yes:
                raise InputError(f"at the first batch's {rate:.1f} img/s, rank {rank}'s {left:,} remaining images "
                                 f"take {human_seconds(seconds)}, more than {CONFIRM_SECONDS // 86400} days; check "
                                 "--classes/--per-class, or pass --yes to run it")
            if rank == 0:
                click.echo(f"ptgen: first batch at {rate:.1f} img/s; the rest takes about {human_seconds(seconds)}",
                           err=True)

        stats = generate_shards(job, self.location, rank=rank, world=world, overwrite=self.overwrite,
                                encode_workers=self.encode_workers, progress=not self.quiet and rank == 0,
                                on_ready=announce, on_first_batch=estimate, staging=self.staging)
        state = "folder complete" if stats.complete else "other ranks' shards still missing"
        fitted = f" at batch {stats.batch_size} (what fitted in memory)" if stats.batch_size < self.batch_size else ""
        click.echo(f"rank {rank}: wrote {stats.images} images in {stats.shards_written} shards "
                   f"({stats.shards_skipped} already done) to {out} in {stats.seconds:.1f} s, "
                   f"{stats.images_per_s:.1f} img/s{fitted}; {state}")


@main.command()
@click.option("--classes", type=click.IntRange(min=1), help="Use the first N source classes. [default: all]")
@click.option("--class-ids", help="Source class ids to use, e.g. '3,7,100-199'.")
@click.option("--per-class", type=click.IntRange(min=1), default=DEFAULT_PER_CLASS, show_default=True,
              help="Images per class. The default finishes in minutes for 1000 classes of the built-in model "
                   "on a laptop CPU; pre-training wants more (see docs/results.md).")
@generation_options(default_out="shards")
def synth(classes: int | None, class_ids: str | None, per_class: int, gen: GenerationRequest) -> None:
    """Write class-conditional samples with their labels as WebDataset shards.

    Sample i has class ids[i mod n] and noise seeded by (--seed, i); shard k holds samples
    [k*M, (k+1)*M) for M = --shard-size. So shards are byte-identical however the work is split
    over ranks (--rank/--world, or torchrun) and however often it is interrupted and rerun: a
    rerun skips finished shards. See docs/shards.md for the format.
    """
    from .synth import SynthJob, SynthSettings

    generator, common = gen.open()
    ids = choose_classes(classes, class_ids, generator.num_classes)
    settings = SynthSettings(**common, class_ids=tuple(ids), per_class=per_class)
    gen.write(SynthJob(settings, generator), f"images ({len(ids)} classes x {per_class})")


@main.command()
@click.option("--target", type=click.Path(path_type=Path), required=True,
              help="The target task: an ImageFolder tree, or a Hugging Face dataset (hf:NAME, a save_to_disk folder; "
                   "its image column is the first Image feature); every image of its train part is a condition "
                   "(never test).")
@click.option("--classifier", default=builtin.DEFAULT_SPEC, show_default=True,
              help="The source classifier C_s: builtin:NAME, a pttrain run folder, or timm:NAME (an ImageNet-1k "
                   "model, whose classes map onto a DiT's or BigGAN's by index). Its classes map onto the "
                   "generator's by source class id.")
@click.option("--classifier-weights", type=click.Path(path_type=Path),
              help="For timm:NAME without network access: a local state dict (.safetensors, or .pth read with "
                   "weights_only). [default: timm's pretrained weights from the hub]")
@click.option("--per-target", type=click.IntRange(min=1), default=DEFAULT_PER_TARGET, show_default=True,
              help="Pseudo samples per target image.")
@click.option("--temperature", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="T in p = softmax(C_s(x) / T); below 1 sharpens the soft label, above 1 flattens it. It acts only "
                   "with --top-k above 1: the most probable class is the same at every T.")
@click.option("--top-k", type=TopK(), default=str(DEFAULT_TOP_K), show_default=True,
              help="Keep the k most probable source classes, renormalised, or `all` (the paper's soft label). The "
                   "default, the most probable class alone, transferred best by a small margin: +0.007 over all on "
                   "digits on each of 3 seeds, level on a target the classifier recognises (docs/results.md, "
                   "\"Ablations\").")
@click.option("--condition", type=click.Choice(["soft", "random"]), default="soft", show_default=True,
              help="soft: condition on the soft label p (pseudo conditional sampling). random: each sample a uniformly "
                   "random source class, ignoring the target: the ablation baseline (docs/results.md).")
@generation_options(default_out="shards/pseudo")
def pseudo(target: Path, classifier: str, classifier_weights: Path | None, per_target: int, temperature: float,
           top_k: int | None, condition: str, gen: GenerationRequest) -> None:
    """Pseudo conditional sampling: source-domain look-alikes of the target images, unlabeled.

    For every image x of the target's train/, p = softmax(C_s(x)/T) from the source classifier
    (with its own preprocessing: a run folder's recorded resize, a timm: model's evaluation
    transform), optionally kept to its top-k, then --per-target samples
    G_s(z, p) conditioned on the probability-weighted mixture of class embeddings. Shards as
    ptgen synth's, without .cls; each .json holds target_key, the classifier's confidence on that
    target (target_confidence, which pttrain pssl's --guard reads) and the top source classes.
    """
    from ptcommon.classifiers import check_classifier, classifier_digest

    from .pseudo import PseudoJob, PseudoSettings, target_images, targets_digest
    from .soft_labels import (check_soft_labels, confidence_note, load_source, preprocessing, shared_soft_labels,
                              soft_labels)

    if top_k == 1 and temperature != 1 and condition == "soft":
        raise InputError(f"--temperature {temperature:g} does nothing at --top-k 1 (the default): the most probable "
                         "class is the same at every T; add --top-k 5 or --top-k all to soften the condition")
    paths, keys = target_images(target)
    check_classifier(classifier, "--classifier", classifier_weights)
    generator, common = gen.open()
    digest = classifier_digest(classifier, classifier_weights)
    key = {"classifier_sha256": digest, "preprocessing": preprocessing(classifier),
           "targets_sha256": targets_digest(keys), "temperature": temperature, "top_k": top_k,
           "generator_classes": generator.num_classes}
    check_soft_labels(gen.location, gen.local_dir, key, gen.overwrite)
    source = load_source(classifier, generator, classifier_weights)  # checks its classes before anything is written
    settings = PseudoSettings(**common, classifier=classifier, per_target=per_target, temperature=temperature,
                              top_k=top_k, condition=condition, preprocessing=key["preprocessing"])
    job = PseudoJob(settings, generator, keys, None, digest)

    def label_targets() -> None:  # once --out is checked and prepared, so that a refusal writes nothing
        job.probs, job.confidence = shared_soft_labels(gen.location, gen.local_dir, key, lambda: soft_labels(
            paths, source, generator, temperature, top_k))
        if condition == "soft" and gen.rank == 0:  # random ignores the classifier: how sure it is says nothing then
            note, unsure = confidence_note(job.confidence)
            click.echo(("warning: " if unsure else "") + note, err=unsure)

    gen.write(job, f"pseudo samples ({len(paths)} targets x {per_target})", on_ready=label_targets)


@main.command()
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--grid", type=click.Path(path_type=Path), help="Write a contact sheet PNG: rows are classes, columns samples.")
@click.option("--rows", type=click.IntRange(min=1), default=10, show_default=True, help="Classes in the contact sheet.")
@click.option("--cols", type=click.IntRange(min=1), default=8, show_default=True, help="Samples per class in the sheet.")
@click.option("--target", type=click.Path(path_type=Path), help="For pseudo shards: the --target folder they were "
              "made from; each row of the contact sheet then starts with its target image (framed in red), "
              "captioned with its top source classes (id:probability).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@read_options
def inspect(folder: Path, grid: Path | None, rows: int, cols: int, target: Path | None, as_json: bool,
            policy: ReadPolicy) -> None:
    """Counts per class, bytes and config of a shard folder; optionally a contact sheet.

    Members that the shard format does not define (docs/shards.md, "Reading shards you did not
    make") are listed, never decoded.
    """
    from .report import contact_sheet, summarize

    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder")
    if grid is not None:
        check_output_file(grid, "--grid")
    summary = summarize(folder)
    if as_json:
        click.echo(json.dumps(summary, indent=1))
    else:
        cfg = summary["config"]
        counts = list(summary["per_class"].values())
        click.echo(f"{summary['folder']}: {summary['images']} of {summary['images_planned']} images, "
                   f"{summary['shards'] - summary['shards_missing']}/{summary['shards']} shards, "
                   f"{summary['bytes'] / 1e6:.1f} MB, {'complete' if summary['complete'] else 'INCOMPLETE'}")
        click.echo(f"model {cfg.get('model')}  steps {cfg.get('steps')}  guidance {cfg.get('guidance')}  "
                   f"seed {cfg.get('seed')}  {cfg.get('image_size')}px  {cfg.get('image_format')}  "
                   f"config {cfg.get('config_hash')}  ptgen {cfg.get('version')}")
        if counts:
            click.echo(f"{len(counts)} classes, {min(counts)}..{max(counts)} images each")
            for name, n in list(summary["per_class"].items())[:10]:
                click.echo(f"  {n:6d}  {name}")
            if len(counts) > 10:
                click.echo(f"  ... {len(counts) - 10} more (--json lists all)")
    if policy.strict:
        refuse_unexpected(summary["unexpected_members"], str(folder))
    if not as_json:
        for ext, names in summary["unexpected_members"].items():
            click.echo(f"not part of the shard format (never decoded): .{ext} members in {len(names)} shards "
                       f"({', '.join(names[:3])}{', ...' if len(names) > 3 else ''})")
    if grid is not None:
        click.echo(f"contact sheet: {contact_sheet(folder, grid, rows, cols, policy, target)}")


@main.command()
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path),
              help="Where to write the card. The hub and `datasets` read it only as README.md at the folder's "
                   "top. [default: FOLDER/README.md]")
@click.option("--overwrite", is_flag=True, help="Replace an existing file at --out that ptgen did not write.")
def card(folder: Path, out: Path | None, overwrite: bool) -> None:
    """Write FOLDER/README.md, a Hugging Face dataset card for a shard folder.

    Its front matter makes `datasets.load_dataset(FOLDER)` and the hub's viewer show the image as
    an Image and `cls` as a ClassLabel with the generator's class names; its body names the
    generator, its fingerprint, the sampling settings and config hash, the count, the format and
    the license of the generator's own card. Publishing stays yours: `huggingface-cli upload`
    (docs/shards.md).

    A card ptgen wrote earlier is replaced; any other file there is left alone and the command
    stops, unless --overwrite.
    """
    from .card import write_card

    click.echo(f"dataset card: {write_card(folder, out, overwrite)}")


@main.command()
@click.argument("folder", type=click.Path(path_type=Path), required=False)
@click.option("--json", "as_json", is_flag=True,
              help="Print JSON: a list of {name, installed, path, backend, num_classes, image_size, channels} "
                   "for the built-in models, or one such object for FOLDER.")
def models(folder: Path | None, as_json: bool) -> None:
    """The built-in models and the backends; with FOLDER, which backend it is for and what it holds.

    The backend is read from the folder's own description (diffusers' model_index.json, or its
    subfolders), without loading weights.
    """
    from .backends import BACKENDS
    from .models import describe_folder

    if folder is not None:
        if not folder.is_dir():
            raise InputError(f"{folder}: no such folder")
        info = describe_folder(folder, "FOLDER")
        click.echo(json.dumps(info, indent=1) if as_json else
                   f"{folder}: backend {info['backend']}, {info['num_classes']} classes, {info['image_size']}px, "
                   f"{info['channels']} channels")
        return
    infos = list_builtins()
    if as_json:
        click.echo(json.dumps(infos, indent=1))
        return
    for info in infos:
        if info["installed"]:
            click.echo(f"{info['name']}  {info['backend']}  {info['num_classes']} classes  {info['image_size']}px  "
                       f"{info['path']}")
        else:
            click.echo(f"{info['name']}  (not installed in this build; expected at {info['path']})")
    click.echo("backends (chosen from a --model folder's own files):")
    for backend in BACKENDS:
        click.echo(f"  {backend.name:6s} {backend.layout}")
