"""bf16 on CPU for the built-in generator: does it keep sample quality, and how much faster is it?

On processors with AVX-512 BF16 (or AMX) the UNet runs about twice the FLOP/s in bf16. This
measures, on all 1000 classes x 2 seeds, the class consistency and the Frechet distance of the
samples (recipes/glyphs_1k/consistency.py) at fp32 and at bf16, and `ptgen synth`'s rate at the
default batch at each, then writes the table to docs/results.md. bf16 becomes the CPU default only
if quality holds within the 2000-image grid's noise and the rate rises by at least 1.7x.

    python -m benchmarks.cpu_bf16 [--per-class 2] [--synth-images 1024]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from benchmarks.common import table, write_section
from ptcommon import builtin


def synth_rate(gen, dtype: str, images: int, out: Path) -> float:
    """Images/s of ptgen synth's loop at its default batch, model loaded (as in synth_throughput)."""
    from generate.cli import DEFAULT_BATCH
    from generate.runner import generate_shards
    from generate.synth import SynthJob, SynthSettings

    settings = SynthSettings(model=builtin.DEFAULT_SPEC, steps=gen.defaults.steps, guidance=gen.defaults.guidance,
                             seed=0, shard_size=1000, image_format="png", dtype=dtype, compiled=False,
                             batch_size=DEFAULT_BATCH, class_ids=tuple(range(images)), per_class=1)
    return generate_shards(SynthJob(settings, gen), out, progress=False).images_per_s


def main() -> None:
    from generate.models import load_generator
    from recipes.glyphs_1k.consistency import class_consistency, frechet_distance, load_classifier, render_features

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-class", type=int, default=2)
    ap.add_argument("--synth-images", type=int, default=1000)
    args = ap.parse_args()

    classifier, config = load_classifier(builtin.folder(builtin.DEFAULT_NAME, "classifier"))
    ids = list(range(1000))
    reference = render_features(classifier, config, ids, args.per_class)
    work = Path(tempfile.mkdtemp(prefix="ptgen-bf16-"))
    rows, rates, quality = [], {}, {}
    for dtype in ("fp32", "bf16"):
        gen = load_generator(builtin.DEFAULT_SPEC, device="cpu", dtype=dtype)
        result = class_consistency(gen, classifier, config, ids, args.per_class, gen.defaults.steps,
                                   gen.defaults.guidance)
        fd = frechet_distance(result.features, reference)
        synth_rate(gen, dtype, 128, work / f"warm-{dtype}")
        rates[dtype] = synth_rate(gen, dtype, args.synth_images, work / dtype)
        quality[dtype] = (result.top1, fd)
        rows.append([dtype, f"{result.top1:.4f}", f"{fd:.2f}", result.images, f"{rates[dtype]:.1f}"])
        print(rows[-1], flush=True)
    speedup = rates["bf16"] / rates["fp32"]
    # The sampling-defaults grid called settings 0.007 apart in consistency equal; FD moved by
    # about 0.5 between settings of equal transfer (docs/results.md, "Sampling defaults ...").
    holds = (abs(quality["bf16"][0] - quality["fp32"][0]) <= 0.01
             and quality["bf16"][1] <= quality["fp32"][1] + 0.5)
    verdict = ("Quality holds and the rate rises by more than 1.7x: bf16 is the CPU default (`--dtype auto`) "
               "on processors that compute it natively." if holds and speedup >= 1.7 else
               "The rule (quality within noise and at least 1.7x) is not met: fp32 stays the CPU default.")
    md = ("### bf16 on CPU for the built-in generator\n\n"
          f"{torch.get_num_threads()} threads; all 1000 classes x {args.per_class} seeds at the shipped defaults "
          f"(5 steps, guidance 2); synth rate over {args.synth_images} images at batch 128.\n\n"
          + table(["dtype", "class consistency", "FD (real-render floor 1.96)", "images", "synth img/s"], rows)
          + f"\n\nbf16 / fp32 synth rate: {speedup:.2f}x. {verdict}\n\n"
          f"Command: `python -m benchmarks.cpu_bf16 --per-class {args.per_class} --synth-images {args.synth_images}`\n")
    write_section("cpu_bf16", md)
    print(md)


if __name__ == "__main__":
    main()
