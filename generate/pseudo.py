"""`ptgen pseudo`: pseudo conditional sampling (docs/method.md, P-SSL step 1).

For every image of the target's train/ split, K samples G_s(z, p) conditioned on the soft label
p = softmax(C_s(x)/T): unlabeled source-domain look-alikes of the target images. With
--condition random each sample instead takes a uniformly random source class, drawn from its own
seed: the ablation that shows what conditioning on the target adds (same count, same format).
Below --strength 1 each sample begins from its own target image rather than from noise (SDEdit,
docs/method.md, "Look-alikes grown from the target images").
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ptcommon.cli import InputError
from ptcommon.hf_data import HFImage, HFTarget, is_hf, open_hf
from ptcommon.inputs import image_files, image_header, load_image, unreadable
from ptcommon.shards import FORMAT, PSEUDO_FIELDS, TARGET_CLASS, TARGET_CONFIDENCE, sample_key

from .generator import Generator, Start
from .plan import WorkPlan, sample_seed
from .runner import JobSettings
from .store import dataset_header
from .writer import SampleRecord

PREFIX = "pseudo"
TOP_CLASSES_KEPT = 5


class Targets(NamedTuple):
    """The target's training images (paths, or rows of a Hugging Face dataset), their keys, and
    their class names: all None where the target has no labels for every image."""

    items: list
    keys: list[str]
    classes: list[str | None]


def target_images(root: Path) -> Targets:
    """The target's training images; never its test/ split. An ImageFolder tree's train/ files,
    sorted (keys: their paths under ROOT; classes: their folders under train/), or a Hugging Face
    dataset's train split, in row order (keys: train/ROW; classes: its first ClassLabel's names;
    ptcommon.hf_data)."""
    if is_hf(root):
        target = open_hf(str(root), "--target", labeled=False)
        images = target.part("train")
        refs = [HFImage(images, i) for i in range(len(images))]
        if not refs:
            raise InputError(f"--target {root}: its train split holds no images")
        return Targets(refs, [ref.key for ref in refs], _hf_classes(target))
    train = root / "train"
    if not train.is_dir():
        raise InputError(f"--target {root}: no train/ folder; expected an ImageFolder tree (train/<class>/<image>) "
                         "or a Hugging Face dataset (hf:NAME, a save_to_disk folder)")
    paths = image_files(train)
    if not paths:
        raise InputError(f"--target {root}: train/ holds no images")
    folders = [p.relative_to(train).parts for p in paths]
    return Targets(paths, [p.relative_to(root).as_posix() for p in paths], _all_or_none([
        parts[0] if len(parts) > 1 else None for parts in folders]))


def _hf_classes(target: HFTarget) -> list[str | None]:
    """Each train row's class name from the split's first ClassLabel column (-1 is a row without one)."""
    import datasets

    train = target.splits["train"]
    column = next((c for c, f in train.features.items() if isinstance(f, datasets.ClassLabel)), None)
    if column is None:
        return [None] * len(train)
    names = train.features[column].names
    return _all_or_none([names[v] if v is not None and v >= 0 else None for v in train[column]])


def _all_or_none(classes: list[str | None]) -> list[str | None]:
    """A target has labels only where every image has one: a sample's class is then never missing
    in one shard's records and present in another's."""
    return [None] * len(classes) if None in classes else classes


def check_readable(root: Path, targets: Targets) -> None:
    """Refuse, before anything is written, a target image whose header cannot be read, naming it:
    the soft labels (and below --strength 1 the start images) decode every one."""
    for item in targets.items:
        if isinstance(item, Path):
            image_header(item)
            continue
        try:
            item.images.header(item.index)
        except (UnidentifiedImageError, OSError) as err:
            raise unreadable(f"--target {root}: {item.key}", err) from None


def open_target(item: Path | HFImage) -> Image.Image:
    """A target image of `target_images`, decoded."""
    return load_image(item) if isinstance(item, Path) else item.open()


def start_image(item: Path | HFImage, size: int, channels: int) -> torch.Tensor:
    """A target image as a generator's start image: its channels (1: gray, 3: RGB), resized to
    size x size as a whole (the plain resize a run folder's classifier sees), in [-1, 1], (C, H, W)."""
    image = open_target(item).convert("L" if channels == 1 else "RGB")
    pixels = np.asarray(image.resize((size, size), Image.Resampling.LANCZOS), dtype=np.float32)
    return torch.from_numpy(pixels.reshape(size, size, channels)).permute(2, 0, 1) / 127.5 - 1


@dataclass(frozen=True)
class PseudoSettings(JobSettings):
    classifier: str = ""
    per_target: int = 1
    temperature: float = 1.0
    top_k: int | None = None
    condition: str = "soft"  # soft: p @ E (PCS); random: a uniformly random source class a sample
    preprocessing: str = "resize"  # how the classifier sees a target (generate.soft_labels.preprocessing)
    strength: float = 1.0  # below 1: each sample begins from its target image, noised this far (SDEdit)


def targets_digest(keys: list[str]) -> str:
    return hashlib.sha256("\n".join(keys).encode()).hexdigest()


class PseudoJob:
    """Sample i belongs to target image i // K, so a target's K samples sit side by side."""

    def __init__(self, settings: PseudoSettings, generator: Generator, targets: Targets, probs: torch.Tensor | None,
                 classifier_digest: str, confidence: torch.Tensor | None = None):
        """`probs` (and `confidence`) may come once the output folder is prepared (they are read
        only while sampling)."""
        self.settings, self.generator, self.targets, self.probs = settings, generator, targets, probs
        self.keys = targets.keys
        self.confidence = confidence  # per target: the classifier's top-1 probability at T = 1
        self.classifier_digest = classifier_digest
        self.plan = WorkPlan(len(self.keys) * settings.per_target, settings.shard_size, PREFIX)

    def seed(self, index: int) -> int:
        return sample_seed(self.settings.seed, index)

    def random_class(self, index: int) -> int:
        draw = torch.Generator().manual_seed(self.seed(index))
        return int(torch.randint(self.generator.num_classes, (1,), generator=draw))

    def condition(self, indices: range) -> torch.Tensor:
        if self.settings.condition == "random":
            return torch.tensor([self.random_class(i) for i in indices])
        return self.probs[[i // self.settings.per_target for i in indices]]

    def start(self, indices: Sequence[int]) -> Start | None:
        """Below strength 1, each sample's own target image, at the generator's size and channels."""
        if self.settings.strength == 1:
            return None
        size, channels = self.generator.image_size, self.generator.channels
        targets = [i // self.settings.per_target for i in indices]
        images = {t: start_image(self.targets.items[t], size, channels) for t in dict.fromkeys(targets)}
        return Start(torch.stack([images[t] for t in targets]), self.settings.strength)

    def record(self, index: int) -> SampleRecord:
        target = index // self.settings.per_target
        p = self.probs[target]
        if self.settings.condition == "random":
            p = torch.nn.functional.one_hot(torch.tensor(self.random_class(index)), len(p)).float()
        top = p.topk(min(TOP_CLASSES_KEPT, len(p)))
        meta = {
            "index": index,
            "target_key": self.keys[target],
            TARGET_CLASS: self.targets.classes[target],
            TARGET_CONFIDENCE: round(float(self.confidence[target]), 6),
            "seed": self.seed(index),
            "top_classes": [[int(c), round(float(v), 6)] for c, v in zip(top.indices, top.values) if v > 0],
            **self.generator.record_fields(int(top.indices[0]), self.seed(index), self.settings.guidance),
            **({"strength": self.settings.strength} if self.settings.strength != 1 else {}),
        }
        return SampleRecord(sample_key(index), None, meta)

    def hashed_config(self) -> dict:
        s = self.settings
        return {
            "format": FORMAT, "kind": PREFIX, "model_fingerprint": self.generator.fingerprint(),
            "classifier_sha256": self.classifier_digest,
            "targets_sha256": targets_digest(self.keys),
            "per_target": s.per_target, "temperature": s.temperature, "top_k": s.top_k, **s.hashed(),
            # What each sample's .json holds: a folder is finished with the fields it began with.
            "record_fields": list(PSEUDO_FIELDS),
            **({"condition": s.condition} if s.condition != "soft" else {}),
            # Only away from the plain resize: at the default a dataset's hash is as it is without the field.
            **({"preprocessing": s.preprocessing} if s.preprocessing != "resize" else {}),
            **({"strength": s.strength} if s.strength != 1 else {}),
        }

    def header(self) -> dict:
        return dataset_header(self, {"num_targets": len(self.keys)}, labeled=False)
