"""Sampling defaults of the built-in generator: consistency, fidelity and speed over steps x guidance.

    python -m benchmarks.sampling_defaults [--model builtin:glyphs-1k] [--every 5] \
        [--steps 5,10,20] [--guidance 1,2,4] [--section sampling_defaults]

Consistency: the built-in classifier's top-1 on 2 samples of every k-th class. Fidelity: the
Frechet distance (FD) between the classifier's pooled features of those samples and of real
renders of the same classes; a second set of real renders gives the floor that FD reaches when
nothing is wrong but the finite sample. Speed: images/s on this machine.
"""

from __future__ import annotations

import argparse
import sys

import torch

from benchmarks.common import table, write_section
from generate.models import load_generator
from ptcommon.builtin import DEFAULT_NAME, DEFAULT_SPEC, folder
from recipes.glyphs_1k.consistency import (
    REFERENCE_SEED, class_consistency, frechet_distance, load_classifier, render_features,
)

PER_CLASS = 2


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=DEFAULT_SPEC, help="generator SPEC")
    ap.add_argument("--steps", default="5,10,20")
    ap.add_argument("--guidance", default="1,2,4")
    ap.add_argument("--every", type=int, default=5, help="use every k-th class (1 = all 1000)")
    ap.add_argument("--section", default="sampling_defaults",
                    help="docs/results.md section to write (a second grid keeps the first one's table)")
    args = ap.parse_args()
    gen = load_generator(args.model)
    classifier, config = load_classifier(folder(DEFAULT_NAME, "classifier"))
    ids = list(range(0, gen.num_classes, args.every))
    reference = render_features(classifier, config, ids, PER_CLASS)
    floor = frechet_distance(render_features(classifier, config, ids, PER_CLASS, seed=REFERENCE_SEED + 1), reference)
    rows = [["real renders", "", "", f"{floor:.2f}", ""]]
    print(rows[-1], flush=True)
    for steps in map(int, args.steps.split(",")):
        for guidance in map(float, args.guidance.split(",")):
            r = class_consistency(gen, classifier, config, ids, PER_CLASS, steps, guidance)
            fd = frechet_distance(r.features, reference)
            rows.append([steps, f"{guidance:g}", f"{r.top1:.3f}", f"{fd:.2f}", f"{r.images_per_s:.1f}"])
            print(rows[-1], flush=True)
    md = (f"### Sampling defaults of the built-in generator\n\n"
          f"Command: `{' '.join(['python -m benchmarks.sampling_defaults', *sys.argv[1:]])}`. "
          f"{len(ids) * PER_CLASS} images ({PER_CLASS} per class, {len(ids)} classes spread evenly), DPM-Solver++, "
          f"{torch.get_num_threads()} torch threads. FD: Frechet distance between the built-in classifier's "
          f"features of the samples and of real renders of the same classes (lower is better; the first row is "
          f"a second set of real renders, the floor for this sample size).\n\n"
          + table(["steps", "guidance", "consistency", "FD", "images/s"], rows))
    write_section(args.section, md)
    print(md)


if __name__ == "__main__":
    main()
