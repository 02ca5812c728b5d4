"""Which timm architecture should `pttrain` default to at 16-32 px? (issue 5)

Each candidate goes through the method's own commands on the built-in world:

  pttrain pp        on glyph shards from `ptgen synth` (the source task), timed
  pttrain eval      of that run on held-out glyph shards (other seeds)
  pttrain finetune  on the digits target (K labels per class, several export seeds), from the
                    pp run and from scratch (--init none), each logging digits test top-1 per epoch

and the report is a table (source top-1, digits top-1 from pp and from scratch, training
images/s) plus learning curves of the digits test top-1 over fine-tuning epochs
(docs/arch_study.png). Every step is skipped when its output exists, so an interrupted study
resumes where it stopped.

    python benchmarks/arch_study.py run [--archs resnet18@16,regnetx_004@32,...] [--per-class 20]
    python benchmarks/arch_study.py report

A candidate is `ARCH` (at pttrain's default input size) or `ARCH@SIZE` (the 16 px images resized to SIZE).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from results_doc import table, write_section  # noqa: E402

WORK = ROOT / "runs" / "arch-study"
PLOT = ROOT / "docs" / "arch_study.png"


def sh(*args: object) -> None:
    cmd = [sys.executable, "-m", *map(str, args)]
    print("$", " ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


def finished(run_dir: Path) -> bool:
    return (run_dir / "model.safetensors").exists()


def candidate(spec: str) -> tuple[str, list[str]]:
    arch, _, size = spec.partition("@")
    return arch, (["--img-size", size] if size else [])


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def start_study(work: Path, args: argparse.Namespace) -> None:
    """Record the study's settings and export the digits target once per seed (as digits-SEED)."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "study.json").write_text(json.dumps(vars(args), indent=1))
    for seed in args.seeds:
        digits = work / f"digits-{seed}"
        if not (digits / "split.json").exists():
            sh("train", "data", "digits", "--out", digits, "--labels-per-class", args.labels, "--seed", seed)


def run(args: argparse.Namespace) -> None:
    start_study(WORK, args)
    shards, held_out = WORK / "shards", WORK / "held-out"
    # ptgen synth resumes an interrupted folder by itself.
    sh("generate", "synth", "--out", shards, "--per-class", args.per_class, "--quiet")
    sh("generate", "synth", "--out", held_out, "--per-class", 1, "--seed", 1, "--quiet")
    for spec in args.archs:
        arch, size = candidate(spec)
        pp = WORK / f"pp-{spec}"
        if not finished(pp):
            start = time.perf_counter()
            resume = ["--resume"] if (pp / "checkpoint.pt").exists() else []
            sh("train", "pp", "--shards", shards, "--arch", arch, *size, "--epochs", args.pp_epochs, "--out", pp,
               "--quiet", *resume)
            (pp / "wall.json").write_text(json.dumps({"seconds": time.perf_counter() - start, "resumed": bool(resume)}))
        if not (pp / "held_out.json").exists():
            sh("train", "eval", "--run", pp, "--data", held_out, "--json", pp / "held_out.json")
        for seed in args.seeds:
            for init, name in ((pp, "pp"), ("none", "scratch")):
                out = WORK / f"ft-{spec}-{name}-{seed}"
                if not finished(out):
                    sh("train", "finetune", "--data", WORK / f"digits-{seed}", "--init", init, "--arch", arch, *size,
                       "--out", out, "--seed", seed, "--quiet", *(["--resume"] if (out / "checkpoint.pt").exists() else []))


def curve(run_dir: Path) -> list[float]:
    return [r["val_top1"] for r in read_jsonl(run_dir / "metrics.jsonl") if "val_top1" in r]


def mean_curve(curves: list[list[float]]) -> list[float]:
    return [statistics.mean(col) for col in zip(*curves)]


def finish_curve_plot(fig, axes_titles: dict, path: Path) -> None:
    """Fine-tuning curves: titles, epoch axis, grid and legend on each axis, then save."""
    for ax, title in axes_titles.items():
        ax.set_title(title)
        ax.set_xlabel("fine-tuning epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def report(args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from train.models import load_run

    study = json.loads((WORK / "study.json").read_text())
    rows, fig = [], plt.figure(figsize=(10, 4))
    axes = {name: fig.add_subplot(1, 2, i + 1) for i, name in enumerate(("pp", "scratch"))}
    for k, spec in enumerate(study["archs"]):
        pp = WORK / f"pp-{spec}"
        steps = [r for r in read_jsonl(pp / "metrics.jsonl") if "loss" in r]
        images = steps[-1]["step"] * json.loads((pp / "train.json").read_text())["settings"]["batch_size"]
        wall = json.loads((pp / "wall.json").read_text())
        model, _ = load_run(str(pp), "--run")
        params = f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f}M"
        finals = {}
        for name, ax in axes.items():
            curves = [curve(WORK / f"ft-{spec}-{name}-{seed}") for seed in study["seeds"]]
            finals[name] = [c[-1] for c in curves]
            mean = mean_curve(curves)
            ax.plot(range(1, len(mean) + 1), mean, color=f"C{k}", label=spec)
        held = json.loads((pp / "held_out.json").read_text())["top1"]
        rows.append([spec, params, f"{images / wall['seconds']:.0f}" + (" (resumed)" if wall["resumed"] else ""),
                     f"{held:.3f}", spread(finals["scratch"]), spread(finals["pp"])])
    finish_curve_plot(fig, {ax: f"digits test top-1, init {'pp run' if name == 'pp' else 'none (scratch)'}"
                            for name, ax in axes.items()}, PLOT)
    md = (f"### Default architecture of pttrain (issue 5)\n\n"
          f"Command: `python benchmarks/arch_study.py run --archs {','.join(study['archs'])} "
          f"--per-class {study['per_class']} --pp-epochs {study['pp_epochs']} "
          f"--seeds {','.join(map(str, study['seeds']))}`, then `report`. "
          f"pp: {study['per_class']} built-in samples per class (1000 classes), {study['pp_epochs']} epochs at "
          f"pttrain's pp defaults; source top-1 on 1000 held-out samples (seed 1). Digits: "
          f"{study['labels']} labels per class, fine-tuned at pttrain's finetune defaults, test top-1 (899 images) "
          f"after the last epoch, mean ± sd over export seeds {study['seeds']}. Curves: {PLOT.relative_to(ROOT)}.\n\n"
          + table(["candidate", "parameters", "pp images/s", "source top-1", "digits, scratch", "digits, pp → finetune"],
                  rows))
    write_section("arch_study", md)
    print(md)


def spread(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


def study_main(doc: str, run_study, report_study, add_run_args, *, per_class: int, pp_epochs: int,
               seeds: list[int]) -> None:
    """The `run` / `report` command line the transfer studies share; `add_run_args` adds a study's own flags."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    add_run_args(r)
    r.add_argument("--per-class", type=int, default=per_class)
    r.add_argument("--pp-epochs", type=int, default=pp_epochs)
    r.add_argument("--labels", type=int, default=10)
    r.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=seeds)
    sub.add_parser("report")
    args = ap.parse_args()
    run_study(args) if args.cmd == "run" else report_study(args)


def main() -> None:
    def archs(r: argparse.ArgumentParser) -> None:
        r.add_argument("--archs", type=lambda s: s.split(","), default=["resnet18@16", "regnetx_004@16", "resnet18@32"])

    study_main(__doc__, run, report, archs, per_class=20, pp_epochs=4, seeds=[0, 1, 2])


if __name__ == "__main__":
    main()
