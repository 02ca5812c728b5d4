"""A contact sheet of generated samples beside real renders of the same classes, for people to look at.

    python -m recipes.glyphs_1k.sheet --model generate/builtin/glyphs-1k --out docs/glyphs-1k-samples.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from generate.models import load_generator

from .classes import CLASSES_JSON, load_classes
from .render import GlyphRenderer


def contact_sheet(model: Path, out: Path, rows: int = 16, cols: int = 8, seed: int = 0) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes = load_classes(CLASSES_JSON)
    ids = np.linspace(0, len(classes) - 1, rows).round().astype(int).tolist()
    renderer = GlyphRenderer([c.codepoint for c in classes], size=16)
    gen = load_generator(str(model))
    labels = torch.tensor(ids).repeat_interleave(cols)
    real = renderer.render(labels, seed + 1).numpy()[:, 0]
    fake = gen.sample(labels, [seed + i for i in range(len(labels))], gen.defaults.steps, gen.defaults.guidance)[..., 0]
    fig, axes = plt.subplots(rows, 2 * cols + 1, figsize=(2 * cols * 0.5 + 3.5, rows * 0.5 + 0.6),
                             gridspec_kw={"width_ratios": [1] * cols + [0.3] + [1] * cols})
    for r, cid in enumerate(ids):
        for c in range(2 * cols + 1):
            ax = axes[r][c]
            ax.axis("off")
            if c < cols:
                ax.imshow(real[r * cols + c], cmap="gray", vmin=0, vmax=255)
            elif c > cols:
                ax.imshow(fake[r * cols + c - cols - 1], cmap="gray", vmin=0, vmax=255)
        axes[r][0].text(-1.0, 0.5, f"{cid} {classes[cid].char} {classes[cid].name[:24].lower()}", transform=axes[r][0].transAxes,
                        ha="right", va="center", fontsize=6)
    axes[0][cols // 2].set_title("real renders", fontsize=8)
    axes[0][cols + 1 + cols // 2].set_title("generated", fontsize=8)
    fig.subplots_adjust(left=0.3, right=0.99, top=0.95, bottom=0.01, wspace=0.05, hspace=0.05)
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
    args = ap.parse_args(argv)
    print(contact_sheet(args.model, args.out, args.rows, args.cols))


if __name__ == "__main__":
    main()
