"""Throughput and memory of `ptgen synth`: its rate against bare generator passes, and whether memory grows.

Compares, on one model at the same batch, steps and guidance:
  bare      the generator's forward passes alone (Generator.sample on in-memory batches)
  synth     `ptgen synth` end to end (sampling + PNG encoding + tar writing + manifest)
  per-image a first script's loop: one image per call, encode, write a PNG file
and the peak RSS of `ptgen synth` at 1x and 10x the number of images (does memory grow?).

The model is the built-in one (`--model` takes any generator SPEC), at its own sampling defaults
unless --steps / --guidance say otherwise.

    python -m benchmarks.synth_throughput            # writes its section of docs/results.md
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import run_tool, table, write_section
from generate.models import load_generator
from generate.runner import generate_shards
from generate.synth import SynthJob, SynthSettings
from generate.writer import encode_image


def bare(gen, n: int, batch: int, steps: int, guidance: float) -> float:
    labels = torch.arange(n) % gen.num_classes
    start = time.perf_counter()
    for i in range(0, n, batch):
        gen.sample(labels[i : i + batch], list(range(i, min(i + batch, n))), steps, guidance)
    return n / (time.perf_counter() - start)


def synth(gen, model: str, out: Path, per_class: int, classes: int, batch: int, steps: int, guidance: float) -> float:
    settings = SynthSettings(model=model, steps=steps, guidance=guidance, seed=0, shard_size=1000, image_format="png",
                             compiled=False,
                             dtype="fp32", batch_size=batch, class_ids=tuple(range(classes)), per_class=per_class)
    stats = generate_shards(SynthJob(settings, gen), out, progress=False)
    return stats.images_per_s


def per_image_loop(gen, n: int, out: Path, steps: int, guidance: float) -> float:
    out.mkdir(parents=True)
    start = time.perf_counter()
    for i in range(n):
        image = gen.sample(torch.tensor([i % gen.num_classes]), [i], steps, guidance)[0]
        (out / f"{i}.png").write_bytes(encode_image(image, "png"))
    return n / (time.perf_counter() - start)


def peak_rss_mb(model: str, out: Path, per_class: int, steps: int, batch: int) -> tuple[float, float]:
    """Peak RSS of a `ptgen synth` process (MB) and its wall time (s)."""
    synth = run_tool("generate", "synth", "--model", model, "--out", out, "--per-class", per_class, "--steps", steps,
                     "--batch-size", batch, "--quiet")
    return synth.peak_rss_mb, synth.seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="builtin:glyphs-1k", help="generator SPEC")
    ap.add_argument("--images", type=int, default=1024, help="images for the bare and synth runs")
    ap.add_argument("--loop-images", type=int, default=64, help="images for the per-image loop")
    ap.add_argument("--steps", type=int, help="sampling steps (default: the model's own default)")
    ap.add_argument("--guidance", type=float, help="guidance scale (default: the model's own default)")
    ap.add_argument("--batches", default="32,64,128,256", help="batch sizes to compare for the bare passes")
    ap.add_argument("--batch", type=int, default=128, help="batch for synth vs bare")
    ap.add_argument("--mem-images", type=int, default=2000, help="1x image count for the memory test")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="ptgen-bench-"))
    model = args.model
    gen = load_generator(model)
    args.steps = args.steps or gen.defaults.steps
    args.guidance = args.guidance if args.guidance is not None else gen.defaults.guidance
    params = gen.parameter_count()
    torch.manual_seed(0)
    bare(gen, args.batch, args.batch, args.steps, args.guidance)  # warm-up

    batch_rows = []
    for b in map(int, args.batches.split(",")):
        rate = bare(gen, max(args.images // 2, b), b, args.steps, args.guidance)
        batch_rows.append([b, f"{rate:.1f}"])
        print(f"bare batch {b}: {rate:.1f} img/s", flush=True)

    rate_bare = bare(gen, args.images, args.batch, args.steps, args.guidance)
    per_class = max(1, args.images // gen.num_classes)
    classes = min(gen.num_classes, args.images)
    rate_synth = synth(gen, model, tmp / "synth", per_class, classes, args.batch, args.steps, args.guidance)
    rate_loop = per_image_loop(gen, args.loop_images, tmp / "loop", args.steps, args.guidance)
    print(f"bare {rate_bare:.1f}  synth {rate_synth:.1f}  loop {rate_loop:.1f} img/s", flush=True)

    mem_per_class = max(1, args.mem_images // gen.num_classes)
    mem1, wall1 = peak_rss_mb(model, tmp / "mem1", mem_per_class, 1, args.batch)
    mem10, wall10 = peak_rss_mb(model, tmp / "mem10", mem_per_class * 10, 1, args.batch)
    print(f"peak RSS {mem1:.0f} MB at 1x, {mem10:.0f} MB at 10x", flush=True)

    n1 = mem_per_class * gen.num_classes
    md = f"""
### `ptgen synth` throughput and memory

Model: {model}, {params / 1e6:.2f}M parameters, {gen.image_size}x{gen.image_size}x{gen.channels};
{args.steps} DPM-Solver steps, guidance {args.guidance}; {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}),
torch {torch.__version__}, {torch.get_num_threads()} threads. Command: `{' '.join(['python -m benchmarks.synth_throughput', *sys.argv[1:]])}`.

Bare forward passes by batch size (picks the default `--batch-size`):

{table(["batch", "img/s"], batch_rows)}

End to end at batch {args.batch}, {args.images} images:

{table(["path", "img/s", "ratio"], [
    ["bare generator passes", f"{rate_bare:.1f}", "1.00"],
    ["`ptgen synth` end to end", f"{rate_synth:.1f}", f"{rate_synth / rate_bare:.2f} of bare (goal >= 0.85)"],
    ["per-image loop (batch 1, PNG file each)", f"{rate_loop:.1f}", f"synth is {rate_synth / rate_loop:.1f}x faster (goal >= 5x)"],
])}

Peak resident memory of a whole `ptgen synth` process (1 step, so that 10x finishes quickly;
the point is whether anything accumulates):

{table(["images", "peak RSS (MB)", "wall (s)"], [[n1, f"{mem1:.0f}", f"{wall1:.1f}"], [n1 * 10, f"{mem10:.0f}", f"{wall10:.1f}"]])}

Growth from 1x to 10x: {mem10 / mem1:.3f}x (goal < 1.2x). Load average over the last 15 minutes
at the end of the run: {os.getloadavg()[2]:.2f} (2 = this benchmark alone on both cores).
"""
    write_section("synth_throughput", md)
    print(md)


if __name__ == "__main__":
    main()
