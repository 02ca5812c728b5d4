"""The 1000 source classes: visually distinct glyphs that all twelve DejaVu faces cover.

Run `python -m recipes.glyphs_1k.classes` to rebuild `classes.json` (the class list) and
`selection.json` (how it was chosen, with the distinctness numbers quoted in the docs).

Class ids follow the greedy selection order, so the first k classes are themselves a
farthest-point selection of k glyphs: a prefix of any length is as spread out as the
greedy rule can make it.
"""

from __future__ import annotations

import argparse
import functools
import json
import unicodedata
from dataclasses import asdict
from pathlib import Path

import torch

from .class_list import CLASSES_JSON, GlyphClass, load_classes
from .fonts import FACE_NAMES, candidate_codepoints
from .render import STROKE_RADII, GlyphRenderer

SELECTION_JSON = Path(__file__).resolve().parent / "selection.json"

NUM_CLASSES = 1000
IMAGE_SIZE = 16
# A glyph whose plainest drawing holds less ink than this, in any face, counts as
# near-empty at the working resolution (a period or a lone accent holds about 2-3 pixels).
MIN_INK_PIXELS = 4.0
# Augmented renders averaged into each class mean; the seed only fixes which ones.
RENDERS_PER_CLASS = 32
MEAN_SEED = 0
RANDOM_SUBSET_DRAWS = 20


def ink_pixels(renderer: GlyphRenderer) -> torch.Tensor:
    """(C, faces) ink mass of the un-jittered, regular-stroke drawing, in output pixels."""
    plain = renderer.masters[:, :, STROKE_RADII.index(0)].float() / 255.0
    scale = plain.shape[-1] // renderer.size
    return plain.sum(dim=(-2, -1)) / scale**2


def class_means(renderer: GlyphRenderer, per_class: int = RENDERS_PER_CLASS, seed: int = MEAN_SEED) -> torch.Tensor:
    """(C, size*size) mean of augmented renders per class, pixel values in [0, 1]."""
    labels = torch.arange(renderer.num_classes).repeat_interleave(per_class)
    images = renderer.render(labels, seed).float().div_(255.0)
    return images.view(renderer.num_classes, per_class, -1).mean(dim=1)


def farthest_point_order(points: torch.Tensor, count: int) -> list[int]:
    """Greedy farthest-point selection of `count` rows, starting from the row farthest from the centroid."""
    if count > len(points):
        raise ValueError(f"cannot choose {count} of {len(points)} points")
    first = int(torch.cdist(points, points.mean(0, keepdim=True)).squeeze(1).argmax())
    chosen = [first]
    nearest = torch.cdist(points, points[first : first + 1]).squeeze(1)
    for _ in range(count - 1):
        pick = int(nearest.argmax())
        chosen.append(pick)
        nearest = torch.minimum(nearest, torch.cdist(points, points[pick : pick + 1]).squeeze(1))
    return chosen


def min_pairwise_distance(points: torch.Tensor) -> float:
    """Smallest Euclidean distance between two distinct rows."""
    distances = torch.cdist(points, points)
    distances.fill_diagonal_(float("inf"))
    return float(distances.min())


def select(num_classes: int = NUM_CLASSES, size: int = IMAGE_SIZE) -> tuple[list[GlyphClass], dict]:
    """Choose the classes and return them with a record of how they were chosen."""
    candidates = candidate_codepoints()
    renderer = GlyphRenderer(candidates, size=size)
    visible = ink_pixels(renderer).min(dim=1).values >= MIN_INK_PIXELS
    qualified = [cp for cp, keep in zip(candidates, visible.tolist()) if keep]
    means = class_means(renderer)[visible]

    order = farthest_point_order(means, num_classes)
    chosen = [qualified[i] for i in order]
    classes = [GlyphClass(i, cp, chr(cp), unicodedata.name(chr(cp))) for i, cp in enumerate(chosen)]

    generator = torch.Generator().manual_seed(0)
    random_minima = [
        min_pairwise_distance(means[torch.randperm(len(means), generator=generator)[:num_classes]])
        for _ in range(RANDOM_SUBSET_DRAWS)
    ]
    chosen_min = min_pairwise_distance(means[order])
    all_distances = torch.cdist(means, means)
    all_distances.fill_diagonal_(float("inf"))
    record = {
        "faces": list(FACE_NAMES),
        "image_size": size,
        "candidates_covered_letters_symbols": len(candidates),
        "excluded_near_empty": len(candidates) - len(qualified),
        "qualified": len(qualified),
        "chosen": num_classes,
        "distance": "Euclidean distance between class-mean renders, pixel values in [0, 1]",
        "renders_per_class_mean": RENDERS_PER_CLASS,
        "min_pairwise_distance_chosen": round(chosen_min, 4),
        "min_pairwise_distance_random_mean": round(sum(random_minima) / len(random_minima), 4),
        "min_pairwise_distance_random_max": round(max(random_minima), 4),
        "random_subsets_drawn": RANDOM_SUBSET_DRAWS,
        "qualified_pairs_closer_than_chosen_min": int((all_distances < chosen_min).sum()) // 2,
        "excluded_near_empty_chars": "".join(chr(cp) for cp, keep in zip(candidates, visible.tolist()) if not keep),
    }
    return classes, record


@functools.lru_cache(maxsize=4)
def shipped_renderer(size: int = IMAGE_SIZE) -> GlyphRenderer:
    """The renderer of the classes in classes.json, in class-id order. Rasterising 1000 glyphs in
    twelve faces takes seconds, so a process builds it once per size (renders are pure functions
    of their arguments, so sharing it is safe)."""
    return GlyphRenderer([c.codepoint for c in load_classes(CLASSES_JSON)], size=size)


def write_classes(classes: list[GlyphClass], record: dict, classes_path: Path, selection_path: Path) -> None:
    """Write the class list and the selection record as UTF-8 JSON."""
    # One class per line keeps the file readable and its diffs small.
    lines = ",\n".join(json.dumps(asdict(c), ensure_ascii=False) for c in classes)
    classes_path.write_text(f"[\n{lines}\n]\n", encoding="utf-8")
    selection_path.write_text(json.dumps(record, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Choose the glyphs-1k source classes (deterministic).")
    parser.add_argument("--num-classes", type=int, default=NUM_CLASSES)
    parser.add_argument("--size", type=int, default=IMAGE_SIZE, help="working resolution in pixels")
    parser.add_argument("--classes-out", type=Path, default=CLASSES_JSON)
    parser.add_argument("--selection-out", type=Path, default=SELECTION_JSON)
    args = parser.parse_args(argv)
    classes, record = select(args.num_classes, args.size)
    write_classes(classes, record, args.classes_out, args.selection_out)
    print(
        f"{record['qualified']} code points qualify ({record['excluded_near_empty']} near-empty excluded); "
        f"chose {len(classes)}: min pairwise distance {record['min_pairwise_distance_chosen']} "
        f"vs {record['min_pairwise_distance_random_mean']} for a random {len(classes)} "
        f"(mean of {RANDOM_SUBSET_DRAWS} draws); wrote {args.classes_out}"
    )


if __name__ == "__main__":
    main()
