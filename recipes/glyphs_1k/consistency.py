"""Class consistency: the source classifier's top-1 on a generator's samples.

    python -m recipes.glyphs_1k.consistency --model generate/builtin/glyphs-1k \\
        --classifier train/builtin/glyphs-1k --per-class 2
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from generate.generator import Generator
from generate.models import load_generator
from train.models import ModelConfig, load_run


def load_classifier(run_dir: Path) -> tuple[torch.nn.Module, ModelConfig]:
    """A classifier run folder (config.json + model.safetensors) as an eval-mode timm model."""
    return load_run(str(run_dir), "--classifier")


@dataclass
class Consistency:
    top1: float
    images: int
    images_per_s: float  # sampling speed of the generator at these settings


@torch.inference_mode()
def class_consistency(
    generator: Generator, classifier: torch.nn.Module, config: ModelConfig, class_ids: list[int],
    per_class: int, steps: int, guidance: float, batch_size: int = 250, seed: int = 10_000,
) -> Consistency:
    labels = torch.tensor(class_ids).repeat(per_class)
    mean, std = config.mean, config.std
    correct, sample_s = 0, 0.0
    for i in range(0, len(labels), batch_size):
        batch = labels[i : i + batch_size]
        start = time.perf_counter()
        images = generator.sample(batch, [seed + i + j for j in range(len(batch))], steps, guidance)
        sample_s += time.perf_counter() - start
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255.0)
        x = (x - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)
        correct += int((classifier(x).argmax(1) == batch).sum())
    return Consistency(correct / len(labels), len(labels), len(labels) / sample_s)


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
    result = class_consistency(gen, classifier, config, list(range(0, gen.num_classes, args.every)),
                               args.per_class, steps, guidance)
    print(json.dumps({"top1": result.top1, "images": result.images, "images_per_s": round(result.images_per_s, 2),
                      "steps": steps, "guidance": guidance}))


if __name__ == "__main__":
    main()
