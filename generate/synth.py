"""`ptgen synth`: a labeled pseudo source dataset, (G_s(z, y_s), y_s) with y_s balanced over the
chosen source classes (docs/method.md, PP step 1), optionally each sample one that the source
classifier recognises (generate/filtering.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from ptcommon.shards import FORMAT, sample_key

from .filtering import CONFIDENCE_DIGITS, Screen
from .generator import Generator
from .plan import WorkPlan, sample_seed
from .runner import JobSettings
from .store import dataset_header
from .writer import SampleRecord

PREFIX = "synth"


@dataclass(frozen=True)
class SynthSettings(JobSettings):
    class_ids: tuple[int, ...] = ()
    per_class: int = 1


class SynthJob:
    """Sample i has class class_ids[i mod n]: labels interleave, so every shard is class-balanced.
    With a SCREEN, sample i is the first of its candidates the source classifier keeps."""

    def __init__(self, settings: SynthSettings, generator: Generator, screen: Screen | None = None):
        self.settings = settings
        self.generator = generator
        self.screen = screen
        self.plan = WorkPlan(len(settings.class_ids) * settings.per_class, settings.shard_size, PREFIX)

    def label(self, index: int) -> int:
        return self.settings.class_ids[index % len(self.settings.class_ids)]

    def seed(self, index: int) -> int:
        return sample_seed(self.settings.seed, index)

    def condition(self, indices: range) -> torch.Tensor:
        return torch.tensor([self.label(i) for i in indices], dtype=torch.long)

    def start(self, indices: Sequence[int]) -> None:
        return None  # every sample begins from noise

    def record(self, index: int) -> SampleRecord:
        label, seed, screened = self.label(index), self.seed(index), {}
        if self.screen is not None:  # the kept candidate's seed made the image
            candidate, confidence = self.screen.outcomes.pop(index)
            seed = self.screen.candidate_seed(index, candidate)
            screened = {"confidence": round(confidence, CONFIDENCE_DIGITS), "candidates": candidate + 1}
        meta = {
            "index": index,
            "label": label,
            "class_name": self.generator.class_names[label],
            "seed": seed,
            **self.generator.record_fields(label, seed, self.settings.guidance),
            **screened,
        }
        return SampleRecord(sample_key(index), label, meta)

    def hashed_config(self) -> dict:
        """What decides the shards' content. Batch size and device are left out: they change
        how fast the images come, not which images they are (up to float rounding)."""
        s = self.settings
        return {
            "format": FORMAT,
            "kind": PREFIX,
            "model_fingerprint": self.generator.fingerprint(),
            "class_ids": list(s.class_ids),
            "per_class": s.per_class,
            **s.hashed(),
            **(self.screen.hashed() if self.screen is not None else {}),
        }

    def header(self) -> dict:
        g, ids = self.generator, list(self.settings.class_ids)
        screened = {} if self.screen is None else {"classifier": self.screen.settings.classifier}
        return dataset_header(self, {"class_ids": ids, "num_classes": len(ids),
                                     "class_names": [g.class_names[c] for c in ids],
                                     "model_num_classes": g.num_classes, **screened}, labeled=True)
