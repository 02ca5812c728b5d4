"""Soft labels for pseudo conditional sampling: p = softmax(C_s(x) / T), optionally kept to its top-k.

The source classifier is read from the run-folder format with its own preprocessing (channels,
size, normalisation). Its classes are mapped onto the generator's by source class id.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image

from ptcommon.cli import InputError
from ptcommon.classifiers import load_classifier
from ptcommon.runfolder import ModelConfig

from .generator import Generator


def classifier_input(paths: list[Path], config: ModelConfig) -> torch.Tensor:
    """Images as the classifier saw them in training: its channels, size and normalisation."""
    mode = "L" if config.in_chans == 1 else "RGB"
    arrays = []
    for path in paths:
        with Image.open(path) as image:
            image = image.convert(mode).resize((config.image_size, config.image_size), Image.Resampling.BILINEAR)
            arrays.append(np.asarray(image, dtype=np.float32).reshape(config.image_size, config.image_size, -1))
    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2) / 255.0
    mean = torch.tensor(config.mean).view(1, -1, 1, 1)
    std = torch.tensor(config.std).view(1, -1, 1, 1)
    return (x - mean) / std


def class_map(config: ModelConfig, generator: Generator, spec: str) -> torch.Tensor:
    """Generator class index of each classifier output, via source class ids."""
    ids = config.source_ids if config.source_ids is not None else list(range(config.num_classes))
    n, names = generator.num_classes, generator.class_names_file
    if names is not None and ids == list(range(config.num_classes)) and config.num_classes != n:
        # The classifier's outputs are the classes by index, so each needs its line, and a line
        # beyond them names a class no soft label can reach: either way the file is not its list.
        raise InputError(f"--class-names {names}: the names file has {n} lines, the classifier {spec} "
                         f"{config.num_classes} classes; its lines name the classifier's classes in index order, "
                         f"so give {config.num_classes} names")
    if config.source_ids is None and config.num_classes != n:
        raise InputError(f"--classifier {spec}: {config.num_classes} classes without source ids; the generator has "
                         f"{n}, so its classes cannot be matched")
    bad = [i for i in ids if not 0 <= i < n]
    if bad:
        classes = f"--class-names {names} has {n} lines" if names is not None else f"the generator's classes are 0..{n - 1}"
        raise InputError(f"--classifier {spec}: its {config.num_classes} classes reach source class {bad[0]}, but "
                         f"{classes}; use a classifier over the generator's classes")
    return torch.tensor(ids)


class SoftLabels(NamedTuple):
    probs: torch.Tensor  # (targets, generator classes): the condition of each target's samples
    confidence: torch.Tensor  # (targets,): the classifier's top-1 probability at T = 1 over all its classes


@torch.inference_mode()
def soft_labels(paths: list[Path], spec: str, generator: Generator, temperature: float, top_k: int | None,
                batch_size: int = 256, weights: Path | None = None) -> SoftLabels:
    """Probabilities over the generator's classes for each target, and how sure the classifier is of it."""
    model, config = load_classifier(spec, "--classifier", weights)
    mapping = class_map(config, generator, spec)
    rows, confidence = [], []
    for i in range(0, len(paths), batch_size):
        logits = model(classifier_input(paths[i : i + batch_size], config)).float()
        confidence.append(torch.softmax(logits, dim=1).amax(1))
        p = torch.softmax(logits / temperature, dim=1)
        if top_k is not None and top_k < p.shape[1]:
            kept = p.topk(top_k, dim=1)
            p = torch.zeros_like(p).scatter_(1, kept.indices, kept.values)
            p = p / p.sum(1, keepdim=True)
        full = torch.zeros(len(p), generator.num_classes)
        full[:, mapping] = p
        rows.append(full)
    return SoftLabels(torch.cat(rows), torch.cat(confidence))


# Below this mean top-1 probability the classifier recognises few targets. On the built-in world,
# P-SSL lifted PP on a target whose mean was 0.78 and did nothing on two at 0.11 and 0.16
# (docs/results.md, "Ablations": coverage groups).
UNSURE_CONFIDENCE = 0.3


def confidence_note(confidence: torch.Tensor) -> tuple[str, bool]:
    """One line on how sure the source classifier is of the targets, and whether that is low."""
    mean = float(confidence.mean())
    line = (f"source classifier on the {len(confidence)} targets: mean top-1 probability {mean:.2f} "
            f"(median {float(confidence.median()):.2f})")
    if mean >= UNSURE_CONFIDENCE:
        return line, False
    return (line + f", under {UNSURE_CONFIDENCE}: it recognises few of them, so their pseudo samples follow its "
            "guesses more than the targets. Look at `ptgen inspect OUT --grid sheet.png --target TARGET`; where "
            "the samples do not resemble their targets, P-SSL on them did not help in docs/results.md "
            "(\"Ablations\"), and PP then finetune is the safer route."), True
