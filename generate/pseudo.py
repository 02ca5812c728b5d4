"""`ptgen pseudo`: pseudo conditional sampling (docs/method.md, P-SSL step 1).

For every image of the target's train/ split, K samples G_s(z, p) conditioned on the soft label
p = softmax(C_s(x)/T): unlabeled source-domain look-alikes of the target images. With
--condition random each sample instead takes a uniformly random source class, drawn from its own
seed: the ablation that shows what conditioning on the target adds (same count, same format).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from ptcommon.cli import InputError
from ptcommon.hf_data import HFImage, is_hf, open_hf
from ptcommon.inputs import image_files, load_image
from ptcommon.shards import FORMAT, PSEUDO_FIELDS, TARGET_CONFIDENCE, sample_key

from .generator import Generator
from .plan import WorkPlan, sample_seed
from .runner import JobSettings
from .store import dataset_header
from .writer import SampleRecord

PREFIX = "pseudo"
TOP_CLASSES_KEPT = 5


def target_images(root: Path) -> tuple[list, list[str]]:
    """The target's training images, and their keys; never its test/ split. An ImageFolder tree's
    train/ files, sorted (keys: their paths under ROOT), or a Hugging Face dataset's train split, in
    row order (keys: train/ROW; ptcommon.hf_data)."""
    if is_hf(root):
        images = open_hf(str(root), "--target", labeled=False).part("train")
        refs = [HFImage(images, i) for i in range(len(images))]
        if not refs:
            raise InputError(f"--target {root}: its train split holds no images")
        return refs, [ref.key for ref in refs]
    train = root / "train"
    if not train.is_dir():
        raise InputError(f"--target {root}: no train/ folder; expected an ImageFolder tree (train/<class>/<image>) "
                         "or a Hugging Face dataset (hf:NAME, a save_to_disk folder)")
    paths = image_files(train)
    if not paths:
        raise InputError(f"--target {root}: train/ holds no images")
    return paths, [p.relative_to(root).as_posix() for p in paths]


def open_target(item: Path | HFImage) -> Image.Image:
    """A target image of `target_images`, decoded."""
    return load_image(item) if isinstance(item, Path) else item.open()


@dataclass(frozen=True)
class PseudoSettings(JobSettings):
    classifier: str = ""
    per_target: int = 1
    temperature: float = 1.0
    top_k: int | None = None
    condition: str = "soft"  # soft: p @ E (PCS); random: a uniformly random source class a sample
    preprocessing: str = "resize"  # how the classifier sees a target (generate.soft_labels.preprocessing)


def targets_digest(keys: list[str]) -> str:
    return hashlib.sha256("\n".join(keys).encode()).hexdigest()


class PseudoJob:
    """Sample i belongs to target image i // K, so a target's K samples sit side by side."""

    def __init__(self, settings: PseudoSettings, generator: Generator, keys: list[str], probs: torch.Tensor | None,
                 classifier_digest: str, confidence: torch.Tensor | None = None):
        """`probs` (and `confidence`) may come once the output folder is prepared (they are read
        only while sampling)."""
        self.settings, self.generator, self.keys, self.probs = settings, generator, keys, probs
        self.confidence = confidence  # per target: the classifier's top-1 probability at T = 1
        self.classifier_digest = classifier_digest
        self.plan = WorkPlan(len(keys) * settings.per_target, settings.shard_size, PREFIX)

    def seed(self, index: int) -> int:
        return sample_seed(self.settings.seed, index)

    def random_class(self, index: int) -> int:
        draw = torch.Generator().manual_seed(self.seed(index))
        return int(torch.randint(self.generator.num_classes, (1,), generator=draw))

    def condition(self, indices: range) -> torch.Tensor:
        if self.settings.condition == "random":
            return torch.tensor([self.random_class(i) for i in indices])
        return self.probs[[i // self.settings.per_target for i in indices]]

    def record(self, index: int) -> SampleRecord:
        target = index // self.settings.per_target
        p = self.probs[target]
        if self.settings.condition == "random":
            p = torch.nn.functional.one_hot(torch.tensor(self.random_class(index)), len(p)).float()
        top = p.topk(min(TOP_CLASSES_KEPT, len(p)))
        meta = {
            "index": index,
            "target_key": self.keys[target],
            TARGET_CONFIDENCE: round(float(self.confidence[target]), 6),
            "seed": self.seed(index),
            "top_classes": [[int(c), round(float(v), 6)] for c, v in zip(top.indices, top.values) if v > 0],
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
        }

    def header(self) -> dict:
        return dataset_header(self, {"num_targets": len(self.keys)}, labeled=False)
