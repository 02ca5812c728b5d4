"""Files a user hands to either stage: folders of images and class-name lists.

Both stages read them (a target's images condition `ptgen pseudo` and train `pttrain`; a class-names
file names a text-to-image model's classes or another tool's shards), so what counts as an image and
what a valid names file is are decided here once.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, UnidentifiedImageError
from torchvision.datasets.folder import IMG_EXTENSIONS

from .cli import InputError

# torchvision's list, so that a loose folder and an ImageFolder tree take the same files.
IMAGE_SUFFIXES: tuple[str, ...] = tuple(IMG_EXTENSIONS)


def image_files(root: Path) -> list[Path]:
    """Every image file below ROOT, in sorted path order."""
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def unreadable(what: str | Path, err: Exception) -> InputError:
    """The one line for an image that PIL cannot read, naming it (a path, or a dataset's row)."""
    return InputError(f"{what}: cannot read this image ({err.__class__.__name__}); fix or remove it")


def load_image(path: str | Path) -> Image.Image:
    """An image file, decoded; an unreadable one stops with a line that names it."""
    try:
        with Image.open(path) as image:
            image.load()
            return image
    except (UnidentifiedImageError, OSError) as err:
        raise unreadable(path, err) from None


def image_header(path: str | Path) -> tuple[str, tuple[int, int]]:
    """An image file's mode and (width, height), from its header without decoding the pixels; an
    unreadable one stops as in `load_image`."""
    try:
        with Image.open(path) as image:
            return image.mode, image.size
    except (UnidentifiedImageError, OSError) as err:
        raise unreadable(path, err) from None


def read_class_names(path: Path, flag: str = "--class-names") -> list[str]:
    """The names of a class-names file: one a line, the first line class 0. Blank lines at the end are
    ignored and anywhere else refused, since they would shift every later class; so are two names
    that differ only in case or spacing, which a text encoder's tokenizer (CLIP's lowercases and
    collapses whitespace) would read as one class."""
    flag = f"{flag} {path}"
    if not path.is_file():
        raise InputError(f"{flag}: no such file; expected a text file with one class name a line (the first "
                         "line names class 0)")
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines()]
    except UnicodeDecodeError:
        raise InputError(f"{flag}: not UTF-8 text; expected one class name a line") from None
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise InputError(f"{flag}: the file is empty; expected one class name a line (the first line names class 0)")
    if "" in lines:
        number = lines.index("") + 1
        raise InputError(f"{flag}: line {number} is blank; every line up to the last name is a class (line "
                         f"{number} would be class {number - 1}), so name it or delete the line")
    first_seen: dict[str, int] = {}
    for number, name in enumerate(lines, 1):
        key = " ".join(name.lower().split())
        if key in first_seen:
            first = first_seen[key]
            classes = f"(classes {first - 1} and {number - 1})"
            both = (f"{name!r} is on line {first} and again on line {number} {classes}" if name == lines[first - 1]
                    else f"{lines[first - 1]!r} on line {first} and {name!r} on line {number} {classes} differ only "
                    "in case or spacing")
            raise InputError(f"{flag}: {both}; each class needs a name of its own")
        first_seen[key] = number
    return lines
