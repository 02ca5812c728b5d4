"""Pseudo conditional sampling vs plain class-conditional synthesis, same model: speed.

Runs `ptgen pseudo` on the built-in digits target (train/ images as conditions) and `ptgen synth`
for the same number of images at the same steps, guidance and batch, and reports both rates:
what the source classifier's pass and the soft-label mixing cost on top of sampling.

    python -m benchmarks.pseudo_throughput [--per-target 10]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from benchmarks.common import run_tool, table, write_section


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-target", type=int, default=10)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ptgen-pseudo-"))
    run_tool("train", "data", "digits", "--out", tmp / "digits")
    targets = len(list((tmp / "digits" / "train").rglob("*.png")))
    count = targets * args.per_target
    pseudo_s = run_tool("generate", "pseudo", "--target", tmp / "digits", "--out", tmp / "pseudo",
                        "--per-target", args.per_target, "--quiet").seconds
    synth_s = run_tool("generate", "synth", "--classes", 100, "--per-class", count // 100, "--out", tmp / "synth",
                       "--quiet").seconds
    md = f"""### `ptgen pseudo` vs `ptgen synth` speed

Command: `python -m benchmarks.pseudo_throughput --per-target {args.per_target}`. Built-in model at its
defaults, batch 128, 2 cores; whole commands, each its own process (interpreter start, imports and model
loading included).
{targets} digits training images x {args.per_target} = {count} pseudo samples; synth makes the same count.

{table(["command", "images", "seconds", "images/s"], [
    ["ptgen pseudo (classifier pass + soft-label sampling)", count, f"{pseudo_s:.1f}", f"{count / pseudo_s:.1f}"],
    ["ptgen synth (hard labels)", count, f"{synth_s:.1f}", f"{count / synth_s:.1f}"],
])}

Pseudo runs at {synth_s / pseudo_s:.2f} of synth's rate.
"""
    write_section("pseudo_throughput", md)
    print(md)


if __name__ == "__main__":
    main()
