"""`ptgen`: the generation stage's command line."""

from __future__ import annotations

from pathlib import Path

import click

from ptcommon import builtin
from ptcommon.cli import Group, packed
from ptcommon.outputs import human_bytes
from ptcommon.shards import IMAGE_FORMATS, ReadPolicy, read_options

from .generator import GuidanceRange
from .filtering import DEFAULT_MAX_CANDIDATES
from .jobs import CONFIRM_BYTES, CONFIRM_SECONDS, Generation
from .models import DTYPES

DEFAULT_PER_CLASS = 10
DEFAULT_PER_TARGET = 10
DEFAULT_TOP_K = 1
DEFAULT_BATCH = 128
DEFAULT_SHARD_SIZE = 1000


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


class TopK(click.ParamType):
    """--top-k: a positive number of classes, or `all` (None: every class keeps its probability)."""

    name = "K|all"

    def convert(self, value, param, ctx):
        if value is None or isinstance(value, int) or value == "all":
            return None if value in (None, "all") else value
        if str(value).isdigit() and int(value) >= 1:
            return int(value)
        self.fail(f"{value!r} is neither a positive number of classes nor 'all'", param, ctx)


class Guidance(click.ParamType):
    """--guidance: one scale (a number, 0 or more), or a range LO:HI each sample draws its scale from."""

    name = "S|LO:HI"
    _scale = click.FloatRange(min=0)

    def convert(self, value, param, ctx):
        if value is None or isinstance(value, (float, int)):
            return value
        parts = str(value).split(":")
        if len(parts) == 1:
            return self._scale.convert(value, param, ctx)
        if len(parts) != 2 or not all(part.strip() for part in parts):
            self.fail(f"{value!r} is neither a scale nor a range LO:HI; give e.g. 2 or 1:3", param, ctx)
        low, high = (self._scale.convert(part, param, ctx) for part in parts)
        if low > high:
            self.fail(f"{value!r}: LO {low:g} is above HI {high:g}; give LO:HI with LO at most HI, e.g. 1:3",
                      param, ctx)
        if high == float("inf"):
            self.fail(f"{value!r}: HI must be finite, e.g. 1:3", param, ctx)
        return GuidanceRange(low, high)


def generation_options(default_out: str):
    """The flags synth and pseudo share: model, sampling, output, ranks."""
    options = [
        click.option("--out", default=default_out, show_default=True,
                     help="Folder for the shards, a path or an s3://, gs:// or hf:// URL (each shard is staged "
                          "locally and uploaded once complete); a rerun into it resumes, a different config there "
                          "is refused."),
        click.option("--model", default=builtin.DEFAULT_SPEC, show_default=True,
                     help="builtin:NAME, a diffusers folder (`ptgen models` lists the kinds), a hub id, or "
                          "noise:CLASSESxSIZE[x1] (seeded noise, no network: a dry run of a job's storage at full size)."),
        click.option("--steps", type=click.IntRange(min=1), help="Sampling steps. [default: the model's own]"),
        click.option("--guidance", type=Guidance(), help="Classifier-free guidance scale; 1 or less turns it off. "
                     "LO:HI draws each sample's scale uniformly in [LO, HI] from its own seed and records it in the "
                     "sample's .json (`guidance`); a sample at 1 or less is unguided. [default: the model's own]"),
        click.option("--image-size", type=click.IntRange(min=1), help="Pixels a side; text-to-image models "
                     "only, any other takes its native size alone. [default: the model's native size]"),
        click.option("--class-names", type=click.Path(path_type=Path), help="Text-to-image models only: a file "
                     "of class names, one a line, the first line class 0. [default: ImageNet-1k's, in index order]"),
        click.option("--prompt", multiple=True, help="Text-to-image models only: the prompt of each class, with {} "
                     "where its name goes. Give it several times for several templates, or set:photo for ptgen's "
                     "set of eight photographic ones (a default, not a tuned choice); each sample takes one, picked "
                     "from its own seed, and records it in its .json (`prompt`). [default: 'a photo of a {}.']"),
        click.option("--prompts", type=click.Path(path_type=Path), help="Text-to-image models only: classes' own "
                     "prompts, whole sentences: a JSON object of class name -> list of prompts, or in a .jsonl file "
                     "one {\"class\": NAME, \"prompts\": [TEXT, ...]} a line. Each sample takes one of its class's, "
                     "picked from its own seed, and records it in its .json (`prompt`); a class the file does not "
                     "name takes the --prompt templates."),
        click.option("--negative-prompt", help="Text-to-image models only: the prompt classifier-free guidance "
                     "steers away from, in place of the empty prompt. Needs guidance above 1."),
        click.option("--seed", type=int, default=0, show_default=True,
                     help="Base seed; sample i's noise is seeded by (seed, i)."),
        click.option("--batch-size", type=click.IntRange(min=1), default=DEFAULT_BATCH, show_default=True,
                     help="Images per generator call. Changes speed and memory, not which images come out (a pixel on a "
                          "rounding edge may differ by one level: docs/shards.md). A batch that runs out of memory "
                          "is halved, with one line, until one fits."),
        click.option("--shard-size", type=click.IntRange(min=1), default=DEFAULT_SHARD_SIZE, show_default=True,
                     help="Images per shard."),
        click.option("--image-format", type=click.Choice(["auto", *IMAGE_FORMATS]), default="auto", show_default=True,
                     help="auto: JPEG at quality 95 for RGB images (far fewer bytes than PNG and far faster to "
                          "encode and decode; WebP is smaller still but much slower to encode: docs/results.md, "
                          "\"The writer's ceiling at 256 px\"), PNG for grayscale and for images as small as the "
                          "built-in model's, which take one tar block in any format. Part of the config hash."),
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
                          "CPUs with AVX-512 BF16 or AMX, faster there at the built-in model's quality (docs/results.md, "
                          "\"bf16 on CPU for the built-in generator\"); fp16 is for CUDA only. On CUDA fp32 "
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

    return packed(Generation, "gen", options)


# synth's and pseudo's: the source classifier's weights where it is a timm model.
classifier_weights_option = click.option(
    "--classifier-weights", type=click.Path(path_type=Path),
    help="For timm:NAME without network access: a local state dict (.safetensors, or .pth read with "
         "weights_only). [default: timm's pretrained weights from the hub]")


@main.command()
@click.option("--classes", type=click.IntRange(min=1), help="Use the first N source classes. [default: all]")
@click.option("--class-ids", help="Source class ids to use, e.g. '3,7,100-199'.")
@click.option("--per-class", type=click.IntRange(min=1), default=DEFAULT_PER_CLASS, show_default=True,
              help="Images per class. The default finishes in minutes for 1000 classes of the built-in model "
                   "on a laptop CPU; pre-training wants more (see docs/results.md).")
@click.option("--classifier", help="Keep only samples that this source classifier (builtin:NAME, a pttrain run "
              "folder, or timm:NAME, an ImageNet-1k model whose classes map onto a DiT's or BigGAN's by index) "
              "gives their own class with probability at least --min-confidence, each through its own "
              "preprocessing; a sample draws candidates until one passes, so each class still gets --per-class. "
              "Its classes map onto the generator's by source class id. [default: no filtering]")
@classifier_weights_option
@click.option("--min-confidence", type=click.FloatRange(0, 1, min_open=True),
              help="With --classifier: the probability of its own class (0 < P <= 1) a sample needs to be kept. "
                   "Part of the config hash.")
@click.option("--max-candidates", type=click.IntRange(min=1),
              help="With --classifier: the candidates a sample may draw; a sample that reaches it without one "
                   "kept stops the job and names its class, keeping the finished shards. Part of the config "
                   f"hash. [default: {DEFAULT_MAX_CANDIDATES}]")
@generation_options(default_out="shards")
def synth(classes: int | None, class_ids: str | None, per_class: int, classifier: str | None,
          classifier_weights: Path | None, min_confidence: float | None, max_candidates: int | None,
          gen: Generation) -> None:
    """Write class-conditional samples with their labels as WebDataset shards.

    Sample i has class ids[i mod n] and noise seeded by (--seed, i); shard k holds samples
    [k*M, (k+1)*M) for M = --shard-size. So shards are byte-identical however the work is split
    over ranks (--rank/--world, or torchrun) and however often it is interrupted and rerun: a
    rerun skips finished shards. See docs/shards.md for the format.

    With --classifier and --min-confidence, sample i is the first of its candidates 0, 1, ... that
    the classifier keeps: candidate 0 is the sample above, candidate c a fresh seed of (--seed, i,
    c). Each kept sample's .json adds confidence and candidates; `ptgen inspect` shows the
    acceptance per class.
    """
    from .filtering import check_filter
    from .jobs import run_synth

    run_synth(gen, classes, class_ids, per_class,
              check_filter(classifier, min_confidence, max_candidates, classifier_weights))


@main.command()
@click.option("--target", type=click.Path(path_type=Path), required=True,
              help="The target task: an ImageFolder tree, or a Hugging Face dataset (hf:NAME, a save_to_disk folder; "
                   "its image column is the first Image feature); every image of its train part is a condition "
                   "(never test).")
@click.option("--classifier", default=builtin.DEFAULT_SPEC, show_default=True,
              help="The source classifier C_s: builtin:NAME, a pttrain run folder, or timm:NAME (an ImageNet-1k "
                   "model, whose classes map onto a DiT's or BigGAN's by index). Its classes map onto the "
                   "generator's by source class id.")
@classifier_weights_option
@click.option("--per-target", type=click.IntRange(min=1), default=DEFAULT_PER_TARGET, show_default=True,
              help="Pseudo samples per target image.")
@click.option("--temperature", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="T in p = softmax(C_s(x) / T); below 1 sharpens the soft label, above 1 flattens it. It acts only "
                   "with --top-k above 1: the most probable class is the same at every T.")
@click.option("--top-k", type=TopK(), default=str(DEFAULT_TOP_K), show_default=True,
              help="Keep the k most probable source classes, renormalised, or `all` (the paper's soft label). The "
                   "default, the most probable class alone, transferred at least as well as the full soft label "
                   "(docs/results.md, "
                   "\"Ablations\").")
@click.option("--condition", type=click.Choice(["soft", "random"]), default="soft", show_default=True,
              help="soft: condition on the soft label p (pseudo conditional sampling). random: each sample a uniformly "
                   "random source class, ignoring the target: the ablation baseline (docs/results.md).")
@click.option("--strength", type=float, default=1.0, show_default=True, metavar="S",
              help="In (0, 1]. 1: each sample starts from noise. Below 1: each starts from its own target image, "
                   "resized to the generator's size and channels (for DiT and Stable Diffusion encoded by the VAE), "
                   "noised with the sample's seeded noise to the step S names, and only the last round(steps*S) "
                   "steps (rounded half up, at least one) run, under its soft label (SDEdit): the lower, the closer "
                   "to the target and the less of the source's look. Diffusion models only (unet, dit, sd); below 1 "
                   "part of the config hash and of each sample's .json. Measured as unlabeled and as labeled data "
                   "(pttrain --extra-labeled) in docs/method.md, \"Look-alikes grown from the target images\".")
@generation_options(default_out="shards/pseudo")
def pseudo(target: Path, classifier: str, classifier_weights: Path | None, per_target: int, temperature: float,
           top_k: int | None, condition: str, strength: float, gen: Generation) -> None:
    """Pseudo conditional sampling: source-domain look-alikes of the target images, unlabeled.

    For every image x of the target's train/, p = softmax(C_s(x)/T) from the source classifier
    (with its own preprocessing: a run folder's recorded resize, a timm: model's evaluation
    transform), optionally kept to its top-k, then --per-target samples
    G_s(z, p) conditioned on the probability-weighted mixture of class embeddings. Shards as
    ptgen synth's, without .cls; each .json holds target_key, the target's class where the target
    has labels (target_class: its train/ folder, or its ClassLabel's name), the classifier's
    confidence on that target (target_confidence, which pttrain pssl's --guard reads) and the top
    source classes. With --strength below 1 each sample grows from its own target image instead of
    from noise.
    """
    from .jobs import PseudoRequest, run_pseudo

    run_pseudo(gen, PseudoRequest(target, classifier, classifier_weights, per_target, temperature, top_k, condition,
                                  strength))


@main.command()
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--grid", type=click.Path(path_type=Path), help="Write a contact sheet PNG: rows are classes, columns samples.")
@click.option("--rows", type=click.IntRange(min=1), default=10, show_default=True, help="Classes in the contact sheet.")
@click.option("--cols", type=click.IntRange(min=1), default=8, show_default=True, help="Samples per class in the sheet.")
@click.option("--target", type=click.Path(path_type=Path), help="For pseudo shards: the --target they were made "
              "from (an ImageFolder tree or a Hugging Face dataset); each row of the contact sheet then starts with "
              "its target image (framed in red) beside its samples, captioned with its top source classes "
              "(id:probability).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@read_options
def inspect(folder: Path, grid: Path | None, rows: int, cols: int, target: Path | None, as_json: bool,
            policy: ReadPolicy) -> None:
    """Counts per class, bytes and config of a shard folder; optionally a contact sheet.

    Members that the shard format does not define (docs/shards.md, "Reading shards you did not
    make") are listed, never decoded.
    """
    from .report import inspect_folder

    for line in inspect_folder(folder, grid, rows, cols, target, as_json, policy):
        click.echo(line)


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
    the license of the generator's own card. Publishing stays yours: `hf upload`
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
    from .models import describe_models

    for line in describe_models(folder, as_json):
        click.echo(line)
