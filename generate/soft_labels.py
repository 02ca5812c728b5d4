"""Soft labels for pseudo conditional sampling: p = softmax(C_s(x) / T), optionally kept to its top-k.

The source classifier sees each target image as it was trained to: a run folder (or a built-in)
with its recorded preprocessing (channels, a plain resize to its size, normalisation), a `timm:`
model with timm's evaluation transform from its data config (resize of the shorter side by
`crop_pct`, centre crop, its interpolation, mean and std). It runs on the generation device, in
batches. Its classes are mapped onto the generator's by source class id.

The labels are computed once per output folder: the first rank to need them writes them there
(SOFT_LABELS_FILE, with what they were computed from), the other ranks read them, and a rerun
reuses them.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, NamedTuple

import numpy as np
import torch
from PIL import Image

from ptcommon.cli import InputError
from ptcommon.classifiers import load_classifier
from ptcommon.timm_specs import data_config, is_timm, timm_name
from ptcommon.outputs import write_atomically
from ptcommon.runfolder import ModelConfig
from ptcommon.shards import DATASET_FILE, SOFT_LABELS_FILE, UNSURE_CONFIDENCE, temp_name
from ptcommon.storage import Location

from .generator import Generator
from .pseudo import open_target

# The preprocessing a classifier SPEC gets, by name (part of the soft labels' key).
RESIZE, TIMM_EVAL = "resize", "timm-eval"
# A claim on computing the soft labels untouched this long belongs to a rank that died.
_STALE_CLAIM_S = 60


def classifier_input(paths: list, config: ModelConfig) -> torch.Tensor:
    """Images (paths, or generate.pseudo's target images) as the classifier saw them in training: its
    channels, size and normalisation."""
    return resized_input([open_target(Path(path) if isinstance(path, str) else path) for path in paths], config)


def resized_input(images: list[Image.Image], config: ModelConfig) -> torch.Tensor:
    """Decoded images as a run folder's classifier saw them in training (`classifier_input`)."""
    mode = "L" if config.in_chans == 1 else "RGB"
    arrays = []
    for image in images:
        image = image.convert(mode).resize((config.image_size, config.image_size), Image.Resampling.BILINEAR)
        arrays.append(np.asarray(image, dtype=np.float32).reshape(config.image_size, config.image_size, -1))
    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2) / 255.0
    mean = torch.tensor(config.mean).view(1, -1, 1, 1)
    std = torch.tensor(config.std).view(1, -1, 1, 1)
    return (x - mean) / std


def preprocessing(spec: str) -> str:
    return TIMM_EVAL if is_timm(spec) else RESIZE


@functools.lru_cache(maxsize=4)
def _timm_transform(spec: str) -> Callable:
    from timm.data import create_transform

    return create_transform(**data_config(timm_name(spec)))


def timm_input(images: list[Image.Image], spec: str) -> torch.Tensor:
    """Decoded images through timm's evaluation transform for the weights of timm SPEC, as timm evaluates them."""
    transform = _timm_transform(spec)
    return torch.stack([transform(image.convert("RGB")) for image in images])


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


class SourceClassifier(NamedTuple):
    spec: str
    model: torch.nn.Module  # on the generation device
    config: ModelConfig
    mapping: torch.Tensor  # generator class of each output (class_map)


def load_source(spec: str, generator: Generator, weights: Path | None = None) -> SourceClassifier:
    """The classifier a SPEC names, checked against the generator's classes, on its device."""
    model, config = load_classifier(spec, "--classifier", weights)
    return SourceClassifier(spec, model.to(generator.device), config, class_map(config, generator, spec))


def source_input(images: list[Image.Image], source: SourceClassifier) -> torch.Tensor:
    """Decoded images through the source classifier's own preprocessing, on the CPU."""
    return timm_input(images, source.spec) if is_timm(source.spec) else resized_input(images, source.config)


@torch.inference_mode()
def source_logits(images: list[Image.Image], source: SourceClassifier) -> torch.Tensor:
    """The source classifier's logits for decoded images, computed on its device, returned in fp32 on the CPU."""
    device = next(source.model.parameters()).device
    return source.model(source_input(images, source).to(device)).float().cpu()


@torch.inference_mode()
def soft_labels(paths: list, source: SourceClassifier, generator: Generator, temperature: float,
                top_k: int | None, batch_size: int = 256) -> SoftLabels:
    """Probabilities over the generator's classes for each target, and how sure the classifier is of it."""
    rows, confidence = [], []
    for i in range(0, len(paths), batch_size):
        logits = source_logits([open_target(path) for path in paths[i : i + batch_size]], source)
        confidence.append(torch.softmax(logits, dim=1).amax(1))
        p = torch.softmax(logits / temperature, dim=1)
        if top_k is not None and top_k < p.shape[1]:
            kept = p.topk(top_k, dim=1)
            p = torch.zeros_like(p).scatter_(1, kept.indices, kept.values)
            p = p / p.sum(1, keepdim=True)
        full = torch.zeros(len(p), generator.num_classes)
        full[:, source.mapping] = p
        rows.append(full)
    return SoftLabels(torch.cat(rows), torch.cat(confidence))


def _stored_key(path: Path) -> dict | None:
    from safetensors import safe_open

    if not path.exists():
        return None
    with safe_open(str(path), "pt") as f:
        return json.loads((f.metadata() or {}).get("key", "null"))


def check_soft_labels(out: Location, local: Path, key: dict, overwrite: bool) -> None:
    """Refuse, before anything is written, an output folder holding soft labels of another `key`
    (classifier, preprocessing, targets, T, top-k, generator classes), unless --overwrite. Beside a
    dataset.json the config check decides: the config hash covers all of the key. For a URL --out,
    LOCAL is this rank's staging folder, and the stored soft labels are fetched into it first."""
    if out.remote and out.exists(SOFT_LABELS_FILE):
        (local / SOFT_LABELS_FILE).write_bytes(out.read_bytes(SOFT_LABELS_FILE))
    if out.exists(DATASET_FILE):
        return
    found = _stored_key(local / SOFT_LABELS_FILE)
    if found is not None and found != key and not overwrite:
        differs = [k for k in sorted(set(key) | set(found)) if key.get(k) != found.get(k)]
        raise InputError(f"--out {out}: its {SOFT_LABELS_FILE} was computed with another {', '.join(differs)}; "
                         "use another folder, or --overwrite to replace them")


def shared_soft_labels(out: Location, local: Path, key: dict, compute: Callable[[], SoftLabels]) -> SoftLabels:
    """The soft labels in `out` if they were computed from `key`; otherwise the first rank to get
    here claims the computation, computes and writes them, and the other ranks wait and read them.
    Called once the folder is prepared. Ranks may start in any order: a claim whose rank died
    (no heartbeat for _STALE_CLAIM_S) passes to the next rank that finds it.

    An object store has no claim file with a heartbeat: for a URL --out each rank keeps them in
    LOCAL, its staging folder (fetched there by `check_soft_labels` when the folder has them, else
    computed), and uploads them unless the folder has them (`Location.create_bytes`). A rank whose
    upload another's came before takes the folder's copy instead of its own, so that every rank,
    and every rerun, conditions on the same probabilities even where ranks on different GPUs
    round them differently."""
    fetched = out.remote and _stored_key(local / SOFT_LABELS_FILE) == key  # the folder's own copy already
    labels = _local_soft_labels(local, key, compute)
    if not out.remote or fetched:
        return labels
    mine = (local / SOFT_LABELS_FILE).read_bytes()
    if out.create_bytes(SOFT_LABELS_FILE, mine):
        return labels
    kept = out.read_bytes(SOFT_LABELS_FILE)
    if kept == mine:
        return labels
    write_atomically(local / SOFT_LABELS_FILE, lambda tmp: tmp.write_bytes(kept), "--out", lambda: len(kept))
    if _stored_key(local / SOFT_LABELS_FILE) != key:
        raise InputError(f"--out {out}: another run wrote its {SOFT_LABELS_FILE} meanwhile, from other settings; "
                         "give each run a folder of its own")
    return _local_soft_labels(local, key, compute)


def _local_soft_labels(out: Path, key: dict, compute: Callable[[], SoftLabels]) -> SoftLabels:
    from safetensors.torch import load_file, save_file

    path = out / SOFT_LABELS_FILE
    claim = out / temp_name(SOFT_LABELS_FILE + ".claim")
    while _stored_key(path) != key:
        if not _take_claim(claim):
            time.sleep(1.0)
            continue
        try:
            with _heartbeat(claim):
                labels = compute()
            tensors = {"probs": labels.probs.contiguous(), "confidence": labels.confidence.contiguous()}
            write_atomically(path, lambda tmp: save_file(tensors, str(tmp),
                                                         metadata={"key": json.dumps(key, sort_keys=True)}),
                             "--out", lambda: sum(t.numel() * t.element_size() for t in tensors.values()))
            return labels
        finally:
            claim.unlink(missing_ok=True)
    stored = load_file(str(path))
    return SoftLabels(stored["probs"], stored["confidence"])


def _take_claim(claim: Path) -> bool:
    """Create the claim file, or replace one whose rank stopped beating; False while another holds it."""
    with contextlib.suppress(FileNotFoundError):
        if time.time() - claim.stat().st_mtime > _STALE_CLAIM_S:
            claim.unlink(missing_ok=True)
    try:
        os.close(os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        return False


@contextlib.contextmanager
def _heartbeat(claim: Path) -> Iterator[None]:
    """Touch the claim while the block runs, so that waiting ranks know its rank is alive."""
    done = threading.Event()

    def beat() -> None:
        while not done.wait(_STALE_CLAIM_S / 6):
            with contextlib.suppress(FileNotFoundError):
                os.utime(claim)

    beater = threading.Thread(target=beat, daemon=True)
    beater.start()
    try:
        yield
    finally:
        done.set()
        beater.join()




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
