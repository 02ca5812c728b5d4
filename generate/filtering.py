"""`ptgen synth --classifier C --min-confidence P`: each sample the first of its own candidates that the
source classifier gives its class with probability at least P.

Sample i (a slot: its class is fixed by the plan) draws candidates 0, 1, ... in order: candidate 0
has the unfiltered sample's seed, candidate c > 0 a seed from (seed, i, c) alone, and the slot keeps
the first candidate the classifier passes. A candidate's image depends on its seed only, and its
score on the image only: the classifier sees each candidate alone, as a batch of one image
prepared on its own, since its convolutions round differently at different batch sizes (measured
on the built-in classifier on a CPU: up to 7e-6 in a logit) and even for one image at another
memory layout, which could flip a decision at the threshold or the recorded confidence's last
digit. So which candidate a slot keeps, and its bytes, are the same at any --batch-size, split over
ranks, or after a resume; the runner (generate/runner.py) only decides which candidates share a
generator batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import click
import numpy as np
import torch
from PIL import Image

from ptcommon.cli import InputError

from .generator import CANDIDATE_STREAM, Generator
from .plan import sample_seed

if TYPE_CHECKING:
    from .soft_labels import SourceClassifier

# A slot that draws this many candidates without a kept one stops the job. A class kept at rate a
# fails a slot with probability (1 - a)^32: 1e-6 at a = 0.36, 5e-9 at a = 0.45, so among a million
# samples the stop comes, in practice, only from a class the classifier keeps for well under half
# of its candidates (each of its images costing two or more), and no sample costs more than 32
# candidates before the job says so. 16 would stop on classes kept for a half (1.5e-5 a slot).
DEFAULT_MAX_CANDIDATES = 32
CONFIDENCE_DIGITS = 6  # as a pseudo sample's target_confidence


def candidate_seed(seed: int, index: int, candidate: int) -> int:
    """The noise seed of sample INDEX's candidate CANDIDATE: the unfiltered sample's seed for candidate
    0, else a 63-bit seed of SeedSequence([sample_seed(seed, index), CANDIDATE_STREAM, candidate]), a
    function of (seed, index, candidate) alone and apart from the seed's other streams (its prompt's
    and its guidance scale's draws)."""
    first = sample_seed(seed, index)
    if candidate == 0:
        return first
    words = np.random.SeedSequence([first, CANDIDATE_STREAM, candidate]).generate_state(1, np.uint64)
    return int(words[0] >> np.uint64(1))


@dataclass(frozen=True)
class FilterSettings:
    """What `ptgen synth --classifier` filters with (`run_synth`'s SCREEN)."""

    classifier: str
    min_confidence: float
    max_candidates: int = DEFAULT_MAX_CANDIDATES
    classifier_weights: Path | None = None


@dataclass
class Screen:
    """The source classifier a synth job's candidates pass, with what it decided: `outcomes[i]` =
    (the candidate sample i kept, its confidence), until the writer takes it for i's record; per
    class, the candidates scored and kept by this process, for the message of a slot that runs out."""

    settings: FilterSettings
    source: SourceClassifier
    class_names: list[str]  # the generator's
    digest: str  # classifier_digest: what identifies its weights
    preprocessing: str  # generate.soft_labels.preprocessing
    seed: int
    outcomes: dict[int, tuple[int, float]] = field(default_factory=dict)
    scored: dict[int, int] = field(default_factory=dict)
    kept: dict[int, int] = field(default_factory=dict)

    def candidate_seed(self, index: int, candidate: int) -> int:
        return candidate_seed(self.seed, index, candidate)

    def confidence(self, images: np.ndarray, labels: Sequence[int]) -> list[float]:
        """Each image's probability of its generator class, at T = 1 over all the classifier's classes,
        each image through the classifier's own preprocessing and scored alone (module docstring)."""
        from .soft_labels import source_logits

        scores = []
        for pixels, label in zip(images, labels):
            image = Image.fromarray(pixels[..., 0] if pixels.shape[2] == 1 else pixels)
            p = torch.softmax(source_logits([image], self.source), dim=1)[0]
            scores.append(float(p[self.source.mapping == label].sum()))
        return scores

    def decide(self, index: int, label: int, candidate: int, confidence: float) -> bool:
        """Whether the slot keeps this candidate, counted for its class; past the cap, the job stops."""
        kept = confidence >= self.settings.min_confidence
        self.scored[label] = self.scored.get(label, 0) + 1
        if kept:
            self.kept[label] = self.kept.get(label, 0) + 1
            self.outcomes[index] = (candidate, confidence)
        elif candidate + 1 >= self.settings.max_candidates:
            raise self._exhausted(index, label)
        return kept

    def cost(self) -> int:
        """Candidates a kept sample has cost this process so far, rounded up; 1 before any was kept."""
        kept = sum(self.kept.values())
        return -(-sum(self.scored.values()) // kept) if kept else 1

    def _exhausted(self, index: int, label: int) -> click.ClickException:
        s = self.settings
        return click.ClickException(
            f"--max-candidates {s.max_candidates}: sample {index} of class {label} ({self.class_names[label]}) drew "
            f"{s.max_candidates} candidates and none reached --min-confidence {s.min_confidence:g} under --classifier "
            f"{s.classifier}; this class kept {self.kept.get(label, 0)}/{self.scored[label]} of its candidates so far. "
            "Lower --min-confidence or raise --max-candidates (finished shards are kept)")

    def hashed(self) -> dict:
        """What the filter adds to a synth dataset's config hash."""
        return {"classifier_sha256": self.digest, "min_confidence": self.settings.min_confidence,
                "max_candidates": self.settings.max_candidates,
                **({"preprocessing": self.preprocessing} if self.preprocessing != "resize" else {})}


def check_filter(classifier: str | None, min_confidence: float | None, max_candidates: int | None,
                 weights: Path | None) -> FilterSettings | None:
    """The filter the flags ask for, or None; refuses a flag that acts only with another that is missing."""
    from ptcommon.classifiers import check_classifier

    if classifier is None:
        given = [flag for flag, value in (("--min-confidence", min_confidence), ("--max-candidates", max_candidates),
                                          ("--classifier-weights", weights)) if value is not None]
        if given:
            raise InputError(f"{given[0]} acts only with --classifier: give --classifier SPEC (builtin:glyphs-1k "
                             "for the built-in world, timm:NAME for an ImageNet generator), or drop it")
        return None
    if min_confidence is None:
        raise InputError(f"--classifier {classifier}: give --min-confidence P as well, the probability of its own "
                         "class a sample needs to be kept (0 < P <= 1)")
    check_classifier(classifier, "--classifier", weights)
    return FilterSettings(classifier, min_confidence, max_candidates or DEFAULT_MAX_CANDIDATES, weights)


def load_screen(settings: FilterSettings, generator: Generator, class_ids: Sequence[int], seed: int) -> Screen:
    """The screen of FilterSettings, its classifier on the generation device, checked against the
    generator's classes and the job's (each needs an output of the classifier) before anything is written."""
    from ptcommon.classifiers import classifier_digest

    from .soft_labels import load_source, preprocessing

    source = load_source(settings.classifier, generator, settings.classifier_weights)
    covered = set(source.mapping.tolist())
    missing = [c for c in class_ids if c not in covered]
    if missing:
        raise InputError(f"--classifier {settings.classifier}: none of its {source.config.num_classes} classes is "
                         f"the generator's class {missing[0]} ({generator.class_names[missing[0]]}), so no sample of "
                         "it could be kept; use a classifier over the generator's classes, or leave that class out")
    digest = classifier_digest(settings.classifier, settings.classifier_weights)
    return Screen(settings, source, generator.class_names, digest, preprocessing(settings.classifier), seed)
