"""`pttrain`: the training stage's command line."""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass, replace
from pathlib import Path

import click

from ptcommon import builtin
from ptcommon.cli import Group, InputError
from ptcommon.outputs import check_output_dir, check_output_file
from ptcommon.shards import UNSURE_CONFIDENCE, ForeignKeys, ReadPolicy, foreign_options, read_options

from .data import digits as digits_data
from .runs import RUNS_DIR
from .guard import DEFAULT_GUARD, GUARDS
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


@dataclass
class RunRequest:
    """The flags every training command shares, before the run starts."""

    out: Path | None
    settings: TrainSettings
    workers: int | None
    accum_steps: int | None
    amp: str
    compile: bool
    tensorboard: bool
    img_size: int | None
    in_chans: int | None
    device: str
    resume: bool
    quiet: bool
    augment: str

    def prepare(self, target, init: str, arch: str, init_weights: Path | None = None):
        """The model for TARGET (commands.prepare_model) and the augmentation policy, which --augment
        auto picks from the data's channels and the model's input size."""
        from .commands import choose_augment, model_input, prepare_model

        size, _ = model_input(target, init, arch, self.img_size, self.in_chans)
        augment = choose_augment(self.augment, target, size)
        model, config = prepare_model(target, init, arch, self.img_size, seed=self.settings.seed, augment=augment,
                                      in_chans=self.in_chans, init_weights=init_weights)
        return model, config, augment

    def start(self, command: str, augment: str, validation: str = ""):
        """Join torchrun's group if any, choose the run folder (rank 0 announces it, the augmentation
        policy AUGMENT, the effective learning rate and VALIDATION, what the run validates on). Called
        once every input has been checked, so that a refusal leaves no run folder behind."""
        from .commands import RunContext
        from .distributed import setup
        from .data.loading import choose_workers
        from .runs import CHECKPOINT_FILE, METRICS_FILE, claim_run_dir, wait_for_folder
        from .trainer import choose_accum_steps, effective_lr

        dist = setup(self.device)
        lock = None
        decision: tuple = (None, False, 1, None)
        if dist.main:  # one rank decides, so the ranks agree even on a default folder named by the clock
            try:
                run_dir, resume, lock = claim_run_dir(self.out, command, self.resume)
                try:
                    accum = choose_accum_steps(self.accum_steps, self.settings.batch_size, dist.world,
                                               run_dir / CHECKPOINT_FILE if resume else None)
                except InputError:
                    lock.release()
                    raise
                decision = (run_dir, resume, accum, None)
            except InputError as err:
                decision = (None, False, 1, str(err))
        run_dir, resume, accum, refusal = dist.share(decision)
        if refusal is not None:
            raise InputError(refusal)
        if dist.main:
            if self.resume and not resume:
                (run_dir / METRICS_FILE).unlink()
                click.echo(f"pttrain {command}: {run_dir} was stopped before its first checkpoint; starting it again",
                           err=True)
        global_batch = self.settings.batch_size * dist.world * accum
        lr, lr_rule = effective_lr(self.settings, global_batch)
        if dist.main:
            click.echo(f"pttrain {command}: run folder {run_dir}, augment {augment} (--augment {self.augment}), "
                       f"--opt {self.settings.opt} at lr {lr:.4g} ({lr_rule}) for a global batch of {global_batch}; "
                       f"{validation or 'no validation curve'}", err=True)
        dist.barrier()
        if not dist.main:
            wait_for_folder(run_dir)
        settings = replace(self.settings, accum_steps=accum, lr=lr)
        workers = choose_workers(self.workers, dist.cores)
        return RunContext(command, run_dir, settings, dist, workers, resume, not self.quiet,
                          augment, self.augment, lock=lock, amp=self.amp, compile=self.compile,
                          tensorboard=self.tensorboard, lr_rule=lr_rule)


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
                         "them undecayed (timm's parameter groups), as ImageNet recipes do; the default keeps the "
                         "setting the small-target studies ran with."),
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
                         "in RUN/tensorboard/ (pip install 'ptgen[tensorboard]')."),
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
            names = ("epochs", "min_steps", "batch_size", "weight_decay", "warmup_epochs", "ema_decay",
                     "checkpoint_every", "seed", "opt", "lr_base", "wd_norm_bias", "clip_grad")
            given = kw.pop("lr")
            if given is not None and kw["lr_base"] is not None:
                raise InputError(f"--lr {given:g} and --lr-base {kw['lr_base']:g}: give one (--lr as it is, --lr-base "
                                 "per 256 images of global batch)")
            check_opt(kw["opt"])
            mixing = {n: kw.pop(n) for n in ("smoothing", "mixup", "cutmix") if n in kw}
            settings = TrainSettings(lr=lr if given is None else given, **mixing, **{n: kw.pop(n) for n in names})
            check_output_dir(kw["out"] or RUNS_DIR, "--out")
            if kw["tensorboard"] and importlib.util.find_spec("tensorboard") is None:
                raise InputError("--tensorboard: the tensorboard package is not installed; pip install "
                                 "'ptgen[tensorboard]', or drop --tensorboard")
            kw["run"] = RunRequest(settings=settings, **{n: kw.pop(n) for n in
                                                         ("out", "workers", "accum_steps", "amp", "compile", "tensorboard",
                                                          "img_size", "in_chans", "device", "resume", "quiet",
                                                          "augment")})
            return command(**kw)

        return wrapper

    return decorate


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


def target_options(command):
    """How the target commands read --data: a validation split, and a Hugging Face dataset's columns."""
    for option in reversed([
        click.option("--val-split", type=click.FloatRange(0, 1, min_open=True, max_open=True),
                     help="Hold out this fraction of each class of the training images (drawn by --seed) for the "
                     "validation curve. [default: DATA's val part where it has one, else no curve]"),
        click.option("--image-column", help="A Hugging Face dataset's image column. [default: its first Image feature]"),
        click.option("--label-column", help="A Hugging Face dataset's label column. [default: its first ClassLabel "
                     "feature]"),
    ]):
        command = option(command)
    return command


def target_request(run: RunRequest, val_split: float | None, image_column: str | None, label_column: str | None):
    from .commands import TargetRequest

    return TargetRequest(val_split, image_column, label_column, seed=run.settings.seed)


INIT_HELP = ("A run folder (pp) to start from, builtin:NAME, timm:NAME (timm's pretrained weights of NAME, e.g. "
             "timm:resnet50, the ImageNet reference; or --init-weights), or none for scratch.")
init_weights_option = click.option(
    "--init-weights", type=click.Path(path_type=Path),
    help="For --init timm:NAME: a local state dict (.safetensors, or a .pth read with weights_only; a timm "
         "checkpoint's state_dict is taken), e.g. from timm's own train.py or without network access. Its classifier "
         "is replaced by the target's. [default: timm's pretrained weights from the hub]")
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
    of steps per epoch (count / (batch x ranks)), drawing shards with replacement.
    """
    from .commands import TargetInfo, open_shards, pp_validation, run_pp
    from ptcommon.runfolder import check_arch
    from .trainer import Supervised, check_mixing

    check_arch(arch)
    data = open_shards(shards, "--shards", labeled=True, policy=policy, skip_corrupt=skip_corrupt, keys=keys)
    train, val, validation = pp_validation(data, val_shards)
    target = TargetInfo.of_shards(data)
    check_mixing(run.settings, len(target.classes), f"--shards {shards}")
    model, config, augment = run.prepare(target, "none", arch)
    ctx = run.start("pp", augment, validation)
    run_pp(train, val, model, config, Supervised.of(ctx.settings, config.num_classes), ctx, whole=data)
    if ctx.dist.main:
        click.echo(f"pp done: {ctx.run_dir}")


@main.command(epilog=PREPROCESS_HELP)
@click.option("--data", required=True, help=DATA_HELP + ", or labeled shards: a ptgen folder at a path or URL, or a "
              "brace list of shards from another tool.")
@click.option("--init", required=True, help=INIT_HELP)
@init_weights_option
@click.option("--arch", default=DEFAULT_ARCH, show_default=True, help="Architecture for --init none.")
@target_options
@skip_corrupt_option
@read_options
@supervised_options
@foreign_options
@training_options(epochs=30, batch_size=64, lr=1e-3)
def finetune(data: str, init: str, init_weights: Path | None, arch: str, val_split: float | None,
             image_column: str | None, label_column: str | None, skip_corrupt: bool, policy: ReadPolicy,
             keys: ForeignKeys, run: RunRequest) -> None:
    """Fine-tune on the target task: the --init backbone with a fresh head for the target classes.

    With --init none the model starts from random weights (the scratch baseline). An epoch is one
    pass over the training images; top-1 on the validation images (DATA's val part, or
    --val-split) is logged after every epoch, and on the test part once, at the end (train.json's
    test_top1). From labeled shards, the classes (and their source ids) are the shards'.
    """
    from .commands import open_labeled, run_finetune
    from ptcommon.timm_specs import check_spec
    from .trainer import Supervised, check_mixing

    check_spec(init, "--init", init_weights)
    labeled = open_labeled(data, "--data", policy, skip_corrupt,
                           request=target_request(run, val_split, image_column, label_column), keys=keys)
    check_mixing(run.settings, len(labeled.target.classes), f"--data {data}")
    model, config, augment = run.prepare(labeled.target, init, arch, init_weights)
    ctx = run.start("finetune", augment, labeled.validation)
    run_finetune(labeled, init, model, config, Supervised.of(ctx.settings, config.num_classes), ctx)
    if ctx.dist.main:
        click.echo(f"finetune done: {ctx.run_dir}")


@main.command(epilog=PREPROCESS_HELP)
@click.option("--data", type=click.Path(path_type=Path), required=True, help=DATA_HELP + ".")
@click.option("--unlabeled", required=True,
              help="Pseudo shards from ptgen pseudo (a path or URL), shards from another tool (a brace list, e.g. "
                   "img2dataset's), or a folder of real unlabeled images (the oracle).")
@click.option("--init", required=True, help=INIT_HELP)
@init_weights_option
@click.option("--algo", type=click.Choice(["fixmatch", "uda"]), default="fixmatch", show_default=True)
@click.option("--arch", default=DEFAULT_ARCH, show_default=True, help="Architecture for --init none.")
@click.option("--threshold", type=click.FloatRange(0, 1), help="Confidence a weak-view prediction needs to count. "
              "The published values; 0.8, 0.95 and 0.99 scored alike on digits (docs/results.md, \"Ablations\"). "
              "[default: FixMatch 0.95, UDA 0.8]")
@click.option("--unlabeled-weight", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Weight of the unlabeled loss (lambda_u). 0 is the control: the run ends with finetune's model.")
@click.option("--ratio", type=click.IntRange(min=1), default=DEFAULT_RATIO, show_default=True,
              help="Unlabeled images per labeled image in a batch (mu). A step costs about 1 + 2 x ratio "
                   "finetune steps (weak and strong views).")
@click.option("--guard", type=click.Choice(GUARDS),
              help="How much the pseudo samples count, from the source classifier's confidence on the target images "
                   "that conditioned them (ptgen pseudo records it in each sample): none, all alike; weight, each by "
                   "its target's confidence; drop, leave out samples of targets under --guard-threshold; gate, all "
                   "of them where the targets' mean confidence reaches --guard-threshold, none otherwise. Where the "
                   "guard keeps no sample the run is finetune's. [default: " + DEFAULT_GUARD + " for pseudo shards: "
                   "of the three, the one that never fell below PP -> finetune on digits and kept the gain on "
                   "lookalikes-sharp (docs/results.md, \"P-SSL that never costs\"); a folder of real images takes "
                   "none]")
@click.option("--guard-threshold", type=click.FloatRange(0, 1),
              help="--guard drop and gate: the confidence a target (drop) or the targets on average (gate) need. "
                   f"[default: {UNSURE_CONFIDENCE}, ptgen pseudo's warning level]")
@click.option("--bn-stats", type=click.Choice(["mixed", "labeled"]),
              help="labeled: the unlabeled images pass on their own and batch norm's running statistics (used at "
                   "evaluation) come from the labeled target images alone; it lifted P-SSL on pseudo samples on every "
                   "seed measured (docs/results.md, \"Ablations\"), and with it the labeled branch is exactly "
                   "finetune's. mixed: labeled and unlabeled images pass through the model together (FixMatch's "
                   "way), so the running statistics are mostly the unlabeled ones'. [default: labeled; mixed under "
                   "torchrun, which takes one pass a backward, and at --batch-size 1]")
@click.option("--uda-temperature", type=click.FloatRange(min=0, min_open=True), default=0.4, show_default=True,
              help="UDA's sharpening temperature of the weak-view targets.")
@target_options
@read_options
@supervised_options
@foreign_options
@training_options(epochs=30, batch_size=64, lr=1e-3)
def pssl(data: Path, unlabeled: str, init: str, init_weights: Path | None, algo: str, arch: str, threshold,
         unlabeled_weight: float, ratio: int, guard: str | None, guard_threshold: float | None, uda_temperature: float,
         bn_stats: str, val_split: float | None, image_column: str | None, label_column: str | None,
         policy: ReadPolicy, keys: ForeignKeys, run: RunRequest) -> None:
    """Pseudo semi-supervised learning: labeled target images plus unlabeled pseudo samples.

    \b
    fixmatch  the weak view's confident argmax (>= threshold, default 0.95) is the strong
              view's cross-entropy target (Sohn et al. 2020; weight 1)
    uda       the weak view's prediction sharpened at temperature 0.4 is the strong view's KL
              target where the weak view is confident (>= 0.8) (Xie et al. 2020)
    Strong views: the weak view plus RandAugment (2 ops, magnitude 9; torchvision's under the glyph
    policy, timm's under the natural one) and random erasing. The labeled branch is finetune's,
    flag for flag (its batch, epochs, --min-steps floor, schedule, optimizer, --smoothing, --mixup,
    --cutmix and evaluation), so that --unlabeled-weight 0 gives finetune's model; the unlabeled
    batches come on top of it.
    """
    from ptcommon.launcher import detect

    from .commands import guard_record, is_real_images, open_labeled, open_unlabeled, run_pssl
    from ptcommon.timm_specs import check_spec
    from .ssl import ALGORITHMS, bn_stats_for
    from .trainer import Supervised, check_mixing

    check_spec(init, "--init", init_weights)
    labeled = open_labeled(data, "--data", policy, shards_allowed=False,
                           request=target_request(run, val_split, image_column, label_column))
    source = open_unlabeled(unlabeled, policy, keys)
    chosen = choose_guard(guard, guard_threshold, real_images=is_real_images(source), unlabeled=unlabeled)
    guarded = guard_record(source, chosen)
    check_mixing(run.settings, len(labeled.target.classes), f"--data {data}")
    model, config, augment = run.prepare(labeled.target, init, arch, init_weights)
    bn_stats = bn_stats_for(bn_stats, detect().world > 1, run.settings.batch_size)
    kwargs = {"weight": unlabeled_weight, "bn_stats": bn_stats, "labeled": Supervised.of(run.settings, config.num_classes)}
    if threshold is not None:
        kwargs["threshold"] = threshold
    if algo == "uda":
        kwargs["temperature"] = uda_temperature
    algorithm = ALGORITHMS[algo](**kwargs)
    ctx = run.start("pssl", augment, labeled.validation)
    run_pssl(labeled, source, init, model, config, algorithm, ratio, chosen, guarded, ctx)
    if ctx.dist.main:
        click.echo(f"pssl done: {ctx.run_dir}")


def choose_guard(kind: str | None, threshold: float | None, *, real_images: bool, unlabeled: str):
    """--guard and --guard-threshold, checked before anything is read or written."""
    from .guard import Guard

    if real_images:
        if kind not in (None, "none"):
            raise InputError(f"--guard {kind}: --unlabeled {unlabeled} is a folder of real images, which no target "
                             "conditioned, so there is no confidence to guard by; drop --guard")
        return Guard("none")
    kind = kind or DEFAULT_GUARD
    if threshold is not None and kind not in ("drop", "gate"):
        raise InputError(f"--guard-threshold {threshold:g} only serves --guard drop or gate (this run's guard is "
                         f"{kind}); leave the threshold out or choose one of those")
    return Guard(kind, UNSURE_CONFIDENCE if threshold is None else threshold)


@main.command(epilog=PREPROCESS_HELP)
@click.option("--data", type=click.Path(path_type=Path), required=True, help=DATA_HELP + ".")
@click.option("--init", default="none", show_default=True, help="The student's start: " + INIT_HELP)
@init_weights_option
@click.option("--teacher", default=builtin.DEFAULT_SPEC, show_default=True,
              help="The source classifier: builtin:NAME, a run folder, or timm:NAME (e.g. an ImageNet-1k model).")
@click.option("--teacher-weights", type=click.Path(path_type=Path),
              help="For timm:NAME without network access: a local state dict (.safetensors, or .pth read with "
                   "weights_only). [default: timm's pretrained weights from the hub]")
@click.option("--arch", default=DEFAULT_ARCH, show_default=True, help="The student's architecture.")
@click.option("--alpha", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Weight of the distillation term.")
@click.option("--kd-temperature", type=click.FloatRange(min=0, min_open=True), default=4.0, show_default=True,
              help="Softening temperature T of teacher and auxiliary head (the loss is scaled by T^2).")
@target_options
@training_options(epochs=30, batch_size=64, lr=1e-3)
def kd(data: Path, init: str, init_weights: Path | None, teacher: str, teacher_weights: Path | None, arch: str,
       alpha: float, kd_temperature: float, val_split: float | None, image_column: str | None,
       label_column: str | None, run: RunRequest) -> None:
    """Knowledge distillation baseline: the source classifier as teacher on the target's training images.

    The student (ARCH from random weights, or --init) has the target head and an auxiliary head over the
    teacher's classes: loss = cross-entropy on the target labels + alpha * T^2 *
    KL(teacher_T || auxiliary_T). Teacher and student see the same augmented image (the --augment
    policy's jitter, or crop, flip and colour jitter), each through its own resizing and
    normalisation. The run ships the student without the auxiliary head.
    """
    from ptcommon.classifiers import load_classifier

    from .commands import open_labeled, run_kd
    from ptcommon.timm_specs import check_spec

    check_spec(init, "--init", init_weights)
    labeled = open_labeled(data, "--data", ReadPolicy(), shards_allowed=False,
                           request=target_request(run, val_split, image_column, label_column))
    source = load_classifier(teacher, "--teacher", teacher_weights)
    model, config, augment = run.prepare(labeled.target, init, arch, init_weights)
    ctx = run.start("kd", augment, labeled.validation)
    run_kd(labeled, init, teacher, source, model, config, alpha, kd_temperature, ctx)
    if ctx.dist.main:
        click.echo(f"kd done: {ctx.run_dir}")


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
    from .commands import TargetRequest, run_eval, write_eval

    if confusion is None:
        confusion = Path("confusion.png") if builtin.is_builtin(run_spec) else Path(run_spec) / "confusion.png"
    for flag, path in (("--json", json_path), ("--confusion", confusion)):
        if path is not None:
            check_output_file(path, flag)
    import torch

    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise InputError("--device cuda: no GPU is visible to this process; pass --device cpu")
    result, names = run_eval(run_spec, data, workers, policy, skip_corrupt,
                             torch.device("cuda" if use_cuda else "cpu"), TargetRequest(None, image_column, label_column),
                             keys)
    write_eval(result, names, json_path, confusion)
    worst = sorted(range(len(names)), key=lambda i: result.per_class[i])[:5]
    click.echo("lowest per-class top-1: " + ", ".join(f"{names[i]} {result.per_class[i]:.2f}" for i in worst))
    click.echo(f"confusion matrix: {confusion}")
    click.echo(f"top1={result.top1:.4f} top5={result.top5:.4f} n={result.n}")


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
