"""`pttrain`: the training stage's command line."""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import fields
from pathlib import Path

import click

from ptcommon import builtin
from ptcommon.cli import Group, InputError, packed
from ptcommon.outputs import check_output_dir
from ptcommon.shards import UNSURE_CONFIDENCE, ForeignKeys, ReadPolicy, foreign_options, read_options

from .commands import TargetRequest
from .data.extra import DEFAULT_EXTRA_WEIGHT
from .data import digits as digits_data
from .guard import DEFAULT_GUARD, GUARDS
from .jobs import ModelStart, RunRequest, Teacher
from .runs import RUNS_DIR
from .ssl import SSLOptions
from .trainer import OPT_ALIASES, TrainSettings

DEFAULT_ARCH = "resnet18"
DEFAULT_MIN_STEPS = 300
DEFAULT_RATIO = 1
PREPROCESS_HELP = ("A new model takes the data's channels (RGB when any training image is in colour) and, for RGB "
                   "images at least as large as the architecture's pretrained input size, that size (--in-chans, "
                   "--img-size). "
                   "Images are converted to the model's channels (grayscale or RGB), then preprocessed by "
                   "one of two policies (--augment). glyph: resized to --img-size square (bilinear, "
                   "antialiased), scaled to [0, 1] and normalised (0.5/0.5 for a new model); training adds a "
                   "mild random affine jitter, no flips. natural: timm's create_transform with the "
                   "architecture's pretrained_cfg (a new model normalises with its mean/std, e.g. ImageNet's): "
                   "training takes a random resized crop, a horizontal flip and a colour jitter; evaluation "
                   "resizes and takes the center crop (crop_pct); a model started from --init timm:NAME normalises and "
                   "resizes as its weights were trained. auto picks by the data's channels and the model's input "
                   "size: glyph for grayscale and RGB data alike, as measured: natural did not beat it on RGB photo "
                   "patches (docs/results.md).")


@click.group(cls=Group, name="pttrain", context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ptgen", prog_name="pttrain")
def main() -> None:
    """Train target classifiers with pseudo pre-training and pseudo semi-supervised learning.

    \b
    pttrain data digits  export the built-in target task
    pttrain pp           pseudo pre-training on ptgen shards
    pttrain finetune     a new target head on a pre-trained run (or --init none: scratch)
    pttrain pssl         semi-supervised: labeled target images + unlabeled pseudo samples
    pttrain kd           the knowledge-distillation baseline
    pttrain eval         top-1 / top-5 / per-class accuracy of a run
    Runs work under torchrun or in an srun step (DistributedDataParallel; gloo on CPU, nccl on
    GPUs; docs/gpu.md).
    """


def training_options(epochs: int, batch_size: int, lr: float):
    """The flags every training command shares; the command receives them as one RunRequest, `run`."""

    def decorate(command):
        options = [
            click.option("--out", type=click.Path(path_type=Path), help="Run folder. [default: runs/<command>-<UTC time>]"),
            click.option("--epochs", type=click.IntRange(min=1), default=epochs, show_default=True),
            click.option("--min-steps", type=click.IntRange(min=0), default=DEFAULT_MIN_STEPS, show_default=True,
                         help="At least this many optimizer steps: with few images (one or two batches an epoch) "
                         "--epochs is raised until the run takes them; larger data is unaffected. Measured on "
                         "few-shot targets in docs/results.md; 0 keeps --epochs as given."),
            click.option("--batch-size", type=click.IntRange(min=1), default=batch_size, show_default=True,
                         help="Per process and accumulated batch (--accum-steps)."),
            click.option("--lr", type=click.FloatRange(min=0, min_open=True),
                         help=f"Peak learning rate, as given whatever the global batch; cosine decay after a linear "
                         f"warm-up. [default: {lr:g}, or from --lr-base]"),
            click.option("--lr-base", type=click.FloatRange(min=0, min_open=True),
                         help="Peak learning rate per 256 images of global batch (timm's rule): the run takes "
                         "lr-base x global batch / 256 for SGD and LARS, lr-base x sqrt(global batch / 256) for "
                         "AdamW and LAMB; the start line and train.json give the rate it took. Instead of --lr."),
            click.option("--opt", default="adamw", show_default=True,
                         help="Optimizer, by timm's create_optimizer_v2: adamw, sgd (momentum 0.9), nesterov, lamb, "
                         "lars, or any other name timm.optim.list_optimizers() gives."),
            click.option("--weight-decay", type=click.FloatRange(min=0), default=0.05, show_default=True),
            click.option("--wd-norm-bias/--no-wd-norm-bias", default=True, show_default=True,
                         help="Weight decay on norm layers' weights and on biases too. --no-wd-norm-bias leaves "
                         "them undecayed (timm's parameter groups), as ImageNet recipes do; the default decays every "
                         "parameter alike."),
            click.option("--clip-grad", type=click.FloatRange(min=0, min_open=True),
                         help="Clip the gradients' global norm to this before each optimizer step. [default: no clipping]"),
            click.option("--warmup-epochs", type=click.FloatRange(min=0), default=1.0, show_default=True),
            click.option("--ema", "ema_decay", type=click.FloatRange(0, 1, max_open=True), default=0.0, show_default=True,
                         help="EMA decay of the weights (0 = off); the run ships the EMA weights."),
            click.option("--checkpoint-every", type=click.IntRange(min=1), default=200, show_default=True,
                         help="Steps between checkpoints."),
            click.option("--seed", type=int, default=0, show_default=True),
            click.option("--workers", type=click.IntRange(min=0),
                         help="DataLoader worker processes per training process (they persist across epochs). "
                         "More than the process's cores is capped there, with a warning. [default: the node's cores "
                         "/ training processes on it, or in an srun step SLURM_CPUS_PER_TASK]"),
            click.option("--accum-steps", type=click.IntRange(min=1),
                         help="Batches whose gradients one optimizer step sums: the global batch is --batch-size x "
                         "processes x --accum-steps. [default: 1; on --resume, what keeps the run's global batch "
                         "on this number of processes]"),
            click.option("--amp", type=click.Choice(["auto", "bf16", "fp16", "off"]), default="auto",
                         show_default=True, help="Mixed precision. auto: bf16 on a GPU that has it, fp16 with a "
                         "gradient scaler on one without, off (fp32, bit-for-bit repeatable) on CPU."),
            click.option("--tensorboard", is_flag=True, help="Also write the metrics as TensorBoard event files, "
                         "in RUN/tensorboard/ (pip install -e '.[tensorboard]')."),
            click.option("--compile", is_flag=True, help="torch.compile the model: faster steps on a GPU after a "
                         "warm-up of a minute or so."),
            click.option("--img-size", type=click.IntRange(min=8),
                         help="Model input size, for a new model or --init timm:NAME (a finetune from a run keeps the "
                         "run's). [default: for RGB data whose images (median longer side) are at least the "
                         "architecture's pretrained input size (224 for resnet50), that size; otherwise the data's "
                         "size, raised to 32 when smaller: timm's CNNs downsample 32x, and 16 px glyphs resized to "
                         "32 trained resnet18 better, docs/results.md]"),
            click.option("--in-chans", type=click.Choice(["1", "3"]), callback=lambda c, p, v: v and int(v),
                         help="Model input channels, for a new model or --init timm:NAME. [default: 3 when any "
                         "training image is in colour (shards: their dataset.json), else 1; 3 for --init timm:NAME]"),
            click.option("--augment", type=click.Choice(["auto", "glyph", "natural"]), default="auto",
                         show_default=True, help="Preprocessing and augmentation policy (below). auto: from the data's "
                         "channels (shards' dataset.json, the training images) and the model's input size: glyph for "
                         "grayscale and, as measured, for RGB too (docs/results.md)."),
            click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True),
            click.option("--resume", is_flag=True, help="Continue the unfinished run in --out from its last checkpoint, "
                         "on any number of processes that can keep its global batch (--accum-steps)."),
            click.option("--quiet", is_flag=True, help="No progress bar."),
        ]
        for option in reversed(options):
            command = option(command)

        @functools.wraps(command)
        def wrapper(**kw):
            given = kw.pop("lr")
            if given is not None and kw["lr_base"] is not None:
                raise InputError(f"--lr {given:g} and --lr-base {kw['lr_base']:g}: give one (--lr as it is, --lr-base "
                                 "per 256 images of global batch)")
            check_opt(kw["opt"])
            run_fields = {f.name for f in fields(RunRequest)}
            # --accum-steps is the run's request; TrainSettings' accum_steps is what `start` settles on.
            settings = TrainSettings(lr=lr if given is None else given, **{
                f.name: kw.pop(f.name) for f in fields(TrainSettings) if f.name in kw and f.name not in run_fields})
            check_output_dir(kw["out"] or RUNS_DIR, "--out")
            if kw["tensorboard"] and importlib.util.find_spec("tensorboard") is None:
                raise InputError("--tensorboard: the tensorboard package is not installed; pip install "
                                 "-e '.[tensorboard]', or drop --tensorboard")
            kw["run"] = RunRequest(settings=settings, **{n: kw.pop(n) for n in run_fields - {"settings"}})
            return command(**kw)

        return wrapper

    return decorate


def done(command: str, run_dir: Path | None) -> None:
    """The last line of a finished run, on the rank that wrote it."""
    if run_dir is not None:
        click.echo(f"{command} done: {run_dir}")


def check_opt(name: str) -> None:
    """--opt: a name timm's create_optimizer_v2 knows (or sgd, ours for plain momentum SGD)."""
    from timm.optim import list_optimizers

    known = sorted(set(list_optimizers()) | set(OPT_ALIASES))
    if name.lower() not in known:
        import difflib

        close = difflib.get_close_matches(name.lower(), known, n=4, cutoff=0.5)
        raise InputError(f"--opt {name}: not an optimizer timm knows; " +
                         (f"closest: {', '.join(close)}" if close else "e.g. adamw, sgd, nesterov, lamb, lars"))


def supervised_options(command):
    """The loss options of the supervised commands (pp, finetune) and of pssl's labeled branch; they reach
    TrainSettings."""
    for option in reversed([
        click.option("--smoothing", type=click.FloatRange(0, 1, max_open=True), default=0.0, show_default=True,
                     help="Label smoothing of the cross-entropy."),
        click.option("--mixup", type=click.FloatRange(min=0), default=0.0, show_default=True,
                     help="Mixup's alpha (timm's Mixup, with the soft-target cross-entropy); 0 is off. ImageNet "
                     "recipes take 0.1 to 0.8. Needs an even --batch-size."),
        click.option("--cutmix", type=click.FloatRange(min=0), default=0.0, show_default=True,
                     help="CutMix's alpha; 0 is off. With --mixup as well, each batch takes one of the two at random."),
    ]):
        command = option(command)
    return command


def extra_options(command):
    """--extra-labeled and --extra-weight: labeled extra images for the target's loss (finetune, and pssl's
    labeled branch); the weight reaches TrainSettings."""
    for option in reversed([
        click.option("--extra-labeled", help="Synthetic images as labeled extra data, their labels matched to "
                     "DATA's classes by name: a ptgen synth folder (its dataset.json class names, e.g. a "
                     "text-to-image model sampled with the target's own names, ptgen synth --class-names), ptgen "
                     "pseudo shards (each sample's target_class, the class of the target image it was grown from), "
                     "or another tool's labeled shards as a brace list (class names from its _info.json); a path "
                     "or URL. Every class it names must be one of DATA's. Each step adds a batch of them as large "
                     "as the target batch (--batch-size), streamed from their shards, and the "
                     "labeled loss becomes CE(target batch) + --extra-weight x CE(extra batch); both batches "
                     "pass through the model together, so batch norm's statistics come from both. train.json "
                     "records them (extra_labeled). [default: none]"),
        click.option("--extra-weight", type=click.FloatRange(min=0),
                     help=f"With --extra-labeled: the weight of the extra images' cross-entropy. 0 is the control: "
                     f"they are checked but not read, and the run is the one without them. [default: "
                     f"{DEFAULT_EXTRA_WEIGHT:g}, an extra image counts as much as a target image; 0.5 and 1 scored alike "
                     f"in docs/method.md, \"Look-alikes grown from the target images\"]"),
    ]):
        command = option(command)
    return command


TARGET_OPTIONS = [
    click.option("--val-split", type=click.FloatRange(0, 1, min_open=True, max_open=True),
                 help="Hold out this fraction of each class of the training images (drawn by --seed) for the "
                 "validation curve. [default: DATA's val part where it has one, else no curve]"),
    click.option("--image-column", help="A Hugging Face dataset's image column. [default: its first Image feature]"),
    click.option("--label-column", help="A Hugging Face dataset's label column. [default: its first ClassLabel "
                 "feature]"),
]
# How the target commands read --data: a validation split, and a Hugging Face dataset's columns.
target_options = packed(TargetRequest, "target", TARGET_OPTIONS)


INIT_HELP = ("A run folder (pp) to start from, builtin:NAME, timm:NAME (timm's pretrained weights of NAME, e.g. "
             "timm:resnet50, the ImageNet reference; or --init-weights), or none for scratch.")
init_weights_option = click.option(
    "--init-weights", type=click.Path(path_type=Path),
    help="For --init timm:NAME: a local state dict (.safetensors, or a .pth read with weights_only; a timm "
         "checkpoint's state_dict is taken), e.g. from timm's own train.py or without network access. Its classifier "
         "is replaced by the target's. [default: timm's pretrained weights from the hub]")
def start_options(init: click.Option, arch_help: str):
    """--init (as INIT declares it), --init-weights and --arch, handed to the command as one ModelStart."""
    return packed(ModelStart, "start", [init, init_weights_option, click.option(
        "--arch", default=DEFAULT_ARCH, show_default=True, help=arch_help)])


DATA_HELP = ("ImageFolder tree with train/ (and val/, test/), a Hugging Face dataset (hf:NAME, a save_to_disk folder, "
             "or hf:FOLDER of parquet / imagefolder files; splits train, validation, test)")


skip_corrupt_option = click.option("--skip-corrupt", is_flag=True,
                                   help="With shards: skip damaged shards or samples with a warning, instead of stopping.")


@main.command(epilog=PREPROCESS_HELP)
@click.option("--shards", required=True, help="Folder written by ptgen synth, at a path or an s3://, gs://, "
              "http(s):// or hf:// URL, or labeled shards from another tool as a brace list "
              "('DIR/train-{000000..000099}.tar').")
@click.option("--arch", default=DEFAULT_ARCH, show_default=True, help="Any timm architecture name.")
@click.option("--val-shards", type=click.IntRange(min=0),
              help="Hold out the folder's last N shards and score top-1 on them after every epoch (train.json names "
                   "them). [default: 1% of the shards where that is 2 or more (200 shards and up), else none]")
@skip_corrupt_option
@read_options
@supervised_options
@foreign_options
@training_options(epochs=10, batch_size=128, lr=2e-3)
def pp(shards: str, arch: str, val_shards: int | None, skip_corrupt: bool, policy: ReadPolicy, keys: ForeignKeys,
       run: RunRequest) -> None:
    """Pseudo pre-training: train ARCH on the shards' source labels.

    Class count and names come from the shards' dataset.json. Every rank takes the same number
    of steps per epoch (count / (batch x ranks)); each epoch deals the shards anew over every
    rank's loader workers, each shard once before any again.
    """
    from .jobs import pp as run_pp

    done("pp", run_pp(shards, arch, val_shards, skip_corrupt, policy, keys, run))


@main.command(epilog=PREPROCESS_HELP)
@click.option("--data", required=True, help=DATA_HELP + ", or labeled shards: a ptgen folder at a path or URL, or a "
              "brace list of shards from another tool.")
@start_options(click.option("--init", required=True, help=INIT_HELP), "Architecture for --init none.")
@target_options
@skip_corrupt_option
@read_options
@supervised_options
@extra_options
@foreign_options
@training_options(epochs=30, batch_size=64, lr=1e-3)
def finetune(data: str, start: ModelStart, target: TargetRequest, skip_corrupt: bool, policy: ReadPolicy,
             keys: ForeignKeys, run: RunRequest, extra_labeled: str | None) -> None:
    """Fine-tune on the target task: the --init backbone with a fresh head for the target classes.

    With --init none the model starts from random weights (the scratch baseline). An epoch is one
    pass over the training images; top-1 on the validation images (DATA's val part, or
    --val-split) is logged after every epoch, and on the test part once, at the end (train.json's
    test_top1). From labeled shards, the classes (and their source ids) are the shards'.
    """
    from .jobs import finetune as run_finetune

    done("finetune", run_finetune(data, start, target, skip_corrupt, policy, keys, run, extra_labeled))


SSL_OPTIONS = [
    click.option("--algo", type=click.Choice(["fixmatch", "uda"]), default="fixmatch", show_default=True),
    click.option("--threshold", type=click.FloatRange(0, 1), help="Confidence a weak-view prediction needs to count. "
                  "The published values; 0.8, 0.95 and 0.99 scored alike on digits (docs/results.md, \"Ablations\"). "
                  "[default: FixMatch 0.95, UDA 0.8]"),
    click.option("--unlabeled-weight", type=click.FloatRange(min=0), default=1.0, show_default=True,
                  help="Weight of the unlabeled loss (lambda_u). 0 is the control: the run ends with finetune's model."),
    click.option("--ratio", type=click.IntRange(min=1), default=DEFAULT_RATIO, show_default=True,
                  help="Unlabeled images per labeled image in a batch (mu). A step costs about 1 + 2 x ratio "
                       "finetune steps (weak and strong views)."),
    click.option("--guard", type=click.Choice(GUARDS),
                  help="How much the pseudo samples count, from the source classifier's confidence on the target images "
                       "that conditioned them (ptgen pseudo records it in each sample): none, all alike; weight, each by "
                       "its target's confidence; drop, leave out samples of targets under --guard-threshold; gate, all "
                       "of them where the targets' mean confidence reaches --guard-threshold, none otherwise. Where the "
                       "guard keeps no sample the run is finetune's. [default: " + DEFAULT_GUARD + " for pseudo shards: "
                       "of the three, the one that never fell below PP -> finetune on digits and kept the gain on "
                       "lookalikes-sharp (docs/results.md, \"P-SSL that never costs\"); a folder of real images takes "
                       "none]"),
    click.option("--guard-threshold", type=click.FloatRange(0, 1),
                  help="--guard drop and gate: the confidence a target (drop) or the targets on average (gate) need. "
                       f"[default: {UNSURE_CONFIDENCE}, ptgen pseudo's warning level]"),
    click.option("--bn-stats", type=click.Choice(["mixed", "labeled"]),
                  help="labeled: the unlabeled images pass on their own and batch norm's running statistics (used at "
                       "evaluation) come from the labeled target images alone; it lifted P-SSL on pseudo samples on every "
                       "seed measured (docs/results.md, \"Ablations\"), and with it the labeled branch is exactly "
                       "finetune's. mixed: labeled and unlabeled images pass through the model together (FixMatch's "
                       "way), so the running statistics are mostly the unlabeled ones'. [default: labeled; mixed under "
                       "torchrun, which takes one pass a backward, and at --batch-size 1]"),
    click.option("--uda-temperature", type=click.FloatRange(min=0, min_open=True), default=0.4, show_default=True,
                  help="UDA's sharpening temperature of the weak-view targets."),
]


@main.command(epilog=PREPROCESS_HELP)
@click.option("--data", type=click.Path(path_type=Path), required=True, help=DATA_HELP + ".")
@click.option("--unlabeled", required=True,
              help="Pseudo shards from ptgen pseudo (a path or URL), shards from another tool (a brace list, e.g. "
                   "img2dataset's), or a folder of real unlabeled images (the oracle).")
@start_options(click.option("--init", required=True, help=INIT_HELP), "Architecture for --init none.")
@packed(SSLOptions, "ssl", SSL_OPTIONS)
@target_options
@read_options
@supervised_options
@extra_options
@foreign_options
@training_options(epochs=30, batch_size=64, lr=1e-3)
def pssl(data: Path, unlabeled: str, start: ModelStart, ssl: SSLOptions, target: TargetRequest, policy: ReadPolicy,
         keys: ForeignKeys, run: RunRequest, extra_labeled: str | None) -> None:
    """Pseudo semi-supervised learning: labeled target images plus unlabeled pseudo samples.

    \b
    fixmatch  the weak view's confident argmax (>= threshold, default 0.95) is the strong
              view's cross-entropy target (Sohn et al. 2020; weight 1)
    uda       the weak view's prediction sharpened at temperature 0.4 is the strong view's KL
              target where the weak view is confident (>= 0.8) (Xie et al. 2020)
    Strong views: the weak view plus RandAugment (2 ops, magnitude 9; torchvision's under the glyph
    policy, timm's under the natural one) and random erasing. The labeled branch is finetune's,
    flag for flag (its batch, epochs, --min-steps floor, schedule, optimizer, --smoothing, --mixup,
    --cutmix, --extra-labeled and evaluation), so that --unlabeled-weight 0 gives finetune's model;
    the unlabeled batches come on top of it.
    """
    from .jobs import pssl as run_pssl

    done("pssl", run_pssl(data, unlabeled, start, ssl, target, policy, keys, run, extra_labeled))


TEACHER_OPTIONS = [
    click.option("--teacher", default=builtin.DEFAULT_SPEC, show_default=True,
                  help="The source classifier: builtin:NAME, a run folder, or timm:NAME (e.g. an ImageNet-1k model)."),
    click.option("--teacher-weights", type=click.Path(path_type=Path),
                  help="For timm:NAME without network access: a local state dict (.safetensors, or .pth read with "
                       "weights_only). [default: timm's pretrained weights from the hub]"),
    click.option("--alpha", type=click.FloatRange(min=0), default=1.0, show_default=True,
                  help="Weight of the distillation term."),
    click.option("--kd-temperature", type=click.FloatRange(min=0, min_open=True), default=4.0, show_default=True,
                  help="Softening temperature T of teacher and auxiliary head (the loss is scaled by T^2)."),
]


@main.command(epilog=PREPROCESS_HELP)
@click.option("--data", type=click.Path(path_type=Path), required=True, help=DATA_HELP + ".")
@start_options(click.option("--init", default="none", show_default=True, help="The student's start: " + INIT_HELP),
               "The student's architecture.")
@packed(Teacher, "teacher", TEACHER_OPTIONS)
@target_options
@training_options(epochs=30, batch_size=64, lr=1e-3)
def kd(data: Path, start: ModelStart, teacher: Teacher, target: TargetRequest, run: RunRequest) -> None:
    """Knowledge distillation baseline: the source classifier as teacher on the target's training images.

    The student (ARCH from random weights, or --init) has the target head and an auxiliary head over the
    teacher's classes: loss = cross-entropy on the target labels + alpha * T^2 *
    KL(teacher_T || auxiliary_T). Teacher and student see the same augmented image (the --augment
    policy's jitter, or crop, flip and colour jitter), each through its own resizing and
    normalisation. The run ships the student without the auxiliary head.
    """
    from .jobs import kd as run_kd

    done("kd", run_kd(data, start, teacher, target, run))


@main.command("eval")
@click.option("--run", "run_spec", required=True, help="A run folder or builtin:NAME.")
@click.option("--data", required=True,
              help="An ImageFolder tree (its test/ is scored), a Hugging Face dataset (its test split) or labeled "
                   "shards (a ptgen folder at a path or URL, or a brace list).")
@click.option("--image-column", help="A Hugging Face dataset's image column. [default: its first Image feature]")
@click.option("--label-column", help="A Hugging Face dataset's label column. [default: its first ClassLabel feature]")
@click.option("--json", "json_path", type=click.Path(path_type=Path), help="Write {top1, top5, n} here.")
@click.option("--confusion", type=click.Path(path_type=Path), help="Confusion-matrix PNG. [default: RUN/confusion.png, "
              "or ./confusion.png for a built-in run]")
@click.option("--workers", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="auto: the GPU when there is one.")
@skip_corrupt_option
@read_options
@foreign_options
def evaluate_cmd(run_spec: str, data: str, image_column: str | None, label_column: str | None, json_path, confusion,
                 workers: int, device: str, skip_corrupt: bool, policy: ReadPolicy, keys: ForeignKeys) -> None:
    """Top-1, top-5 and per-class accuracy of a run; the last line is `top1=... top5=... n=...`."""
    from .jobs import Evaluation, evaluate

    for line in evaluate(Evaluation(run_spec, data, TargetRequest(None, image_column, label_column), json_path,
                                    confusion, workers, device, skip_corrupt, policy, keys)):
        click.echo(line)


@main.group()
def data() -> None:
    """Export the built-in target datasets."""


@data.command("digits")
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Folder to write. It must not exist or be empty, unless it already holds this very export "
    "(then nothing is written and the command succeeds) or --overwrite is given.",
)
@click.option(
    "--labels-per-class",
    "labels_per_class",
    type=int,
    default=digits_data.DEFAULT_LABELS_PER_CLASS,
    show_default=True,
    help="Labeled training images per digit, drawn from the training pool. Allowed: 1 up to what the "
    "smallest digit class holds in the pool (87).",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Chooses which pool images become the labeled ones. The test half does not depend on it.",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace a previous digits export in --out (its train/, test/, unlabeled/ and split.json). "
    "A folder holding anything else is still refused.",
)
def digits(out: Path, labels_per_class: int, seed: int, overwrite: bool) -> None:
    """Export scikit-learn's handwritten digits as an ImageFolder tree: the built-in target task.

    The 1,797 real 8x8 digits (values 0..16) become 16x16 grayscale PNGs, upsampled bilinearly,
    ink white on black like the built-in glyphs. The tree under OUT:

    \b
      test/<digit>/<row>.png      a fixed stratified half (899 images), the same for every seed
      train/<digit>/<row>.png     --labels-per-class images per digit, drawn by --seed
      unlabeled/images/<row>.png  the rest of the training pool, labels withheld;
                                  only for the oracle comparison, never for the method
      split.json                  the arguments and the counts per part and per digit

    Digit folders are named 0 to 9; <row> is the image's row in sklearn's load_digits(). The
    parts are disjoint, and the same arguments always give byte-identical files.
    """
    check_output_dir(out, "--out")
    click.echo(digits_data.export(out, labels_per_class, seed, overwrite))
