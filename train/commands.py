"""What each pttrain command does, between its flags (cli.py) and the shared loop (trainer.py)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, RandomSampler

from ptcommon.cli import InputError

from .data.folder import UnlabeledImages, labeled_split
from .data.shards import CorruptCounter, ShardSet
from .data.transforms import Preprocess, weak_and_strong
from .distributed import Dist
from .evaluate import Evaluation, evaluate, plot_confusion
from .models import ModelConfig, check_input_size, create_model, default_image_size, load_run, save_run
from .trainer import Supervised, Trainer, TrainSettings

DEFAULT_MEAN_STD = (0.5, 0.5)


def _preprocess(config: ModelConfig) -> Preprocess:
    return Preprocess(config.image_size, config.in_chans, tuple(config.mean), tuple(config.std))


def _loader(dataset, batch_size: int, workers: int, sampler=None, shuffle: bool = False) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, shuffle=shuffle, num_workers=workers,
                      persistent_workers=False, drop_last=False)


def _finish(trainer: Trainer, run_dir: Path, config: ModelConfig, record: dict) -> None:
    if trainer.dist.main:
        save_run(run_dir, trainer.final_model, config)
        (run_dir / "train.json").write_text(json.dumps(record, indent=1, default=str) + "\n")


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
    def of_folder(cls, train_set) -> "TargetInfo":
        """1 input channel when the training images are grayscale, else 3; the size of the first image."""
        first = train_set.loader(train_set.samples[0][0])
        in_chans = 1 if first.mode in ("L", "1", "I", "I;16") else 3
        return cls(train_set.classes, in_chans, max(first.size))


def new_model(target: TargetInfo, arch: str, img_size: int | None):
    """ARCH from random weights for TARGET's classes, at --img-size or `default_image_size` of the data's."""
    channels = target.in_chans
    config = ModelConfig(arch=arch, num_classes=len(target.classes), class_names=target.classes,
                         image_size=img_size or default_image_size(target.image_size), in_chans=channels,
                         mean=[DEFAULT_MEAN_STD[0]] * channels, std=[DEFAULT_MEAN_STD[1]] * channels,
                         source_ids=target.source_ids)
    model = create_model(config)
    check_input_size(model, config)
    return model, config


def target_model(target: TargetInfo, init: str, arch: str, img_size: int | None):
    """A model for TARGET's classes: the --init run's backbone with a fresh head (PP step 3), or
    random weights for --init none (scratch, and pseudo pre-training itself)."""
    if init == "none":
        return new_model(target, arch, img_size)
    model, source = load_run(init, "--init")
    # The backbone keeps its input contract (size, channels, normalisation); target images adapt to it.
    config = ModelConfig(arch=source.arch, num_classes=len(target.classes), class_names=target.classes,
                         image_size=source.image_size, in_chans=source.in_chans, mean=source.mean,
                         std=source.std, source_ids=target.source_ids, timm_kwargs=source.timm_kwargs)
    model.reset_classifier(len(target.classes))
    return model, config


def folder_model(data_root: Path, init: str, arch: str, img_size: int | None):
    """target_model for an ImageFolder tree, with its train/ set."""
    train_set = labeled_split(data_root, "train")
    model, config = target_model(TargetInfo.of_folder(train_set), init, arch, img_size)
    return model, config, train_set


def _shard_batches(data: ShardSet, transform, settings: TrainSettings, dist: Dist, workers: int,
                   corrupt: CorruptCounter):
    """Labeled shard batches: `steps` per epoch on every rank (count / (batch x ranks))."""
    steps = max(1, data.count // (settings.batch_size * dist.world))
    per_worker = math.ceil(steps / max(1, workers))

    def batches(epoch: int):
        pipeline = data.pipeline(transform, settings.batch_size, train=True, seed=settings.seed * 100_003 + epoch,
                                 with_labels=True, corrupt=corrupt, batches_per_worker=per_worker)
        return DataLoader(pipeline, batch_size=None, num_workers=workers)

    return batches, steps


def _warn_corrupt(corrupt: CorruptCounter) -> None:
    if corrupt.count:
        print(f"warning: skipped {corrupt.count} damaged samples or shards in {sorted(corrupt.where)}")


def run_pp(data: ShardSet, arch: str, run_dir: Path, settings: TrainSettings, dist: Dist, *, img_size: int | None,
           workers: int, skip_corrupt: bool, resume: bool, progress: bool) -> Trainer:
    """Supervised training on the shards' source labels (METHOD.md, PP step 2)."""
    model, config = target_model(TargetInfo.of_shards(data), "none", arch, img_size)
    corrupt = CorruptCounter(skip_corrupt)
    batches, steps = _shard_batches(data, _preprocess(config).transform(augment=True), settings, dist, workers, corrupt)
    trainer = Trainer(model, Supervised(), batches, steps, settings, run_dir, dist, progress=progress)
    if resume:
        trainer.resume()
    trainer.fit()
    _finish(trainer, run_dir, config, {"command": "pp", "shards": str(data.root), "settings": settings.__dict__,
                                       "corrupt_skipped": corrupt.count})
    _warn_corrupt(corrupt)
    return trainer


def _test_validator(data_root: Path, pre: Preprocess, num_classes: int, workers: int, dist: Dist):
    if not (data_root / "test").is_dir():
        return None
    test_set = labeled_split(data_root, "test", pre.transform(augment=False))

    def validate(m: torch.nn.Module) -> dict:
        result = evaluate(m, _loader(test_set, 256, workers), num_classes, dist.device)
        return {"val_top1": result.top1, "val_n": result.n}

    return validate


def _labeled_batches(train_set, batch_size: int, steps: int, seed: int, epoch: int, rank: int, workers: int):
    """`steps` batches drawn with replacement: the same count on every rank, whatever the set's size."""
    g = torch.Generator().manual_seed(seed * 100_003 + epoch * 1000 + rank)
    sampler = RandomSampler(train_set, replacement=True, num_samples=steps * batch_size, generator=g)
    return _loader(train_set, batch_size, workers, sampler=sampler)


def is_shard_folder(path: Path) -> bool:
    return (path / "dataset.json").exists()


def run_finetune(data_root: Path, init: str, arch: str, run_dir: Path, settings: TrainSettings, dist: Dist, *,
                 img_size: int | None, workers: int, skip_corrupt: bool, resume: bool, progress: bool) -> Trainer:
    """Supervised training on the target's labeled images (fine-tuning, or the scratch baseline).

    DATA is an ImageFolder tree (train/, and test/ for a per-epoch score) or labeled shards."""
    corrupt = CorruptCounter(skip_corrupt)
    validate = None
    if is_shard_folder(data_root):
        shards = ShardSet(data_root, "--data", labeled=True)
        model, config = target_model(TargetInfo.of_shards(shards), init, arch, img_size)
        batches, steps = _shard_batches(shards, _preprocess(config).transform(augment=True), settings, dist, workers,
                                        corrupt)
    else:
        model, config, train_set = folder_model(data_root, init, arch, img_size)
        pre = _preprocess(config)
        train_set.transform = pre.transform(augment=True)
        steps = max(1, math.ceil(len(train_set) / (settings.batch_size * dist.world)))
        validate = _test_validator(data_root, pre, config.num_classes, workers, dist)

        def batches(epoch: int):
            return _labeled_batches(train_set, settings.batch_size, steps, settings.seed, epoch, dist.rank, workers)

    trainer = Trainer(model, Supervised(), batches, steps, settings, run_dir, dist, validate=validate,
                      progress=progress)
    if resume:
        trainer.resume()
    trainer.fit()
    _finish(trainer, run_dir, config, {"command": "finetune", "data": str(data_root), "init": init,
                                       "settings": settings.__dict__, "corrupt_skipped": corrupt.count})
    _warn_corrupt(corrupt)
    return trainer


def open_unlabeled(path: Path):
    """--unlabeled: pseudo shards from ptgen pseudo, or a folder of real images (the oracle)."""
    if is_shard_folder(path):
        shards = ShardSet(path, "--unlabeled")
        if shards.labeled:
            raise InputError(f"--unlabeled {path}: holds labeled shards from ptgen synth; P-SSL takes the "
                             "unlabeled output of ptgen pseudo (or a folder of real images)")
        return shards
    if not path.is_dir():
        raise InputError(f"--unlabeled {path}: no such folder")
    return UnlabeledImages(path)


def run_pssl(data_root: Path, unlabeled: Path, init: str, arch: str, algorithm, ratio: int, run_dir: Path,
             settings: TrainSettings, dist: Dist, *, img_size: int | None, workers: int, resume: bool,
             progress: bool) -> Trainer:
    """SSL on the labeled target images plus unlabeled samples (P-SSL step 2)."""
    model, config, train_set = folder_model(data_root, init, arch, img_size)
    pre = _preprocess(config)
    train_set.transform = pre.transform(augment=True)
    source = open_unlabeled(unlabeled)
    views = weak_and_strong(pre)
    batch_u = settings.batch_size * ratio
    count_u = source.count if isinstance(source, ShardSet) else len(source)
    steps = max(1, count_u // (batch_u * dist.world))
    corrupt = CorruptCounter(False)
    if isinstance(source, UnlabeledImages):
        source.transform = views

    def unlabeled_batches(epoch: int):
        if isinstance(source, ShardSet):
            pipeline = source.pipeline(views, batch_u, train=True, seed=settings.seed * 100_003 + epoch,
                                       with_labels=False, corrupt=corrupt,
                                       batches_per_worker=math.ceil(steps / max(1, workers)))
            return DataLoader(pipeline, batch_size=None, num_workers=workers)
        return _labeled_batches(source, batch_u, steps, settings.seed + 1, epoch, dist.rank, workers)

    def batches(epoch: int):
        labeled = _labeled_batches(train_set, settings.batch_size, steps, settings.seed, epoch, dist.rank, workers)
        return zip(labeled, unlabeled_batches(epoch))

    trainer = Trainer(model, algorithm, batches, steps, settings, run_dir, dist,
                      validate=_test_validator(data_root, pre, config.num_classes, workers, dist), progress=progress)
    if resume:
        trainer.resume()
    trainer.fit()
    _finish(trainer, run_dir, config, {"command": "pssl", "data": str(data_root), "unlabeled": str(unlabeled),
                                       "init": init, "algorithm": repr(algorithm), "ratio": ratio,
                                       "settings": settings.__dict__})
    return trainer


def run_kd(data_root: Path, teacher_spec: str, arch: str, alpha: float, temperature: float, run_dir: Path,
           settings: TrainSettings, dist: Dist, *, img_size: int | None, workers: int, resume: bool,
           progress: bool) -> Trainer:
    """The KD baseline: the student learns the target labels and mimics the teacher's source classes."""
    from .kd import Distillation, KDStudent, paired_views

    backbone, config, train_set = folder_model(data_root, "none", arch, img_size)
    teacher, teacher_config = load_run(teacher_spec, "--teacher")
    teacher.to(dist.device).eval().requires_grad_(False)
    train_set.transform = paired_views(_preprocess(config), _preprocess(teacher_config))
    model = KDStudent(backbone, teacher_config.num_classes)
    steps = max(1, math.ceil(len(train_set) / (settings.batch_size * dist.world)))

    def batches(epoch: int):
        return _labeled_batches(train_set, settings.batch_size, steps, settings.seed, epoch, dist.rank, workers)

    trainer = Trainer(model, Distillation(teacher, alpha, temperature), batches, steps, settings, run_dir, dist,
                      validate=_test_validator(data_root, _preprocess(config), config.num_classes, workers, dist),
                      progress=progress)
    if resume:
        trainer.resume()
    trainer.fit()
    if dist.main:
        save_run(run_dir, trainer.final_model.backbone, config)  # the auxiliary head stays behind
        (run_dir / "train.json").write_text(json.dumps(
            {"command": "kd", "data": str(data_root), "teacher": teacher_spec, "alpha": alpha,
             "temperature": temperature, "settings": settings.__dict__}, indent=1, default=str) + "\n")
    return trainer


def run_eval(run: str, data: Path, workers: int, skip_corrupt: bool) -> tuple[Evaluation, list[str]]:
    """Top-1/top-5/per-class accuracy of a run on DATA: an ImageFolder's test/ or labeled shards."""
    model, config = load_run(run, "--run")
    pre = _preprocess(config)
    if is_shard_folder(data):
        shards = ShardSet(data, "--data")
        if config.source_ids is None:
            raise InputError(f"--run {run}: its classes carry no source ids, so it cannot be scored on shards")
        unknown = sorted(set(shards.class_ids) - set(config.source_ids))
        if unknown:
            raise InputError(f"--data {data}: holds source class {unknown[0]}, which --run {run} does not know")
        shards.index_of = {sid: config.source_ids.index(sid) for sid in shards.class_ids}
        batches = shards.pipeline(pre.transform(False), 256, train=False, seed=0, with_labels=True,
                                  corrupt=CorruptCounter(skip_corrupt))
    else:
        test_set = labeled_split(data, "test", pre.transform(False))
        if test_set.classes != config.class_names:
            raise InputError(f"--data {data}: test/ classes {test_set.classes[:5]} differ from the run's "
                             f"{config.class_names[:5]}")
        batches = _loader(test_set, 256, workers)
    return evaluate(model, batches, config.num_classes, torch.device("cpu")), config.class_names


def write_eval(result: Evaluation, class_names: list[str], json_path: Path | None, plot_path: Path) -> None:
    if json_path is not None:
        json_path.write_text(json.dumps(result.summary()) + "\n")
    plot_confusion(result, class_names, plot_path)
