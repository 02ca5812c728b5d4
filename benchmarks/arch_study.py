"""Which timm architecture should `pttrain` default to at 16-32 px?

Each candidate goes through the method's own commands on the built-in world:

  pttrain pp        on glyph shards from `ptgen synth` (the source task), timed
  pttrain eval      of that run on held-out glyph shards (other seeds)
  pttrain finetune  on the digits target (K labels per class, several export seeds), from the
                    pp run and from scratch (--init none), each logging digits test top-1 per epoch

and the report is a table (source top-1, digits top-1 from pp and from scratch, training
images/s) plus learning curves of the digits test top-1 over fine-tuning epochs
(docs/arch_study.png). Every step is skipped when its output exists, so an interrupted study
resumes where it stopped.

    python -m benchmarks.arch_study run [--archs resnet18@16,regnetx_004@32,...] [--per-class 20]
    python -m benchmarks.arch_study report

A candidate is `ARCH` (at pttrain's default input size) or `ARCH@SIZE` (the 16 px images resized to SIZE).
"""

from __future__ import annotations

import argparse
import json

from benchmarks.common import (
    EPOCHS_ONLY, ROOT, curve, curve_on_test,
    finish_curve_plot, mean_curve, pyplot, read_json, read_jsonl, run_tool, spread, start_study,
    study_main, table, train_until_finished, write_section,
)

WORK = ROOT / "runs" / "arch-study"
PLOT = ROOT / "docs" / "arch_study.png"


def candidate(spec: str) -> tuple[str, list[str]]:
    arch, _, size = spec.partition("@")
    return arch, (["--img-size", size] if size else [])


def run(args: argparse.Namespace) -> None:
    start_study(WORK, args)
    shards, held_out = WORK / "shards", WORK / "held-out"
    # ptgen synth resumes an interrupted folder by itself.
    run_tool("generate", "synth", "--out", shards, "--per-class", args.per_class, "--quiet")
    run_tool("generate", "synth", "--out", held_out, "--per-class", 1, "--seed", 1, "--quiet")
    for spec in args.archs:
        arch, size = candidate(spec)
        pp = WORK / f"pp-{spec}"
        resumed = (pp / "checkpoint.pt").exists()
        pp_run = train_until_finished("pp", pp, "--shards", shards, "--arch", arch, *size, "--epochs", args.pp_epochs)
        if pp_run:
            (pp / "wall.json").write_text(json.dumps({"seconds": pp_run.seconds, "resumed": resumed}))
        if not (pp / "held_out.json").exists():
            run_tool("train", "eval", "--run", pp, "--data", held_out, "--json", pp / "held_out.json")
        for seed in args.seeds:
            for init, name in ((pp, "pp"), ("none", "scratch")):
                train_until_finished("finetune", WORK / f"ft-{spec}-{name}-{seed}", "--data", curve_on_test(WORK / f"digits-{seed}"),
                                     "--init", init, "--arch", arch, *size, "--seed", seed,
                                     *EPOCHS_ONLY)


def report(args: argparse.Namespace) -> None:
    from train.models import load_run

    plt = pyplot()
    study = read_json(WORK / "study.json")
    rows, fig = [], plt.figure(figsize=(10, 4))
    axes = {name: fig.add_subplot(1, 2, i + 1) for i, name in enumerate(("pp", "scratch"))}
    for k, spec in enumerate(study["archs"]):
        pp = WORK / f"pp-{spec}"
        steps = [r for r in read_jsonl(pp / "metrics.jsonl") if "loss" in r]
        images = steps[-1]["step"] * read_json(pp / "train.json")["settings"]["batch_size"]
        wall = read_json(pp / "wall.json")
        model, _ = load_run(str(pp), "--run")
        params = f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f}M"
        finals = {}
        for name, ax in axes.items():
            curves = [curve(WORK / f"ft-{spec}-{name}-{seed}") for seed in study["seeds"]]
            finals[name] = [c[-1][1] for c in curves]
            mean = mean_curve(curves)
            ax.plot(*mean, color=f"C{k}", label=spec)
        held = read_json(pp / "held_out.json")["top1"]
        rows.append([spec, params, f"{images / wall['seconds']:.0f}" + (" (resumed)" if wall["resumed"] else ""),
                     f"{held:.3f}", spread(finals["scratch"]), spread(finals["pp"])])
    finish_curve_plot(fig, {ax: f"digits test top-1, init {'pp run' if name == 'pp' else 'none (scratch)'}"
                            for name, ax in axes.items()}, PLOT)
    md = (f"### Default architecture of pttrain\n\n"
          f"Command: `python -m benchmarks.arch_study run --archs {','.join(study['archs'])} "
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


def main() -> None:
    def archs(r: argparse.ArgumentParser) -> None:
        r.add_argument("--archs", type=lambda s: s.split(","), default=["resnet18@16", "regnetx_004@16", "resnet18@32"])

    study_main(__doc__, run, report, archs, per_class=20, pp_epochs=4, seeds=[0, 1, 2])


if __name__ == "__main__":
    main()
