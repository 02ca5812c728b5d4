"""The built-in target task: scikit-learn's handwritten digits as an ImageFolder tree.

Layout written under the output folder:

    test/<digit>/<row>.png       a fixed stratified half of the 1,797 images, the same for every seed
    train/<digit>/<row>.png      K labeled images per digit, drawn by the seed from the other half
    unlabeled/images/<row>.png   the rest of that half, labels withheld (for the oracle only)
    split.json                   the arguments and the counts

`<row>` is the image's row in `sklearn.datasets.load_digits()`, zero-padded to four digits.
The unlabeled images sit in one folder named `images`, so that an ImageFolder reader accepts
the tree while no digit label leaks into the oracle's unlabeled set.
"""

from __future__ import annotations

import io
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from ptcommon.cli import InputError

IMAGE_SIZE = 16
DEFAULT_LABELS_PER_CLASS = 10
# Seed of the test/pool split: fixed, so every --seed is scored on the same test images.
TEST_SPLIT_SEED = 0
CLASS_NAMES: tuple[str, ...] = tuple(str(d) for d in range(10))
UNLABELED_FOLDER = "images"
SPLIT_FILE = "split.json"
# The only entries an export holds; `--overwrite` replaces these and nothing else.
EXPORT_ENTRIES: frozenset[str] = frozenset({"train", "test", "unlabeled", SPLIT_FILE})


@dataclass(frozen=True)
class DigitsSplit:
    """Row indices into `load_digits()` for each part of the export."""

    test: np.ndarray
    train: np.ndarray
    unlabeled: np.ndarray


def load() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 images (N, 8, 8) with values 0..16, and their labels 0..9."""
    digits = load_digits()
    return digits.images, digits.target


def test_and_pool(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted row indices of the fixed stratified test half and of the training pool."""
    rows = np.arange(len(labels))
    pool, test = train_test_split(rows, test_size=0.5, stratify=labels, random_state=TEST_SPLIT_SEED)
    return np.sort(test), np.sort(pool)


def max_labels_per_class(labels: np.ndarray) -> int:
    """The most labels per class the training pool can give every class."""
    _, pool = test_and_pool(labels)
    return int(np.bincount(labels[pool], minlength=len(CLASS_NAMES)).min())


def check_labels_per_class(labels_per_class: int, labels: np.ndarray) -> None:
    """Raise InputError unless 1 <= labels_per_class <= what the smallest class holds."""
    top = max_labels_per_class(labels)
    if not 1 <= labels_per_class <= top:
        raise InputError(
            f"--labels-per-class {labels_per_class} is out of range: allowed 1 to {top} "
            f"(the smallest digit class holds {top} images in the training pool)"
        )


def split(labels: np.ndarray, labels_per_class: int, seed: int) -> DigitsSplit:
    """Test half, K labeled rows per class drawn by `seed`, and the remaining pool rows."""
    check_labels_per_class(labels_per_class, labels)
    if seed < 0:
        raise InputError(f"--seed {seed} is out of range: allowed 0 or more")
    test, pool = test_and_pool(labels)
    # RandomState's stream is frozen by NumPy, so a seed names the same images in every version.
    rng = np.random.RandomState(seed)
    chosen = [rng.choice(pool[labels[pool] == c], labels_per_class, replace=False) for c in range(len(CLASS_NAMES))]
    train = np.sort(np.concatenate(chosen))
    unlabeled = np.setdiff1d(pool, train)
    return DigitsSplit(test=test, train=train, unlabeled=unlabeled)


def to_png(image: np.ndarray) -> bytes:
    """An 8x8 digit (0..16, ink high) as 16x16 grayscale PNG bytes, white ink on black."""
    pixels = np.rint(image * (255.0 / 16.0)).astype(np.uint8)
    upsampled = Image.fromarray(pixels, mode="L").resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    upsampled.save(buffer, format="PNG")
    return buffer.getvalue()


def export_files(labels_per_class: int = DEFAULT_LABELS_PER_CLASS, seed: int = 0) -> dict[str, bytes]:
    """Every file of the export, as relative POSIX path -> content."""
    images, labels = load()
    parts = split(labels, labels_per_class, seed)
    files: dict[str, bytes] = {}
    for row in parts.test:
        files[f"test/{labels[row]}/{row:04d}.png"] = to_png(images[row])
    for row in parts.train:
        files[f"train/{labels[row]}/{row:04d}.png"] = to_png(images[row])
    for row in parts.unlabeled:
        files[f"unlabeled/{UNLABELED_FOLDER}/{row:04d}.png"] = to_png(images[row])
    record = {
        "source": "sklearn.datasets.load_digits",
        "image_size": IMAGE_SIZE,
        "labels_per_class": labels_per_class,
        "seed": seed,
        "test_split_seed": TEST_SPLIT_SEED,
        "classes": list(CLASS_NAMES),
        "counts": {"train": len(parts.train), "test": len(parts.test), "unlabeled": len(parts.unlabeled)},
        "per_class": {
            "train": np.bincount(labels[parts.train], minlength=len(CLASS_NAMES)).tolist(),
            "test": np.bincount(labels[parts.test], minlength=len(CLASS_NAMES)).tolist(),
            "unlabeled": np.bincount(labels[parts.unlabeled], minlength=len(CLASS_NAMES)).tolist(),
        },
    }
    files[SPLIT_FILE] = (json.dumps(record, indent=1) + "\n").encode()
    return files


def read_tree(root: Path) -> dict[str, bytes]:
    """Every regular file under `root`, as relative POSIX path -> content."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def export(out: Path, labels_per_class: int = DEFAULT_LABELS_PER_CLASS, seed: int = 0, overwrite: bool = False) -> str:
    """Write the export to `out`; return a one-line summary of what happened.

    An existing non-empty `out` is left alone if it already holds this exact export, replaced
    if `overwrite` and it holds nothing but a previous export's entries, refused otherwise.
    Files are written into a temporary sibling folder first, so a failure leaves `out` as it was.
    """
    files = export_files(labels_per_class, seed)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a folder")
    existing = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if existing:
        if read_tree(out) == files:
            return f"{out} already holds this export (labels-per-class {labels_per_class}, seed {seed}); nothing written"
        foreign = sorted(set(existing) - EXPORT_ENTRIES)
        if not overwrite:
            raise InputError(f"--out {out} is not empty and holds a different export or other files; choose another folder or pass --overwrite")
        if foreign:
            raise InputError(f"--overwrite refused: {out} holds entries that are not part of a digits export: {', '.join(foreign)}")

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        for relative, content in files.items():
            path = staging / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        if out.is_dir():
            for name in existing:
                target = out / name
                if target.is_dir():
                    shutil.rmtree(target)
                else:
                    target.unlink()
            for entry in staging.iterdir():
                entry.rename(out / entry.name)
            staging.rmdir()
        else:
            staging.rename(out)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    counts = json.loads(files[SPLIT_FILE])["counts"]
    return f"wrote {out}: train {counts['train']}, test {counts['test']}, unlabeled {counts['unlabeled']} images (16x16 PNG)"
