"""The twelve regular DejaVu faces that matplotlib ships, and the code points they all cover."""

from __future__ import annotations

import unicodedata
from functools import lru_cache
from pathlib import Path

import matplotlib
from fontTools.ttLib import TTFont

# Sans, Serif and Sans Mono with their bold/slanted variants. The Display faces are left
# out: they hold only a few hundred glyphs and would shrink the common coverage.
FACE_NAMES: tuple[str, ...] = (
    "DejaVuSans",
    "DejaVuSans-Bold",
    "DejaVuSans-Oblique",
    "DejaVuSans-BoldOblique",
    "DejaVuSerif",
    "DejaVuSerif-Bold",
    "DejaVuSerif-Italic",
    "DejaVuSerif-BoldItalic",
    "DejaVuSansMono",
    "DejaVuSansMono-Bold",
    "DejaVuSansMono-Oblique",
    "DejaVuSansMono-BoldOblique",
)

# Letters and symbols only: no number category (Nd, Nl, No) of any script may become a
# source class, so the source label space stays disjoint from digit targets.
ALLOWED_CATEGORY_PREFIXES: tuple[str, ...] = ("L", "S")


def face_paths() -> list[Path]:
    """Paths of the twelve TrueType files, in `FACE_NAMES` order."""
    font_dir = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    paths = [font_dir / f"{name}.ttf" for name in FACE_NAMES]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"matplotlib's DejaVu fonts are missing: {', '.join(missing)}")
    return paths


@lru_cache(maxsize=1)
def common_coverage() -> frozenset[int]:
    """Code points that every one of the twelve faces maps to a glyph."""
    covered: set[int] | None = None
    for path in face_paths():
        cmap = set(TTFont(path, lazy=True)["cmap"].getBestCmap())
        covered = cmap if covered is None else covered & cmap
    return frozenset(covered or ())


def is_allowed_category(codepoint: int) -> bool:
    """True for Unicode letters (L*) and symbols (S*)."""
    return unicodedata.category(chr(codepoint)).startswith(ALLOWED_CATEGORY_PREFIXES)


def candidate_codepoints() -> list[int]:
    """Sorted code points covered by all twelve faces whose category is L* or S*."""
    return sorted(cp for cp in common_coverage() if is_allowed_category(cp))
