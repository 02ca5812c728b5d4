"""A contact sheet of generated samples beside real renders of the same classes, for people to look at.

    python -m recipes.glyphs_1k.sheet --model ptcommon/builtin/glyphs-1k/generator --out docs/glyphs-1k-samples.png
    python -m recipes.glyphs_1k.sheet --model ptcommon/builtin/glyphs-1k/generator --out docs/sampling_steps.png \
        --rows 8 --settings 3/1.5,5/2,10/2
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from generate.models import load_generator

from .class_list import CLASSES_JSON, load_classes
from .classes import shipped_renderer


def contact_sheet(
    model: Path, out: Path, rows: int = 16, cols: int = 8, seed: int = 0,
    settings: list[tuple[int, float]] | None = None,
) -> Path:
    """Real renders, then one panel of samples per (steps, guidance) setting (default: the model's own)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes = load_classes(CLASSES_JSON)
    ids = np.linspace(0, len(classes) - 1, rows).round().astype(int).tolist()
    renderer = shipped_renderer(16)
    gen = load_generator(str(model))
    settings = settings or [(gen.defaults.steps, gen.defaults.guidance)]
    labels = torch.tensor(ids).repeat_interleave(cols)
    seeds = [seed + i for i in range(len(labels))]
    panels = [("real renders", renderer.render(labels, seed + 1).numpy()[:, 0])]
    for steps, guidance in settings:
        title = "generated" if len(settings) == 1 else f"{steps} steps, guidance {guidance:g}"
        panels.append((title, gen.sample(labels, seeds, steps, guidance)[..., 0]))
    # One spacer column between panels.
    width = len(panels) * (cols + 1) - 1
    fig, axes = plt.subplots(rows, width, figsize=(width * 0.5 + 2.5, rows * 0.5 + 0.6),
                             gridspec_kw={"width_ratios": ([1] * cols + [0.3]) * (len(panels) - 1) + [1] * cols})
    for ax in axes.flat:
        ax.axis("off")
    for p, (title, images) in enumerate(panels):
        left = p * (cols + 1)
        for r in range(rows):
            for c in range(cols):
                axes[r][left + c].imshow(images[r * cols + c], cmap="gray", vmin=0, vmax=255)
        axes[0][left + cols // 2].set_title(title, fontsize=8)
    for r, cid in enumerate(ids):
        axes[r][0].text(-1.0, 0.5, f"{cid} {classes[cid].char} {classes[cid].name[:24].lower()}",
                        transform=axes[r][0].transAxes, ha="right", va="center", fontsize=6)
    fig.subplots_adjust(left=2.0 / (width * 0.5 + 2.5), right=0.99, top=0.95, bottom=0.01, wspace=0.05, hspace=0.05)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=130)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Generated samples beside real renders.")
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--rows", type=int, default=16)
    ap.add_argument("--cols", type=int, default=8)
    ap.add_argument("--settings", type=parse_settings,
                    help="sampling settings to compare, STEPS/GUIDANCE,... (e.g. 3/1.5,5/2,10/2); default: the model's")
    args = ap.parse_args(argv)
    print(contact_sheet(args.model, args.out, args.rows, args.cols, settings=args.settings))


def parse_settings(text: str) -> list[tuple[int, float]]:
    try:
        return [(int(st), float(g)) for st, g in (item.split("/") for item in text.split(","))]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected STEPS/GUIDANCE pairs such as 5/2,10/2") from None


if __name__ == "__main__":
    main()
