"""Target data as an ImageFolder tree: `train/<class>/...`, optional `val/<class>/...` and
`test/<class>/...`, optional `unlabeled/...`."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset
from torchvision.datasets import ImageFolder

from ptcommon.cli import InputError
from ptcommon.inputs import IMAGE_SUFFIXES, image_files, load_image

from .labeled import LabeledImages


class FolderSource:
    """Image files by index (an ImageSource)."""

    def __init__(self, paths: list[str]):
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, index: int) -> Image.Image:
        return load_image(self.paths[index])

    def header(self, index: int) -> tuple[str, tuple[int, int]]:
        path = self.paths[index]
        try:
            with Image.open(path) as image:  # reads the header only
                return image.mode, image.size
        except (UnidentifiedImageError, OSError) as err:
            raise InputError(f"{path}: cannot read this image ({err.__class__.__name__}); fix or remove it") from None

    def key(self, index: int) -> str:
        return self.paths[index]


def labeled_split(root: Path, split: str, transform=None, flag: str = "--data",
                  classes: list[str] | None = None) -> LabeledImages:
    """`root/split/<class>/*`, classes sorted by folder name (torchvision's ImageFolder finds them). With
    CLASSES (train/'s, or a run's), labels index into them by name: a part may lack a class, but a
    class folder outside them is refused."""
    folder = root / split
    if not folder.is_dir():
        raise InputError(f"{flag} {root}: no {split}/ folder; expected {split}/<class>/<image> (an ImageFolder tree)")
    empty = sorted(p.name for p in folder.iterdir() if p.is_dir() and not any(f.is_file() for f in p.rglob("*")))
    if empty:
        raise InputError(f"{flag} {root}: class folder {split}/{empty[0]} is empty; every class needs images")
    try:
        found = ImageFolder(str(folder), loader=load_image)
    except FileNotFoundError as err:
        raise InputError(f"{flag} {root}: {split}/ holds no class folders with images ({err})") from None
    labels = found.targets
    if classes is not None:
        unknown = [c for c in found.classes if c not in classes]
        if unknown:
            raise InputError(f"{flag} {root}: {split}/{unknown[0]} is not one of the {len(classes)} classes "
                             f"({', '.join(classes[:5])}{', ...' if len(classes) > 5 else ''}); rename or remove it")
        labels = [classes.index(found.classes[label]) for label in labels]
    return LabeledImages(FolderSource([path for path, _ in found.samples]), labels, classes or found.classes,
                         f"{flag} {root}", transform=transform)


class UnlabeledImages(Dataset):
    """Every image below a folder, in sorted path order, labels ignored."""

    def __init__(self, root: Path, transform=None, flag: str = "--unlabeled"):
        self.root = root
        self.paths = image_files(root)
        if not self.paths:
            raise InputError(f"{flag} {root}: no images found ({', '.join(IMAGE_SUFFIXES[:4])}, ...)")
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        image = load_image(str(self.paths[index]))
        return self.transform(image) if self.transform else image
