"""Hugging Face datasets as target tasks, for both stages (`pttrain --data`, `ptgen pseudo --target`).

A SPEC is `hf:NAME` (a hub dataset, when the hub is reachable, or a local folder that
`datasets.load_dataset` reads: parquet files, an imagefolder tree) or a folder written by
`save_to_disk` (with or without `hf:`). Splits map onto the target's parts: train, val (a split
named validation, val, valid or dev) and test. The image and label columns default to the first
Image and the first ClassLabel feature; the class names are the ClassLabel's (a label column of
plain values takes them sorted, as text). Needs the `hf` extra (`pip install -e '.[hf]'`).
"""

from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from .cli import InputError

HF_PREFIX = "hf:"
SPLITS = {"train": ("train",), "val": ("validation", "val", "valid", "dev"), "test": ("test",)}
SAVED_MARKERS = ("dataset_dict.json", "state.json")  # what save_to_disk leaves in its folder


@contextlib.contextmanager
def quiet_hub():
    """The hub client's retry warnings held back: offline, its dozen lines would bury the one-line
    refusal the caller raises when the download fails."""
    logger = logging.getLogger("huggingface_hub")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def is_hf(spec: str | Path) -> bool:
    """A SPEC this module reads: hf:NAME, or a folder written by save_to_disk."""
    text = str(spec)
    # hf:// is the hub's file system, where shard folders live (ptcommon.storage), not a dataset name
    return (text.startswith(HF_PREFIX) and not text.startswith("hf://")) or any(
        (Path(text) / m).is_file() for m in SAVED_MARKERS)


class HFImages:
    """One split's images by index (train.data.labeled's ImageSource); headers read from the encoded bytes."""

    def __init__(self, split, name: str, column: str):
        import datasets

        self.name, self.column = name, column
        self.images = split.select_columns([column])
        self.raw = self.images.cast_column(column, datasets.Image(decode=False))

    def __len__(self) -> int:
        return len(self.images)

    def load(self, index: int) -> Image.Image:
        return self.images[index][self.column]

    def header(self, index: int) -> tuple[str, tuple[int, int]]:
        raw = self.raw[index][self.column]
        with Image.open(io.BytesIO(raw["bytes"]) if raw.get("bytes") else raw["path"]) as image:
            return image.mode, image.size

    def key(self, index: int) -> str:
        return f"{self.name}/{index}"


@dataclass(frozen=True)
class HFImage:
    """Row INDEX of a split's images, opened on demand (a target image of ptgen pseudo)."""

    images: HFImages
    index: int

    @property
    def key(self) -> str:
        return self.images.key(self.index)

    def open(self) -> Image.Image:
        return self.images.load(self.index)


@dataclass
class HFTarget:
    spec: str
    splits: dict  # train / val / test -> datasets.Dataset
    image_column: str
    label_column: str
    classes: list[str]

    def part(self, part: str) -> HFImages | None:
        """The images of PART (train, val, test), or None when the dataset has no such split."""
        split = self.splits.get(part)
        return None if split is None else HFImages(split, part, self.image_column)

    def labels(self, part: str) -> list[int]:
        """Class indices of PART's rows, in the order of `classes`."""
        values = self.splits[part][self.label_column]
        if self._is_class_label():
            return [int(v) for v in values]
        index = {name: i for i, name in enumerate(self.classes)}
        missing = next((v for v in values if str(v) not in index), None)
        if missing is not None:
            raise InputError(f"--data {self.spec}: {part} holds label {missing!r}, which train does not")
        return [index[str(v)] for v in values]

    def _is_class_label(self) -> bool:
        import datasets

        return isinstance(self.splits["train"].features[self.label_column], datasets.ClassLabel)


def _load(spec: str, flag: str):
    try:
        import datasets
    except ImportError:
        raise InputError(f"{flag} {spec}: reading Hugging Face datasets needs the datasets package; "
                         "pip install -e '.[hf]'") from None
    name = spec[len(HF_PREFIX):] if spec.startswith(HF_PREFIX) else spec
    try:
        if any((Path(name) / m).is_file() for m in SAVED_MARKERS):
            return datasets.load_from_disk(name)
        with quiet_hub():
            return datasets.load_dataset(name)
    except Exception as err:  # the hub client and the builders raise many types
        reason = str(err).strip().splitlines()[0][:120] if str(err).strip() else type(err).__name__
        raise InputError(f"{flag} {spec}: datasets could not load it ({reason}); without network access, "
                         "save it with save_to_disk where there is, copy the folder and pass it") from None


def _column(features, given: str | None, kind, what: str, flag: str, spec: str) -> str:
    columns = list(features)
    if given is not None:
        if given not in features:
            raise InputError(f"--{what}-column {given}: {spec} has no such column; its columns: {', '.join(columns)}")
        return given
    found = next((c for c, f in features.items() if isinstance(f, kind)), None)
    if found is None:
        feature = "an Image" if what == "image" else "a ClassLabel"
        raise InputError(f"{flag} {spec}: no {what} column ({feature} feature); its columns: {', '.join(columns)}; "
                         f"name one with --{what}-column")
    return found


def open_hf(spec: str, flag: str = "--data", image_column: str | None = None,
            label_column: str | None = None, labeled: bool = True) -> HFTarget:
    """The dataset SPEC names, its splits mapped to train / val / test and its columns checked."""
    import datasets

    loaded = _load(str(spec), flag)
    found = dict(loaded) if isinstance(loaded, datasets.DatasetDict) else {"train": loaded}
    splits = {part: found[name] for part, names in SPLITS.items() for name in names if name in found}
    splits = {part: splits[part] for part in SPLITS if part in splits}
    if "train" not in splits:
        raise InputError(f"{flag} {spec}: no train split; its splits: {', '.join(found)}")
    features = splits["train"].features
    image = _column(features, image_column, datasets.Image, "image", flag, spec)
    if not labeled:
        return HFTarget(str(spec), splits, image, "", [])
    label = _column(features, label_column, datasets.ClassLabel, "label", flag, spec)
    if isinstance(features[label], datasets.ClassLabel):
        classes = list(features[label].names)
    else:
        classes = sorted({str(v) for v in splits["train"][label]})
    return HFTarget(str(spec), splits, image, label, classes)
