"""Do fewer sampling steps cost anything downstream? (the built-in generator's sampling
settings, judged by what a model pre-trained on their samples learns)

Each candidate `STEPS/GUIDANCE` goes through the method's own commands on the built-in world:

  ptgen synth       the same classes and seeds at those settings, timed
  pttrain pp        resnet18 (pttrain's default) on those shards
  (real renders)    the pp run's top-1 on real glyph renders from unseen seeds: how much of the
                    source task the synthetic data taught
  pttrain finetune  on the digits target from the pp run, several export seeds

The report is a table plus the fine-tuning curves (docs/sampling_transfer.png). Every step is
skipped when its output exists, so an interrupted study resumes where it stopped.

    python -m benchmarks.sampling_transfer run [--candidates 3/1.5,5/2,10/2] [--per-class 10] [--img-size 16]
    python -m benchmarks.sampling_transfer report
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from benchmarks.common import (
    EPOCHS_ONLY, ROOT, curve, curve_on_test,
    finish_curve_plot, mean_curve, pyplot, read_json, run_tool, spread, start_study, study_main, table,
    train_until_finished, write_section,
)

WORK = ROOT / "runs" / "sampling-transfer"
PLOT = ROOT / "docs" / "sampling_transfer.png"
RENDERS_PER_CLASS = 2


def parse(candidate: str) -> tuple[str, str]:
    steps, _, guidance = candidate.partition("/")
    return steps, guidance


@torch.inference_mode()
def real_render_top1(run_dir: Path) -> float:
    """Top-1 of a pp run on real renders of every source class, from seeds no sample came from."""
    from recipes.glyphs_1k.classes import shipped_renderer
    from recipes.glyphs_1k.consistency import REFERENCE_SEED, features_and_logits
    from train.models import load_run

    model, config = load_run(str(run_dir), "--run")
    renderer = shipped_renderer(config.image_size)
    source = torch.arange(renderer.num_classes).repeat(RENDERS_PER_CLASS)
    renders = renderer.render(source, REFERENCE_SEED)
    # The run's head follows its shards' class order; source_ids maps it back to glyph ids.
    head_to_source = torch.tensor(config.source_ids)
    predicted = torch.cat([head_to_source[features_and_logits(model, config, b)[1].argmax(1)]
                           for b in renders.split(500)])
    return float((predicted == source).float().mean())


def run(args: argparse.Namespace) -> None:
    start_study(WORK, args)
    for cand in args.candidates:
        steps, guidance = parse(cand)
        name = cand.replace("/", "-")
        shards, pp = WORK / f"shards-{name}", WORK / f"pp-{name}"
        if not (shards / "synth_wall.json").exists():
            # ptgen synth resumes an interrupted folder by itself (the timing then covers the rest only).
            synth = run_tool("generate", "synth", "--out", shards, "--per-class", args.per_class, "--steps", steps,
                             "--guidance", guidance, "--quiet")
            (shards / "synth_wall.json").write_text(json.dumps({"seconds": synth.seconds}))
        train_until_finished("pp", pp, "--shards", shards, "--epochs", args.pp_epochs, "--img-size", args.img_size)
        if not (pp / "real_renders.json").exists():
            (pp / "real_renders.json").write_text(json.dumps({"top1": real_render_top1(pp)}))
        for seed in args.seeds:
            train_until_finished("finetune", WORK / f"ft-{name}-{seed}", "--data", curve_on_test(WORK / f"digits-{seed}"), "--init", pp,
                                 "--seed", seed, *EPOCHS_ONLY)


def report(args: argparse.Namespace) -> None:
    plt = pyplot()
    study = read_json(WORK / "study.json")
    rows, fig = [], plt.figure(figsize=(5.5, 4))
    ax = fig.add_subplot(1, 1, 1)
    for k, cand in enumerate(study["candidates"]):
        name = cand.replace("/", "-")
        shards, pp = WORK / f"shards-{name}", WORK / f"pp-{name}"
        count = read_json(shards / "dataset.json")["count"]
        synth_s = read_json(shards / "synth_wall.json")["seconds"]
        curves = [curve(WORK / f"ft-{name}-{seed}") for seed in study["seeds"]]
        mean = mean_curve(curves)
        ax.plot(*mean, color=f"C{k}", label=f"{cand} (steps/guidance)")
        real = read_json(pp / "real_renders.json")["top1"]
        rows.append([cand, f"{count / synth_s:.1f}", f"{synth_s / 60:.1f}", f"{real:.3f}",
                     spread([c[-1][1] for c in curves])])
    finish_curve_plot(fig, {ax: "digits test top-1 after pp on each candidate's samples"}, PLOT)
    md = (f"### Sampling settings judged by transfer\n\n"
          f"Command: `python -m benchmarks.sampling_transfer run --candidates {','.join(study['candidates'])} "
          f"--per-class {study['per_class']} --pp-epochs {study['pp_epochs']} --img-size {study['img_size']} "
          f"--seeds {','.join(map(str, study['seeds']))}`, then "
          f"`report`. For each candidate "
          f"(DPM-Solver++ steps / guidance): `ptgen synth` of {study['per_class']} samples per class (same seeds), "
          f"`pttrain pp` (resnet18 at {study['img_size']} px, {study['pp_epochs']} epochs, pp defaults), its top-1 on "
          f"{RENDERS_PER_CLASS} real renders per class from unseen seeds, then `pttrain finetune` on digits "
          f"({study['labels']} labels per class, test top-1 after the last epoch, mean ± sd over export seeds "
          f"{study['seeds']}). Curves: {PLOT.relative_to(ROOT)}.\n\n"
          + table(["steps/guidance", "synth images/s", "synth minutes", "pp run's top-1 on real renders",
                   "digits, pp → finetune"], rows))
    write_section("sampling_transfer", md)
    print(md)


def main() -> None:
    def candidates(r: argparse.ArgumentParser) -> None:
        r.add_argument("--candidates", type=lambda s: s.split(","), default=["3/1.5", "5/2", "10/2"])
        r.add_argument("--img-size", type=int, default=16, help="pp input size (fine-tuning keeps it)")

    study_main(__doc__, run, report, candidates, per_class=10, pp_epochs=3, seeds=[0, 1])


if __name__ == "__main__":
    main()
