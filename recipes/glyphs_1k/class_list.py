"""The committed class list, `classes.json`: what every step after the selection reads.

It lives apart from `classes` (which chooses the list and needs the renderer to do so) so that
the renderer's benchmark can read it without the two modules importing each other.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

CLASSES_JSON = Path(__file__).resolve().parent / "classes.json"


@dataclass(frozen=True)
class GlyphClass:
    """One source class."""

    id: int
    codepoint: int
    char: str
    name: str


def load_classes(path: Path = CLASSES_JSON) -> list[GlyphClass]:
    """The committed class list, in id order."""
    return [GlyphClass(**entry) for entry in json.loads(Path(path).read_text(encoding="utf-8"))]
