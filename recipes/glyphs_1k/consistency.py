"""Class consistency: the source classifier's top-1 on a generator's samples; and fidelity: the
Frechet distance between the classifier's features of those samples and of real renders of the
same classes (an FID in the source classifier's feature space, so it also sees lost diversity).

    python -m recipes.glyphs_1k.consistency --model ptcommon/builtin/glyphs-1k/generator \\
        --classifier ptcommon/builtin/glyphs-1k/classifier --per-class 2
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from generate.generator import Generator
from generate.models import load_generator
from ptcommon.runfolder import ModelConfig, load_run

from .classes import shipped_renderer

# Real renders for the Frechet distance come from seeds the classifier never trained on.
REFERENCE_SEED = 20_000


def load_classifier(run_dir: Path) -> tuple[torch.nn.Module, ModelConfig]:
    """A classifier run folder (config.json + model.safetensors) as an eval-mode timm model."""
    return load_run(str(run_dir), "--classifier")


@dataclass
class Consistency:
    top1: float
    images: int
    images_per_s: float  # sampling speed of the generator at these settings
    features: torch.Tensor  # (images, D) pooled features of the classifier, for `frechet_distance`


def features_and_logits(
    classifier: torch.nn.Module, config: ModelConfig, images: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled pre-logit features and logits of uint8 (N, C, H, W) images, with the classifier's normalisation."""
    x = images.float().div(255.0)
    x = (x - torch.tensor(config.mean).view(1, -1, 1, 1)) / torch.tensor(config.std).view(1, -1, 1, 1)
    features = classifier.forward_features(x)
    return classifier.forward_head(features, pre_logits=True), classifier.forward_head(features)


@torch.inference_mode()
def class_consistency(
    generator: Generator, classifier: torch.nn.Module, config: ModelConfig, class_ids: list[int],
    per_class: int, steps: int, guidance: float, batch_size: int = 250, seed: int = 10_000,
) -> Consistency:
    labels = torch.tensor(class_ids).repeat(per_class)
    correct, sample_s, features = 0, 0.0, []
    for i in range(0, len(labels), batch_size):
        batch = labels[i : i + batch_size]
        start = time.perf_counter()
        images = generator.sample(batch, [seed + i + j for j in range(len(batch))], steps, guidance)
        sample_s += time.perf_counter() - start
        pooled, logits = features_and_logits(classifier, config, torch.from_numpy(images).permute(0, 3, 1, 2))
        correct += int((logits.argmax(1) == batch).sum())
        features.append(pooled)
    return Consistency(correct / len(labels), len(labels), len(labels) / sample_s, torch.cat(features))


@torch.inference_mode()
def render_features(
    classifier: torch.nn.Module, config: ModelConfig, class_ids: list[int], per_class: int,
    seed: int = REFERENCE_SEED, size: int = 16,
) -> torch.Tensor:
    """The classifier's pooled features of real renders, laid out like `class_consistency`'s samples."""
    renderer = shipped_renderer(size)
    labels = torch.tensor(class_ids).repeat(per_class)
    return features_and_logits(classifier, config, renderer.render(labels, seed))[0]


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Frechet distance between Gaussians fitted to two (N, D) feature sets (the FID formula)."""
    a, b = a.double().numpy(), b.double().numpy()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    # tr sqrt(A B) is the sum of the square roots of A B's eigenvalues, which are real and >= 0 for
    # PSD A, B; round-off leaves tiny imaginary or negative parts, hence real/clip.
    eigenvalues = np.linalg.eigvals(cov_a @ cov_b).real.clip(min=0.0)
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2.0 * np.sqrt(eigenvalues).sum())


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Class consistency of a generator under a classifier.")
    ap.add_argument("--model", type=Path, required=True, help="diffusers folder of the generator")
    ap.add_argument("--classifier", type=Path, required=True, help="classifier run folder")
    ap.add_argument("--per-class", type=int, default=2)
    ap.add_argument("--every", type=int, default=1, help="use every k-th class (1 = all)")
    ap.add_argument("--steps", type=int)
    ap.add_argument("--guidance", type=float)
    args = ap.parse_args(argv)
    gen = load_generator(str(args.model))
    classifier, config = load_classifier(args.classifier)
    steps = args.steps or gen.defaults.steps
    guidance = args.guidance if args.guidance is not None else gen.defaults.guidance
    ids = list(range(0, gen.num_classes, args.every))
    result = class_consistency(gen, classifier, config, ids, args.per_class, steps, guidance)
    fd = frechet_distance(result.features, render_features(classifier, config, ids, args.per_class))
    print(json.dumps({"top1": result.top1, "fd": round(fd, 3), "images": result.images,
                      "images_per_s": round(result.images_per_s, 2), "steps": steps, "guidance": guidance}))


if __name__ == "__main__":
    main()
