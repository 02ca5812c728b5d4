"""How much each pseudo sample counts in P-SSL: from what the source classifier knew of the target
image that conditioned it (docs/method.md, "The guard").

A pseudo sample is a source-domain look-alike of a target image only when the source classifier
recognised that image; where it did not, the sample follows the classifier's guess, and training on
it cost accuracy (docs/results.md). `ptgen pseudo` stores that confidence (the classifier's top-1
probability on the target) in every sample's `.json` as `target_confidence`, and a guard turns it
into the weight of the sample's unlabeled loss. A dropped sample is never read into a batch.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Callable

import pyarrow as pa
import pyarrow.parquet as pq

from ptcommon.cli import InputError
from ptcommon.shards import MANIFEST_FILE, TARGET_CONFIDENCE, UNSURE_CONFIDENCE
from ptcommon.storage import as_location

GUARDS = ("none", "weight", "drop", "gate")
DEFAULT_GUARD = "gate"


@dataclass(frozen=True)
class Guard:
    """none: every sample counts fully. weight: a sample counts by its target's confidence. drop:
    samples of targets under `threshold` are left out, the rest count fully. gate: every sample
    counts fully where the targets' mean confidence reaches `threshold`, none does otherwise (the
    source knows the target as a whole, or it does not)."""

    kind: str = DEFAULT_GUARD
    threshold: float = UNSURE_CONFIDENCE

    def weight(self, confidence: float) -> float:
        if self.kind == "weight":
            return confidence
        if self.kind == "drop":
            return 1.0 if confidence >= self.threshold else 0.0
        return 1.0

    def weight_of(self) -> Callable[[dict], float] | None:
        """A sample's weight from its `.json`; None when every sample that is read counts alike (no field
        is read: a gate that is open)."""
        if self.kind in ("none", "gate"):
            return None
        return lambda meta: self.weight(float(meta[TARGET_CONFIDENCE]))

    def describe(self) -> str:
        return f"{self.kind} at {self.threshold:g}" if self.thresholded else self.kind

    @property
    def thresholded(self) -> bool:
        return self.kind in ("drop", "gate")

    def summary(self, confidences: list[float]) -> dict:
        """What the guard does to a folder: the samples it keeps and their mean weight over all samples."""
        if self.kind == "gate":
            is_open = bool(confidences) and statistics.fmean(confidences) >= self.threshold
            weights = [1.0 if is_open else 0.0] * len(confidences)
        else:
            weights = [self.weight(c) for c in confidences]
        return {"guard": self.kind, "guard_threshold": self.threshold if self.thresholded else None,
                "pseudo_samples": len(weights), "pseudo_kept": sum(w > 0 for w in weights),
                "pseudo_mean_weight": round(statistics.fmean(weights), 6) if weights else None,
                "targets_mean_confidence": round(statistics.fmean(confidences), 6) if confidences else None}


def target_confidences(root, flag: str = "--unlabeled") -> list[float]:
    """Every pseudo sample's target confidence, from the folder's manifest (one row a sample)."""
    root = as_location(root, flag)
    rerun = "rerun ptgen pseudo with its --target into a new --out"
    if not root.exists(MANIFEST_FILE):
        raise InputError(f"{flag} {root}: no {MANIFEST_FILE}, so the guard cannot read how sure the source classifier "
                         f"was of each target; finish the folder (rerun the ptgen pseudo command that made it), or "
                         f"pass --guard none")
    manifest = pa.BufferReader(root.read_bytes(MANIFEST_FILE))
    if TARGET_CONFIDENCE not in pq.read_schema(manifest).names:
        raise InputError(f"{flag} {root}: its pseudo samples do not record {TARGET_CONFIDENCE} (made by an older "
                         f"ptgen), which --guard needs; {rerun}, or pass --guard none")
    return [float(c) for c in pq.read_table(manifest, columns=[TARGET_CONFIDENCE]).column(0).to_pylist()]


def choose_guard(kind: str | None, threshold: float | None, *, real_images: bool, unlabeled: str):
    """--guard and --guard-threshold, checked before anything is read or written."""
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
