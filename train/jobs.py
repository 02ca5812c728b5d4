"""What each training command does, callable from Python as from `pttrain`: its inputs opened and
checked and its model built before anything is written; then the process group joined, the run
folder claimed by one rank for all, the learning rate and accumulation fixed for the global batch;
then the run."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

import click

from ptcommon.cli import InputError
from ptcommon.shards import ForeignKeys, ReadPolicy
from ptcommon.timm_specs import check_spec

from .commands import (LabeledData, RunContext, TargetInfo, TargetRequest, choose_augment, guard_record,
                       is_real_images, model_input, open_extra, open_labeled, open_shards, open_unlabeled,
                       pp_validation, prepare_model, run_finetune, run_kd, run_pp, run_pssl)
from .data.extra import ExtraData
from .data.loading import choose_workers
from .distributed import setup
from .guard import choose_guard
from .runs import CHECKPOINT_FILE, METRICS_FILE, claim_run_dir, wait_for_folder
from .ssl import SSLOptions
from .trainer import Supervised, TrainSettings, check_mixing, choose_accum_steps, effective_lr


@dataclass(frozen=True)
class RunClaim:
    """Rank 0's decision on the run folder, shared with every rank: the folder, whether it resumes,
    the accumulation that keeps its global batch; or why it was refused."""

    run_dir: Path | None = None
    resume: bool = False
    accum_steps: int = 1
    refusal: str | None = None


@dataclass
class RunRequest:
    """What every training command shares, before the run starts: `prepare` builds the model, `start`
    the run."""

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

    def seeded(self, request: TargetRequest) -> TargetRequest:
        """REQUEST with the run's --seed, which draws a --val-split."""
        return replace(request, seed=self.settings.seed)

    def extra(self, spec: str | None, labeled: LabeledData, policy: ReadPolicy,
              skip_corrupt: bool = False) -> ExtraData | None:
        """--extra-labeled SPEC, matched to LABELED's classes (commands.open_extra), and its weight settled in
        the settings, where the loss (Supervised.of) and a resume read it."""
        extra = open_extra(spec, self.settings.extra_weight, labeled, policy, skip_corrupt)
        self.settings = replace(self.settings, extra_weight=extra.weight if extra is not None else None)
        return extra

    def prepare(self, target, init: str, arch: str, init_weights: Path | None = None):
        """The model for TARGET (commands.prepare_model) and the augmentation policy, which --augment
        auto picks from the data's channels and the model's input size."""
        size, _ = model_input(target, init, arch, self.img_size, self.in_chans)
        augment = choose_augment(self.augment, target, size)
        model, config = prepare_model(target, init, arch, self.img_size, seed=self.settings.seed, augment=augment,
                                      in_chans=self.in_chans, init_weights=init_weights)
        return model, config, augment

    def start(self, command: str, augment: str, validation: str = "") -> RunContext:
        """Join the launcher's process group if any and claim the run folder (rank 0 announces it, the
        augmentation policy AUGMENT, the effective learning rate and VALIDATION, what the run validates
        on). Called once every input has been checked, so that a refusal leaves no run folder behind."""
        dist = setup(self.device)
        lock = None
        claim = RunClaim()
        if dist.main:  # one rank decides, so the ranks agree even on a default folder named by the clock
            try:
                run_dir, resume, lock = claim_run_dir(self.out, command, self.resume)
                try:
                    accum = choose_accum_steps(self.accum_steps, self.settings.batch_size, dist.world,
                                               run_dir / CHECKPOINT_FILE if resume else None)
                except InputError:
                    lock.release()
                    raise
                claim = RunClaim(run_dir, resume, accum)
            except InputError as err:
                claim = RunClaim(refusal=str(err))
        claim = dist.share(claim)
        if claim.refusal is not None:
            raise InputError(claim.refusal)
        run_dir = claim.run_dir
        if dist.main and self.resume and not claim.resume:
            (run_dir / METRICS_FILE).unlink()
            click.echo(f"pttrain {command}: {run_dir} was stopped before its first checkpoint; starting it again",
                       err=True)
        global_batch = self.settings.batch_size * dist.world * claim.accum_steps
        lr, lr_rule = effective_lr(self.settings, global_batch)
        if dist.main:
            click.echo(f"pttrain {command}: run folder {run_dir}, augment {augment} (--augment {self.augment}), "
                       f"--opt {self.settings.opt} at lr {lr:.4g} ({lr_rule}) for a global batch of {global_batch}; "
                       f"{validation or 'no validation curve'}", err=True)
        dist.barrier()
        if not dist.main:
            wait_for_folder(run_dir)
        settings = replace(self.settings, accum_steps=claim.accum_steps, lr=lr)
        workers = choose_workers(self.workers, dist.cores)
        return RunContext(command, run_dir, settings, dist, workers, claim.resume, not self.quiet,
                          augment, self.augment, lock=lock, amp=self.amp, compile=self.compile,
                          tensorboard=self.tensorboard, lr_rule=lr_rule)


@dataclass(frozen=True)
class ModelStart:
    """Where a target model starts: --init (a run folder, builtin:NAME, timm:NAME or none), with
    --init-weights for timm:NAME, and --arch for none."""

    init: str
    init_weights: Path | None
    arch: str


def pp(shards: str, arch: str, val_shards: int | None, skip_corrupt: bool, policy: ReadPolicy, keys: ForeignKeys,
       run: RunRequest) -> Path | None:
    """`pttrain pp`: ARCH trained on the shards' source labels; the run folder (on rank 0)."""
    from ptcommon.runfolder import check_arch

    check_arch(arch)
    data = open_shards(shards, "--shards", labeled=True, policy=policy, skip_corrupt=skip_corrupt, keys=keys)
    train, val, validation = pp_validation(data, val_shards)
    target = TargetInfo.of_shards(data)
    check_mixing(run.settings, len(target.classes), f"--shards {shards}")
    model, config, augment = run.prepare(target, "none", arch)
    ctx = run.start("pp", augment, validation)
    run_pp(train, val, model, config, Supervised.of(ctx.settings, config.num_classes), ctx, whole=data)
    return ctx.run_dir if ctx.dist.main else None


def finetune(data: str, start: ModelStart, target: TargetRequest, skip_corrupt: bool, policy: ReadPolicy,
             keys: ForeignKeys, run: RunRequest, extra_labeled: str | None = None) -> Path | None:
    """`pttrain finetune`: START's backbone with a fresh head, trained on the target's labels (and on
    EXTRA_LABELED's, matched by class name); the run folder (on rank 0)."""
    check_spec(start.init, "--init", start.init_weights)
    labeled = open_labeled(data, "--data", policy, skip_corrupt, request=run.seeded(target), keys=keys)
    extra = run.extra(extra_labeled, labeled, policy, skip_corrupt)
    check_mixing(run.settings, len(labeled.target.classes), f"--data {data}")
    model, config, augment = run.prepare(labeled.target, start.init, start.arch, start.init_weights)
    ctx = run.start("finetune", augment, labeled.validation)
    run_finetune(labeled, start.init, model, config, Supervised.of(ctx.settings, config.num_classes), ctx, extra)
    return ctx.run_dir if ctx.dist.main else None


def pssl(data: Path, unlabeled: str, start: ModelStart, ssl: SSLOptions, target: TargetRequest, policy: ReadPolicy,
         keys: ForeignKeys, run: RunRequest, extra_labeled: str | None = None) -> Path | None:
    """`pttrain pssl`: finetune's run (with EXTRA_LABELED as finetune takes it) plus the SSL algorithm's
    loss on UNLABELED; the run folder (on rank 0)."""
    from ptcommon.launcher import detect

    check_spec(start.init, "--init", start.init_weights)
    labeled = open_labeled(data, "--data", policy, shards_allowed=False, request=run.seeded(target))
    extra = run.extra(extra_labeled, labeled, policy)
    source = open_unlabeled(unlabeled, policy, keys)
    guard = choose_guard(ssl.guard, ssl.guard_threshold, real_images=is_real_images(source), unlabeled=unlabeled)
    guarded = guard_record(source, guard)
    check_mixing(run.settings, len(labeled.target.classes), f"--data {data}")
    model, config, augment = run.prepare(labeled.target, start.init, start.arch, start.init_weights)
    algorithm = ssl.algorithm(Supervised.of(run.settings, config.num_classes), detect().world > 1,
                              run.settings.batch_size)
    ctx = run.start("pssl", augment, labeled.validation)
    run_pssl(labeled, source, start.init, model, config, algorithm, ssl.ratio, guard, guarded, ctx, extra)
    return ctx.run_dir if ctx.dist.main else None


@dataclass(frozen=True)
class Teacher:
    """kd's teacher (a classifier SPEC, with --teacher-weights for timm:NAME) and its loss."""

    teacher: str
    teacher_weights: Path | None
    alpha: float
    kd_temperature: float


def kd(data: Path, start: ModelStart, teacher: Teacher, target: TargetRequest, run: RunRequest) -> Path | None:
    """`pttrain kd`: the student trained on the target's labels and the teacher's soft outputs; the run folder (on rank 0)."""
    from ptcommon.classifiers import load_classifier

    check_spec(start.init, "--init", start.init_weights)
    labeled = open_labeled(data, "--data", ReadPolicy(), shards_allowed=False, request=run.seeded(target))
    source = load_classifier(teacher.teacher, "--teacher", teacher.teacher_weights)
    model, config, augment = run.prepare(labeled.target, start.init, start.arch, start.init_weights)
    ctx = run.start("kd", augment, labeled.validation)
    run_kd(labeled, start.init, teacher.teacher, source, model, config, teacher.alpha, teacher.kd_temperature, ctx)
    return ctx.run_dir if ctx.dist.main else None


@dataclass(frozen=True)
class Evaluation:
    """What `pttrain eval` scores: a run (folder or builtin:NAME) on DATA's test part."""

    run: str
    data: str
    target: TargetRequest
    json_path: Path | None
    confusion: Path | None  # None: RUN/confusion.png, or ./confusion.png for a built-in run
    workers: int
    device: str
    skip_corrupt: bool
    policy: ReadPolicy
    keys: ForeignKeys


def evaluate(request: Evaluation) -> Iterator[str]:
    """`pttrain eval`'s lines, the last `top1=... top5=... n=...`; the JSON and the confusion matrix written."""
    from ptcommon import builtin
    from ptcommon.device import choose_device
    from ptcommon.outputs import check_output_file

    from .commands import run_eval, write_eval

    r = request
    confusion = r.confusion
    if confusion is None:
        confusion = Path("confusion.png") if builtin.is_builtin(r.run) else Path(r.run) / "confusion.png"
    for flag, path in (("--json", r.json_path), ("--confusion", confusion)):
        if path is not None:
            check_output_file(path, flag)
    result, names = run_eval(r.run, r.data, r.workers, r.policy, r.skip_corrupt, choose_device(r.device), r.target,
                             r.keys)
    write_eval(result, names, r.json_path, confusion)
    worst = sorted(range(len(names)), key=lambda i: result.per_class[i])[:5]
    yield "lowest per-class top-1: " + ", ".join(f"{names[i]} {result.per_class[i]:.2f}" for i in worst)
    yield f"confusion matrix: {confusion}"
    yield f"top1={result.top1:.4f} top5={result.top5:.4f} n={result.n}"

