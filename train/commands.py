"""What each pttrain command does, between its flags (cli.py) and the shared loop (trainer.py).

The CLI opens and checks every input once (`open_labeled`, `open_unlabeled`, `prepare_model`)
before the run folder exists, and hands what it checked to the command here; a command only
wires data, model and objective into the loop, and `fit_and_save` is the tail they all share.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import torch
from torch.utils.data import DataLoader

from ptcommon.cli import InputError
from ptcommon.hf_data import is_hf, open_hf
from ptcommon.runfolder import ModelConfig, create_model, load_run, resolve_run, run_config
from ptcommon.shards import ForeignKeys, ReadPolicy, is_shard_folder
from ptcommon.storage import is_url
from ptcommon.timm_specs import base_arch, data_config, is_timm, timm_name

from .data.folder import UnlabeledImages, labeled_split
from .data.extra import DEFAULT_EXTRA_WEIGHT, ExtraData, match_classes
from .data.foreign import ForeignShards, is_foreign
from .data.hf import hf_part
from .data.labeled import LabeledImages, split_off
from .data.loading import build_loader, drawn_batches, stream_batches
from .data.shards import ShardSet
from .data.transforms import Preprocess, auto_policy, per_channel, weak_and_strong
from .distributed import Dist
from .evaluate import Evaluation, evaluate, plot_confusion
from .guard import Guard, target_confidences
from .models import check_input_size, default_image_size, save_run
from .runs import RunLock
from .seeding import seed_everything
from .ssl import FixMatch
from .trainer import Algorithm, Supervised, Trainer, TrainSettings
from .validation import Scorer, held_out_names, hold_out_shards, image_scorer, shard_scorer

VAL_SPLIT_HINT = 0.1  # the fraction the start line suggests to a target without validation images

DEFAULT_MEAN_STD = (0.5, 0.5)  # a new model's normalisation under the glyph policy

EXTRA_SEED_OFFSET = 2  # the extra labeled images' stream (pssl's folder of unlabeled images takes 1)


@dataclass
class RunContext:
    """Where and how a training command runs: built by the CLI once every input has been checked."""

    command: str
    run_dir: Path
    settings: TrainSettings
    dist: Dist
    workers: int
    resume: bool
    progress: bool
    augment: str = "glyph"  # the policy the run trains with (train/data/transforms.py)
    augment_flag: str = "glyph"  # what --augment said (auto, or a policy)
    lock: RunLock | None = None  # rank 0's hold on the run folder, released when the run ends
    amp: str = "auto"  # --amp
    compile: bool = False  # --compile
    tensorboard: bool = False  # --tensorboard
    lr_rule: str = ""  # how the effective learning rate was reached, for train.json

    @property
    def pin(self) -> bool:
        """Pinned host memory, for copies to a GPU that overlap the step."""
        return self.dist.device.type == "cuda"

    def per_step(self, batch_size: int) -> int:
        """Samples one optimizer step takes from a stream batched at BATCH_SIZE: over every rank and
        every accumulated batch."""
        return batch_size * self.dist.world * self.settings.accum_steps


@dataclass
class TargetInfo:
    """What a new model needs to know of its training data."""

    classes: list[str]
    in_chans: int
    image_size: int
    source_ids: list[int] | None = None

    @classmethod
    def of_shards(cls, data: ShardSet) -> "TargetInfo":
        return cls(data.class_names, data.channels, data.image_size, data.class_ids)

    @classmethod
    def of_images(cls, train_set: LabeledImages) -> "TargetInfo":
        """Channels and size of the training images as a whole (LabeledImages.shape): any colour image
        makes an RGB model."""
        in_chans, size = train_set.shape()
        return cls(train_set.classes, in_chans, size)


@dataclass
class TargetRequest:
    """How to read a target: --val-split, and a Hugging Face dataset's --image-column / --label-column."""

    val_split: float | None = None
    image_column: str | None = None
    label_column: str | None = None
    seed: int = 0  # --seed, which draws the --val-split


@dataclass
class LabeledData:
    """Labeled target data, opened once: labeled shards, or the train part of an ImageFolder tree or a
    Hugging Face dataset, with its validation and test parts where it has them."""

    root: Path | str
    target: TargetInfo
    shards: ShardSet | None = None
    train_set: LabeledImages | None = None
    val_set: LabeledImages | None = None
    test_set: Callable[[], LabeledImages | None] = lambda: None  # read only at the run's end
    validation: str = ""  # what the during-training curve is drawn on, or how to get one

    def record(self) -> dict:
        """train.json's account of the parts the run used."""
        return {"train_n": len(self.train_set) if self.train_set is not None else None,
                "val_n": len(self.val_set) if self.val_set is not None else None}


def is_shards(spec: str) -> bool:
    """Whether SPEC names shards (a ptgen folder, a URL, a brace list of tars) rather than a folder of
    images or a Hugging Face dataset (hf:NAME, which a URL parser would take for a scheme)."""
    return not is_hf(spec) and (is_foreign(spec) or is_url(spec) or is_shard_folder(spec))


def open_shards(spec: str, flag: str, *, labeled: bool | None = None, policy: ReadPolicy | None = None,
                skip_corrupt: bool = False, keys: ForeignKeys = ForeignKeys()) -> ShardSet:
    """The one place a kind of shard set is chosen: a ptgen folder (dataset.json) at a path or URL,
    or WebDataset shards from another tool named by a brace list (train/data/foreign.py)."""
    if is_foreign(spec):
        return ForeignShards(spec, flag, labeled, policy, skip_corrupt, keys)
    return ShardSet(spec, flag, labeled=labeled, policy=policy, skip_corrupt=skip_corrupt)


def _validation_note(data: LabeledData, split: float | None, root) -> str:
    if data.val_set is None:
        part = "has no validation split" if is_hf(root) else f"has no val/ part; add {Path(root) / 'val'}/<class>/ images"
        return f"no validation curve: --data {root} {part} or pass --val-split {VAL_SPLIT_HINT}"
    where = f"--val-split {split:g} of train" if split is not None else "its val part"
    return f"validation on {where} ({len(data.val_set)} images)"


def open_labeled(root: Path | str, flag: str, policy: ReadPolicy, skip_corrupt: bool = False,
                 shards_allowed: bool = True, request: TargetRequest | None = None,
                 keys: ForeignKeys = ForeignKeys()) -> LabeledData:
    """DATA: labeled shards (a ptgen folder at a path or URL, or a brace list of another tool's), an
    ImageFolder tree (train/, val/, test/) or a Hugging Face dataset (ptcommon.hf_data). A val part
    and --val-split exclude each other."""
    request = request or TargetRequest()
    if is_hf(root):
        target = open_hf(str(root), flag, request.image_column, request.label_column)
        train_set, val_set = hf_part(target, "train"), hf_part(target, "val")
        data = LabeledData(root, TargetInfo.of_images(train_set), train_set=train_set, val_set=val_set,
                           test_set=lambda: hf_part(target, "test"))
        has_val = f"{root} has a validation split"
    elif is_shards(str(root)):
        if not shards_allowed:
            raise InputError(f"{flag} {root}: names shards; this command needs an ImageFolder tree (train/, test/) "
                             "or a Hugging Face dataset")
        if request.val_split is not None:
            raise InputError(f"--val-split {request.val_split:g}: {flag} {root} is a shard folder; a validation split "
                             "takes an ImageFolder tree or a Hugging Face dataset")
        shards = open_shards(str(root), flag, labeled=True, policy=policy, skip_corrupt=skip_corrupt, keys=keys)
        return LabeledData(root, TargetInfo.of_shards(shards), shards=shards,
                           validation="no validation curve: target shards are all trained on")
    else:
        root = Path(root)
        for column in ("image_column", "label_column"):
            if getattr(request, column) is not None:
                raise InputError(f"--{column.replace('_', '-')} {getattr(request, column)}: only for a Hugging Face "
                                 f"dataset; {flag} {root} is an ImageFolder tree")
        train_set = labeled_split(root, "train", flag=flag)
        classes = train_set.classes
        val_set = labeled_split(root, "val", flag=flag, classes=classes) if (root / "val").is_dir() else None
        data = LabeledData(root, TargetInfo.of_images(train_set), train_set=train_set, val_set=val_set,
                           test_set=lambda: (labeled_split(root, "test", flag=flag, classes=classes)
                                             if (root / "test").is_dir() else None))
        has_val = f"{root} has val/"
    if request.val_split is not None:
        if data.val_set is not None:
            raise InputError(f"--val-split {request.val_split:g}: {has_val}, which the run validates on; drop --val-split")
        data.train_set, data.val_set = split_off(data.train_set, request.val_split, request.seed)
    data.validation = _validation_note(data, request.val_split, root)
    return data


def is_real_images(unlabeled: ShardSet | UnlabeledImages) -> bool:
    """Images no target conditioned (a folder of images, a foreign shard set): nothing for a guard to weigh."""
    return not (isinstance(unlabeled, ShardSet) and unlabeled.made_by_ptgen)


def open_extra(spec: str | None, weight: float | None, data: LabeledData, policy: ReadPolicy,
               skip_corrupt: bool = False) -> ExtraData | None:
    """--extra-labeled SPEC at --extra-weight WEIGHT: labeled shards (a ptgen synth folder at a path or
    URL, or another tool's brace list whose _info.json names its classes) or ptgen pseudo shards, their
    classes matched by name to DATA's (train/data/extra.py); None without SPEC."""
    if spec is None:
        if weight is not None:
            raise InputError(f"--extra-weight {weight:g}: weighs the loss of --extra-labeled's images; give "
                             "--extra-labeled SHARDS or drop --extra-weight")
        return None
    shards = open_shards(spec, "--extra-labeled", policy=policy, skip_corrupt=skip_corrupt)
    return match_classes(shards, DEFAULT_EXTRA_WEIGHT if weight is None else weight, data.target.classes,
                         f"--data {data.root}")


def open_unlabeled(path: str | Path, policy: ReadPolicy, keys: ForeignKeys = ForeignKeys()) -> ShardSet | UnlabeledImages:
    """--unlabeled: pseudo shards from ptgen pseudo, shards from another tool, or a folder of real images (the oracle)."""
    path = str(path)
    if is_shards(path):
        shards = open_shards(path, "--unlabeled", policy=policy, keys=keys)
        if shards.labeled and shards.made_by_ptgen:
            raise InputError(f"--unlabeled {path}: holds labeled shards from ptgen synth; P-SSL takes the "
                             "unlabeled output of ptgen pseudo (or a folder of real images)")
        return shards
    if not Path(path).is_dir():
        raise InputError(f"--unlabeled {path}: no such folder")
    return UnlabeledImages(Path(path))


def model_input(target: TargetInfo, init: str, arch: str, img_size: int | None,
                in_chans: int | None) -> tuple[int, int]:
    """(size, channels) of the model a command trains. A new model: --img-size / --in-chans, by default
    the data's channels and `default_image_size` (RGB data as large as ARCH's pretrained size
    trains at that size). --init timm:NAME: likewise, RGB by default (its weights' channels). A run
    folder: the run's own, which target images adapt to; a different --img-size or --in-chans is refused."""
    if init == "none":
        channels = in_chans or target.in_chans
        return img_size or default_image_size(target.image_size, channels, arch), channels
    if is_timm(init):
        return img_size or default_image_size(target.image_size, 3, base_arch(timm_name(init))), in_chans or 3
    trained = run_config(init, "--init")
    for flag, given, kept in (("--img-size", img_size, trained.image_size), ("--in-chans", in_chans, trained.in_chans)):
        if given is not None and given != kept:
            what = f"was trained at {kept} px" if flag == "--img-size" else f"takes {kept} channel(s)"
            raise InputError(f"{flag} {given}: --init {init} {what} and a fine-tune keeps its input (target images "
                             f"are converted to it); drop {flag}")
    return trained.image_size, trained.in_chans


def choose_augment(flag: str, target: TargetInfo, image_size: int = 0) -> str:
    """--augment: the policy it names, or for auto the one the data's channels and the model's input
    size call for (`transforms.AUTO_POLICY`), decided from the data this command trains on."""
    return auto_policy(target.in_chans, image_size) if flag == "auto" else flag


def prepare_model(target: TargetInfo, init: str, arch: str, img_size: int | None, *,
                  seed: int = 0, augment: str = "glyph", in_chans: int | None = None,
                  init_weights: Path | None = None) -> tuple[torch.nn.Module, ModelConfig]:
    """The model a command trains, built once and checked before the run folder exists, at
    `model_input`'s size and channels.

    --init none: ARCH from random weights for TARGET's classes (scratch, and pseudo pre-training
    itself). A run folder: its backbone with a fresh head (PP step 3), which keeps the run's input
    contract: size, channels and normalisation. timm:NAME: its pretrained weights (--init-weights
    FILE, else timm's hub) with a fresh head and their normalisation and resizing
    (train.pretrained). The random weights, or the fresh head, follow from `seed` (--seed): the same
    on every rank. A new model normalises with 0.5/0.5 under the glyph policy, with the mean/std of
    ARCH's pretrained_cfg under the natural one (`augment`)."""
    size, channels = model_input(target, init, arch, img_size, in_chans)
    seed_everything(seed, "model")
    common = {"num_classes": len(target.classes), "class_names": target.classes, "image_size": size,
              "in_chans": channels, "source_ids": target.source_ids}
    if is_timm(init):
        from .pretrained import timm_init

        stats = data_config(timm_name(init))
        model = timm_init(init, init_weights, len(target.classes), channels)
        config = ModelConfig(arch=base_arch(timm_name(init)), **common, mean=per_channel(stats["mean"], channels),
                             std=per_channel(stats["std"], channels), interpolation=stats["interpolation"],
                             crop_pct=stats["crop_pct"])
        check_input_size(model, config)
        return model, config
    if init != "none":
        model, source = load_run(init, "--init")
        config = ModelConfig(arch=source.arch, **common, mean=source.mean, std=source.std,
                             timm_kwargs=source.timm_kwargs, interpolation=source.interpolation,
                             crop_pct=source.crop_pct)
        model.reset_classifier(len(target.classes))
        return model, config
    if augment == "natural":
        stats = data_config(arch)
        mean, std = per_channel(stats["mean"], channels), per_channel(stats["std"], channels)
    else:
        mean, std = [DEFAULT_MEAN_STD[0]] * channels, [DEFAULT_MEAN_STD[1]] * channels
    config = ModelConfig(arch=arch, **common, mean=mean, std=std)
    model = create_model(config)
    check_input_size(model, config)
    return model, config


def _preprocess(config: ModelConfig, policy: str = "glyph") -> Preprocess:
    """The preprocessing of CONFIG's model under POLICY (natural: with the interpolation and crop_pct
    of its pretrained weights, or of its architecture's pretrained_cfg)."""
    pre = Preprocess(config.image_size, config.in_chans, tuple(config.mean), tuple(config.std))
    if policy == "glyph":
        return pre
    stats = data_config(config.arch)
    return replace(pre, policy=policy, interpolation=config.interpolation or stats["interpolation"],
                   crop_pct=config.crop_pct or stats["crop_pct"])


def run_augment(spec: str, flag: str = "--run") -> str:
    """The policy a run folder trained with (its train.json); glyph where it names none."""
    record = resolve_run(spec, flag) / "train.json"
    return json.loads(record.read_text()).get("augment", "glyph") if record.exists() else "glyph"


def _loader(dataset, batch_size: int, workers: int, pin: bool = False) -> DataLoader:
    """One pass over DATASET in order (evaluation)."""
    return build_loader(dataset, workers, pin, batch_size=batch_size)


def _shard_batches(data: ShardSet, transform, batch_size: int, ctx: RunContext, with_labels: bool = True,
                   steps: int | None = None, weight_of: Callable[[dict], float] | None = None, seed_offset: int = 0):
    """Shard batches: `steps` optimizer steps per epoch on every rank (by default count / global
    batch), each of --accum-steps batches; with `weight_of`, unlabeled batches carry each sample's
    weight (ShardSet.pipeline). A second stream of a run takes a `seed_offset` of its own, so that
    its shard order and draws are not the first one's."""
    steps = steps or max(1, data.count // ctx.per_step(batch_size))
    per_worker = math.ceil(steps * ctx.settings.accum_steps / max(1, ctx.workers))
    seed = ctx.settings.seed + seed_offset

    def pipeline(epoch: int):
        return data.pipeline(transform, batch_size, train=True, seed=seed * 100_003 + epoch,
                             with_labels=with_labels, corrupt=data.corrupt, batches_per_worker=per_worker,
                             weight_of=weight_of)

    return stream_batches(pipeline, seed, ctx.dist.rank, ctx.workers, ctx.pin), steps


def _folder_batches(dataset, batch_size: int, ctx: RunContext, steps: int | None = None, seed_offset: int = 0):
    """Batches of an in-memory dataset, drawn with replacement: an epoch is one pass over it unless
    `steps` (optimizer steps) says otherwise; each step takes --accum-steps batches."""
    steps = steps or max(1, math.ceil(len(dataset) / ctx.per_step(batch_size)))
    return drawn_batches(dataset, batch_size, steps * ctx.settings.accum_steps, ctx.settings.seed + seed_offset,
                         ctx.dist.rank, ctx.workers, ctx.pin), steps


def _beside(first: Callable[[int], object], second: Callable[[int], object]) -> Callable[[int], object]:
    """batches(epoch) of two streams drawn side by side: a batch of each a step, FIRST's before SECOND's
    in the step's random state."""
    return lambda epoch: zip(first(epoch), second(epoch))


def _with_extra(batches: Callable[[int], object], steps: int, extra: ExtraData | None, transform,
                ctx: RunContext) -> tuple[Callable[[int], object], ShardSet | None]:
    """A target's labeled BATCHES with a batch of EXTRA's images beside each, of --batch-size and
    drawn from their shards as the unlabeled ones of pssl are: (target batch, extra batch), and the
    shards read. At --extra-weight 0 the extra images are left unread (the batches as they were)."""
    if extra is None:
        return batches, None
    if not extra.weight:
        if ctx.dist.main:
            print(f"pttrain {ctx.command}: --extra-weight 0: the extra images are not read, so the labeled loss is "
                  "the target images' alone")
        return batches, None
    extra_batches, _ = _shard_batches(extra.shards, transform, ctx.settings.batch_size, ctx, steps=steps,
                                      seed_offset=EXTRA_SEED_OFFSET)
    return _beside(batches, extra_batches), extra.shards


def _extra_record(extra: ExtraData | None) -> dict:
    return extra.record() if extra is not None else {}


def _scorers(data: LabeledData, config: ModelConfig, ctx: RunContext) -> tuple[Scorer | None, Scorer | None]:
    """(the during-training validation, the test at the end) of a target run: top-1 on its val part
    (or --val-split), and on its test part, where it has them."""
    view = _preprocess(config, ctx.augment).transform(augment=False)
    test_set = data.test_set() if data.train_set is not None else None
    return tuple(None if part is None else image_scorer(part, view, config.num_classes, ctx, prefix)
                 for part, prefix in ((data.val_set, "val"), (test_set, "test")))


def fit_and_save(ctx: RunContext, model: torch.nn.Module, algorithm: Algorithm, batches: Callable[[int], object],
                 steps: int, config: ModelConfig, record: dict, validate: Scorer | None = None,
                 shipped: Callable[[torch.nn.Module], torch.nn.Module] = lambda m: m,
                 data: ShardSet | None = None, test: Scorer | None = None) -> Trainer:
    """The tail every command shares: the loop (resumed if asked), the test score of the final model
    (`test`, where the target has a test part), then the run folder's model and train.json.

    `shipped` picks what the run ships from the trained model (KD drops its auxiliary head)."""
    try:
        trainer = Trainer(model, algorithm, batches, steps, ctx.settings, ctx.run_dir, ctx.dist, validate=validate,
                          progress=ctx.progress, amp=ctx.amp, compile=ctx.compile,
                          tensorboard=ctx.tensorboard)
        if ctx.resume:
            trainer.resume()
        trainer.fit()
        tested = test(shipped(trainer.final_model)) if test is not None else {}
        skipped = {"corrupt_skipped": data.corrupt.count, "unexpected_members": data.policy.summary()} if data else {}
        if data and ctx.workers > 0:  # the counts live in the loader workers, which log what they skip themselves
            skipped = {"corrupt_skipped": None, "unexpected_members": "counted in the loader workers: see the run's log"}
        if ctx.dist.main:
            save_run(ctx.run_dir, shipped(trainer.final_model), config)
            (ctx.run_dir / "train.json").write_text(json.dumps(
                {"command": ctx.command, **record, **tested, "epochs_run": trainer.epochs, "steps": trainer.total_steps,
                 "augment": ctx.augment, "augment_flag": ctx.augment_flag, "lr": ctx.settings.lr,
                 "lr_rule": ctx.lr_rule, "optimizer": type(trainer.optimizer).__name__,
                 "world_size": ctx.dist.world, "launcher": ctx.dist.launcher, "workers": ctx.workers,
                 "global_batch": trainer.global_batch, "samples_seen": trainer.samples_seen,
                 "amp": trainer.amp_dtype, **skipped, "settings": asdict(ctx.settings)},
                indent=1, default=str) + "\n")
        if tested and ctx.dist.main:
            print(f"pttrain {ctx.command}: test top-1 {tested['test_top1']:.4f} on {tested['test_n']} images")
        if data is not None:
            data.report_skipped()
        return trainer
    finally:
        if ctx.lock is not None:
            ctx.lock.release()


def pp_validation(data: ShardSet, val_shards: int | None) -> tuple[ShardSet, ShardSet | None, str]:
    """pp's training and held-out shards (validation.hold_out_shards), and the start line's word on them."""
    train, val = hold_out_shards(data, val_shards)
    if val is None:
        return train, None, "no validation curve: pass --val-shards N to hold out N shards and score on them"
    return train, val, f"validation on {len(val.paths)} held-out shard(s) ({val.count} images)"


def run_pp(data: ShardSet, val: ShardSet | None, model: torch.nn.Module, config: ModelConfig, algorithm: Supervised,
           ctx: RunContext, whole: ShardSet | None = None) -> Trainer:
    """Supervised training on the shards' source labels (docs/method.md, PP step 2), scored after each
    epoch on the held-out shards VAL (of the folder WHOLE) when there are some."""
    pre = _preprocess(config, ctx.augment)
    batches, steps = _shard_batches(data, pre.transform(augment=True), ctx.settings.batch_size, ctx)
    record = {"shards": str(data.root)}
    validate = None
    if val is not None:
        record["val_shards"] = held_out_names(whole or data, val)
        validate = shard_scorer(val, pre.transform(augment=False), config.num_classes, ctx)
    return fit_and_save(ctx, model, algorithm, batches, steps, config, record, validate=validate, data=data)


def run_finetune(data: LabeledData, init: str, model: torch.nn.Module, config: ModelConfig, algorithm: Supervised,
                 ctx: RunContext, extra: ExtraData | None = None) -> Trainer:
    """Supervised training on the target's labeled images (fine-tuning, or the scratch baseline), with
    EXTRA's labeled images beside them where given."""
    transform = _preprocess(config, ctx.augment).transform(augment=True)
    if data.shards is not None:
        batches, steps = _shard_batches(data.shards, transform, ctx.settings.batch_size, ctx)
    else:
        data.train_set.transform = transform
        batches, steps = _folder_batches(data.train_set, ctx.settings.batch_size, ctx)
    batches, extra_read = _with_extra(batches, steps, extra, transform, ctx)
    validate, test = _scorers(data, config, ctx)
    return fit_and_save(ctx, model, algorithm, batches, steps, config,
                        {"data": str(data.root), "init": init, **data.record(), **_extra_record(extra)},
                        validate=validate, data=data.shards or extra_read, test=test)


def guard_record(unlabeled: ShardSet | UnlabeledImages, guard: Guard) -> dict:
    """What GUARD does to the unlabeled data (train.json's record of it), read before the run starts: a
    folder of pseudo samples that lacks their targets' confidence is refused here."""
    if is_real_images(unlabeled):
        return {"guard": "none (real images: no target conditioned them)"}
    if guard.kind == "none":
        return {"guard": "none"}
    return guard.summary(target_confidences(unlabeled.root))


def _idle_unlabeled_branch(algorithm: FixMatch, guard: Guard, guarded: dict) -> str | None:
    """Why the unlabeled branch could change nothing, if it could not: weight 0 with batch norm's running
    statistics left to the labeled images (the control; tests/test_pssl.py shows that computing it
    anyway gives the same gradients), or a guard that keeps no sample."""
    if algorithm.weight == 0 and algorithm.bn_stats == "labeled":
        return "--unlabeled-weight 0 with --bn-stats labeled: the pseudo samples reach neither the gradients nor batch norm"
    if guarded.get("pseudo_kept") == 0:
        return (f"--guard {guard.describe()} keeps none of the {guarded['pseudo_samples']} pseudo samples (their targets' "
                f"mean confidence is {guarded['targets_mean_confidence']:.2f}): the source does not know this target")
    return None


def run_pssl(data: LabeledData, unlabeled: ShardSet | UnlabeledImages, init: str, model: torch.nn.Module,
             config: ModelConfig, algorithm: FixMatch, ratio: int, guard: Guard, guarded: dict,
             ctx: RunContext, extra: ExtraData | None = None) -> Trainer:
    """SSL on the labeled target images plus unlabeled samples (docs/method.md, P-SSL step 2).

    The labeled branch is finetune's own: the same batches, steps, schedule and evaluation, so at
    unlabeled weight 0 the run ends with finetune's weights. The unlabeled batches (`ratio` times the
    labeled batch) are drawn beside them, after them in each step's random state, and the guard sets
    how much each pseudo sample counts; where it keeps none, the run is finetune."""
    pre = _preprocess(config, ctx.augment)
    data.train_set.transform = pre.transform(augment=True)
    labeled_batches, steps = _folder_batches(data.train_set, ctx.settings.batch_size, ctx)
    labeled_batches, _ = _with_extra(labeled_batches, steps, extra, data.train_set.transform, ctx)
    views = weak_and_strong(pre)
    batch_u = ctx.settings.batch_size * ratio
    record = {"data": str(data.root), "unlabeled": str(unlabeled.root), "init": init,
              "algorithm": repr(algorithm), "ratio": ratio, **guarded, **data.record(), **_extra_record(extra)}
    validate, test = _scorers(data, config, ctx)
    idle = _idle_unlabeled_branch(algorithm, guard, guarded)
    if idle is not None:
        if ctx.dist.main:
            print(f"pttrain pssl: {idle}, so this run is finetune's")
        return fit_and_save(ctx, model, algorithm.labeled, labeled_batches, steps, config,
                            {**record, "trained_as": "finetune"}, validate=validate, test=test)
    if isinstance(unlabeled, ShardSet):
        unlabeled_batches, _ = _shard_batches(unlabeled, views, batch_u, ctx, with_labels=False, steps=steps,
                                              weight_of=guard.weight_of())
    else:
        unlabeled.transform = views
        unlabeled_batches, _ = _folder_batches(unlabeled, batch_u, ctx, steps=steps, seed_offset=1)
    return fit_and_save(ctx, model, algorithm, _beside(labeled_batches, unlabeled_batches), steps, config, record,
                        validate=validate, test=test,
                        data=unlabeled if isinstance(unlabeled, ShardSet) else None)


def run_kd(data: LabeledData, init: str, teacher_spec: str, source: tuple[torch.nn.Module, ModelConfig],
           backbone: torch.nn.Module, config: ModelConfig, alpha: float,
           temperature: float, ctx: RunContext) -> Trainer:
    """The KD baseline: the student learns the target labels and mimics the teacher's source classes."""
    from .kd import Distillation, KDStudent, paired_views

    teacher, teacher_config = source
    teacher.to(ctx.dist.device).eval().requires_grad_(False)
    data.train_set.transform = paired_views(_preprocess(config, ctx.augment), _preprocess(teacher_config))
    batches, steps = _folder_batches(data.train_set, ctx.settings.batch_size, ctx)
    record = {"data": str(data.root), "init": init, "teacher": teacher_spec, "alpha": alpha,
              "temperature": temperature, **data.record()}
    validate, test = _scorers(data, config, ctx)
    seed_everything(ctx.settings.seed, "auxiliary head")
    return fit_and_save(ctx, KDStudent(backbone, teacher_config.num_classes),
                        Distillation(teacher, alpha, temperature), batches, steps, config, record,
                        validate=validate, test=test, shipped=lambda student: student.backbone)


def run_eval(run: str, data: Path | str, workers: int, policy: ReadPolicy, skip_corrupt: bool,
             device: torch.device = torch.device("cpu"), request: TargetRequest | None = None,
             keys: ForeignKeys = ForeignKeys()) -> tuple[Evaluation, list[str]]:
    """Top-1/top-5/per-class accuracy of a run on DATA: an ImageFolder's test/, a Hugging Face
    dataset's test split, or labeled shards, preprocessed as the run's policy evaluates, on DEVICE."""
    model, config = load_run(run, "--run")
    model.to(device)
    pre = _preprocess(config, run_augment(run))
    if is_shards(str(data)):
        shards = open_shards(str(data), "--data", policy=policy, skip_corrupt=skip_corrupt, keys=keys)
        if config.source_ids is None:
            raise InputError(f"--run {run}: its classes carry no source ids, so it cannot be scored on shards")
        unknown = sorted(set(shards.class_ids) - set(config.source_ids))
        if unknown:
            raise InputError(f"--data {data}: holds source class {unknown[0]}, which --run {run} does not know")
        shards.index_of = {sid: config.source_ids.index(sid) for sid in shards.class_ids}
        batches = shards.pipeline(pre.transform(False), 256, train=False, seed=0, with_labels=True,
                                  corrupt=shards.corrupt)
        result = evaluate(model, batches, config.num_classes, device)
        shards.report_skipped()
        return result, config.class_names
    if is_hf(data):
        request = request or TargetRequest()
        test_set = hf_part(open_hf(str(data), "--data", request.image_column, request.label_column), "test",
                           pre.transform(False))
        if test_set is None:
            raise InputError(f"--data {data}: has no test split to score")
        if test_set.classes != config.class_names:
            raise InputError(f"--data {data}: test classes {test_set.classes[:5]} differ from the run's "
                             f"{config.class_names[:5]}")
    else:
        test_set = labeled_split(Path(data), "test", pre.transform(False), classes=config.class_names)
    loader = _loader(test_set, 256, workers, pin=device.type == "cuda")
    return evaluate(model, loader, config.num_classes, device), config.class_names


def write_eval(result: Evaluation, class_names: list[str], json_path: Path | None, plot_path: Path) -> None:
    if json_path is not None:
        json_path.write_text(json.dumps(result.summary()) + "\n")
    plot_confusion(result, class_names, plot_path)
