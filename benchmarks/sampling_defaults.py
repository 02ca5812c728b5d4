"""Sampling defaults of the built-in generator: class consistency and speed over steps x guidance.

    python benchmarks/sampling_defaults.py [--model generate/builtin/glyphs-1k]

Consistency: the built-in classifier's top-1 on 2 samples of every 5th class (400 images),
DPM-Solver++ at each number of steps and guidance scale; speed: images/s on this machine.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from generate.models import load_generator  # noqa: E402
from recipes.glyphs_1k.consistency import class_consistency, load_classifier  # noqa: E402
from results_doc import table, write_section  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=ROOT / "generate" / "builtin" / "glyphs-1k")
    ap.add_argument("--steps", default="10,15,20")
    ap.add_argument("--guidance", default="2,4,6")
    args = ap.parse_args()
    gen = load_generator(str(args.model))
    classifier, config = load_classifier(ROOT / "train" / "builtin" / "glyphs-1k")
    ids = list(range(0, gen.num_classes, 5))
    rows = []
    for steps in map(int, args.steps.split(",")):
        for guidance in map(float, args.guidance.split(",")):
            r = class_consistency(gen, classifier, config, ids, 2, steps, guidance)
            rows.append([steps, f"{guidance:g}", f"{r.top1:.3f}", f"{r.images_per_s:.1f}"])
            print(rows[-1], flush=True)
    md = (f"### Sampling defaults of the built-in generator (issue 8)\n\n"
          f"Command: `python benchmarks/sampling_defaults.py`. {len(ids) * 2} images (2 of every 5th class), "
          f"DPM-Solver++, {torch.get_num_threads()} torch threads.\n\n"
          + table(["steps", "guidance", "consistency", "images/s"], rows))
    write_section("sampling_defaults", md)
    print(md)


if __name__ == "__main__":
    main()
