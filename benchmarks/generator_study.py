"""The design study behind the built-in generator's recipe: which candidate UNet reaches the
highest class consistency within one training wall-clock budget.

Trains each candidate of `recipes/glyphs_1k/generator_recipe.py` for the same training
wall-clock budget, measuring class consistency (the built-in classifier's top-1 on samples of
every 5th class, 2 seeds each, at the candidate's sampling settings) at 10, 20 and 40 minutes,
then writes the learning curves (table and plot) into docs/.

    python -m benchmarks.generator_study run --out runs/study            # two candidates at a time,
    python -m benchmarks.generator_study run --out runs/study --only small+template  # ... or one
    python -m benchmarks.generator_study report --out runs/study         # docs/results.md + plot

Runs are pinned one per core (`taskset`, one torch thread each) so that two candidates share
the 2-core machine evenly; every run resumes from its checkpoint when the command is repeated.
"""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

from benchmarks.common import ROOT, module_command, pyplot, read_jsonl, save_figure, table, write_section
from ptcommon.builtin import DEFAULT_NAME, folder
from recipes.glyphs_1k.generator_recipe import CANDIDATES

CLASSIFIER = folder(DEFAULT_NAME, "classifier")


def run(out: Path, names: list[str], minutes: float, eval_at: str) -> None:
    procs = []
    for core, name in enumerate(names):
        folder = out / name.replace("+", "_")
        folder.mkdir(parents=True, exist_ok=True)
        cmd = ["taskset", "-c", str(core % 2),
               *module_command("recipes.glyphs_1k.train_generator", "--recipe", name, "--out", folder,
                               "--minutes", minutes, "--eval-at", eval_at, "--classifier", CLASSIFIER, "--threads", 1)]
        log = open(folder / "train.log", "a")
        procs.append(subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT))
        print(f"started {name} on core {core % 2}: {folder}", flush=True)
    for p in procs:
        p.wait()


def report(out: Path) -> None:
    plt = pyplot()
    curves = {}
    for name in CANDIDATES:
        path = out / name.replace("+", "_") / "evals.jsonl"
        if path.exists():
            curves[name] = read_jsonl(path)
    rows = []
    for name, evals in curves.items():
        r = CANDIDATES[name]
        for e in evals:
            rows.append([name, f"{e['minutes']:g}", e["step"], f"{e['images_seen'] / 1000:.0f}k",
                         f"{e.get('consistency', float('nan')):.3f}", f"{e.get('sample_images_per_s', 0):.1f}",
                         f"{r.sample_steps} / {r.guidance:g}"])
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name, evals in curves.items():
        ax.plot([e["minutes"] for e in evals], [e.get("consistency") for e in evals], marker="o", label=name)
    ax.set(xlabel="training minutes (one core)", ylabel="class consistency (top-1)", ylim=(0, 1))
    save_figure(fig, ROOT / "docs" / "generator_study.png", dpi=120)
    md = (
        "### Generator design study\n\n"
        "Command: `python -m benchmarks.generator_study run --out runs/study` then `... report`. "
        "Each candidate trains on one core with one torch thread (two candidates at a time on the 2-core "
        "machine); the clock counts training steps only. Consistency: the built-in classifier's top-1 on "
        "2 samples of every 5th class (400 images) at the candidate's sampling steps and guidance; "
        "sampling speed on one core while the other core trained another candidate (and, at times, ran "
        "test suites), so speeds vary by about 40% between evaluations of one candidate.\n\n"
        + table(["candidate", "minutes", "steps", "images seen", "consistency", "sample img/s (1 core)",
                 "steps / guidance"], rows)
        + "\n\n![learning curves](generator_study.png)\n"
    )
    write_section("generator_study", md)
    print(md)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=["run", "report"])
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "study")
    ap.add_argument("--only", help="comma-separated candidates (default: all, two at a time)")
    ap.add_argument("--minutes", type=float, default=40.0)
    ap.add_argument("--eval-at", default="10,20,40")
    args = ap.parse_args()
    if args.action == "report":
        report(args.out)
        return
    names = args.only.split(",") if args.only else list(CANDIDATES)
    for i in range(0, len(names), 2):
        run(args.out, names[i : i + 2], args.minutes, args.eval_at)


if __name__ == "__main__":
    main()
