"""Pseudo conditional sampling vs plain class-conditional synthesis, same model (issue 6).

Runs `ptgen pseudo` on the built-in digits target (train/ images as conditions) and `ptgen synth`
for the same number of images at the same steps, guidance and batch, and reports both rates:
what the source classifier's pass and the soft-label mixing cost on top of sampling.

    python benchmarks/pseudo_throughput.py [--per-target 10]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_doc import table, write_section  # noqa: E402

from generate.cli import main as ptgen  # noqa: E402
from train.cli import main as pttrain  # noqa: E402


def timed(args: list[str]) -> float:
    start = time.perf_counter()
    result = CliRunner().invoke(ptgen, args)
    assert result.exit_code == 0, result.output
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-target", type=int, default=10)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ptgen-pseudo-"))
    assert CliRunner().invoke(pttrain, ["data", "digits", "--out", str(tmp / "digits")]).exit_code == 0
    targets = len(list((tmp / "digits" / "train").rglob("*.png")))
    count = targets * args.per_target
    pseudo_s = timed(["pseudo", "--target", str(tmp / "digits"), "--out", str(tmp / "pseudo"),
                      "--per-target", str(args.per_target), "--quiet"])
    synth_s = timed(["synth", "--classes", "100", "--per-class", str(count // 100), "--out", str(tmp / "synth"), "--quiet"])
    md = f"""### `ptgen pseudo` vs `ptgen synth` speed (issue 6)

Command: `python benchmarks/pseudo_throughput.py --per-target {args.per_target}`. Built-in model at its
defaults, batch 128, 2 cores; whole commands in-process (model loading included).
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
