"""How many optimizer steps should a few-shot run take at least (`pttrain --min-steps`)?

With 50 labeled images and batches of 64, pttrain's old schedule (30 epochs) was 30 steps in all:
the routes from random weights stopped before they fit and ended with batch-norm statistics from a
handful of steps. This study trains with each candidate floor and scores on a validation split
held out of the labeled images (benchmarks/targets.py, `validation_split`), never on a test split:

  digits   --labels-per-class 10; 5 a class fit, 5 validate
  photos   10 labeled patches a class; 5 fit, 5 validate (small RGB photos of our own making)

Routes: scratch (`finetune --init none`) on both; PP then fine-tune on digits, from a pp run on
10 built-in samples a class (5 epochs). Every other flag stays at its default (batch 64, lr 1e-3,
30 epochs). Candidates `--min-steps 0` (the old schedule), 100, 300, 1000. The test split of the
same runs is shown beside, for the reading only. Every cell is skipped when its output exists.

    python -m benchmarks.fewshot_schedule run [--seeds 0,1] [--floors 0,100,300,1000]
    python -m benchmarks.fewshot_schedule report
"""

from __future__ import annotations

import argparse
import json
import statistics

from benchmarks import sources, targets
from benchmarks.common import ROOT, pyplot, read_json, run_tool, save_figure, spread, table, train_until_finished, write_section

WORK = ROOT / "runs" / "fewshot-schedule"
PLOT = ROOT / "docs" / "fewshot_schedule.png"
LABELS, HELD_OUT = 10, 5
CELLS = (("digits", "scratch"), ("digits", "pp"), ("photos", "scratch"))


def trees(kind: str, seed: int):
    """The full target tree (its test/ for the reading) and its validation split."""
    full = WORK / f"{kind}-{seed}"
    (targets.digits if kind == "digits" else targets.photos)(full, LABELS, seed)
    return full, targets.validation_split(full, WORK / f"{kind}-{seed}-val", HELD_OUT)


def run(args: argparse.Namespace) -> None:
    WORK.mkdir(parents=True, exist_ok=True)
    record = WORK / "study.json"
    earlier = read_json(record) if record.exists() else {"seeds": [], "floors": []}
    # A sitting that adds seeds (or floors) adds to the study: the report reads every one finished.
    record.write_text(json.dumps({key: sorted(set(earlier[key]) | set(getattr(args, key))) for key in ("seeds", "floors")},
                                 indent=1))
    # The floor this pp run had (546 steps), before the study chose the default.
    pp_run = sources.pp(sources.synth(10), 5, 0, "--min-steps", 500)
    for seed in args.seeds:
        for kind, route in CELLS:
            full, val = trees(kind, seed)
            for floor in args.floors:
                out = WORK / f"{kind}-{route}-{floor}-{seed}"
                done = train_until_finished("finetune", out, "--data", targets.training_part(val), "--init",
                                            pp_run if route == "pp" else "none", "--min-steps", floor, "--seed", seed)
                if done is not None:
                    (out / "wall.json").write_text(json.dumps({"seconds": done.seconds}))
                for name, tree in (("val", val), ("test", full)):
                    if not (out / f"{name}.json").exists():
                        run_tool("train", "eval", "--run", out, "--data", tree, "--json", out / f"{name}.json")


def report(args: argparse.Namespace) -> None:
    study = read_json(WORK / "study.json")
    floors = study["floors"]
    seeds = [s for s in study["seeds"] if all((WORK / f"{kind}-{route}-{f}-{s}" / "test.json").exists()
                                              for kind, route in CELLS for f in floors)]
    if not seeds:
        raise SystemExit(f"no seed of {WORK} has every cell: run `python -m benchmarks.fewshot_schedule run` first")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    rows, best = [], {}
    for k, (kind, route) in enumerate(CELLS):
        val_means = []
        for floor in floors:
            runs = [WORK / f"{kind}-{route}-{floor}-{seed}" for seed in seeds]
            val = [read_json(r / "val.json")["top1"] for r in runs]
            test = [read_json(r / "test.json")["top1"] for r in runs]
            record = read_json(runs[0] / "train.json")
            wall = statistics.mean(read_json(r / "wall.json")["seconds"] for r in runs)
            val_means.append(statistics.mean(val))
            rows.append([kind, route, floor, record["steps"], record["epochs_run"], spread(val), spread(test),
                         f"{wall:.0f}"])
        best[kind, route] = floors[max(range(len(floors)), key=lambda i: val_means[i])]
        steps = [read_json(WORK / f"{kind}-{route}-{f}-{seeds[0]}" / "train.json")["steps"] for f in floors]
        ax.plot(steps, val_means, "o-", color=f"C{k}", label=f"{kind}, {route}")
    ax.set_xscale("log")
    ax.set_xlabel("optimizer steps of the run")
    ax.set_ylabel("validation top-1 (held-out labeled images)")
    save_figure(fig, PLOT, dpi=110)
    pooled = {f: statistics.mean(read_json(WORK / f"{kind}-{route}-{f}-{seed}" / "val.json")["top1"]
                                 for kind, route in CELLS for seed in seeds) for f in floors}
    floors_md = (", ".join(f"{kind} {route}: {floor}" for (kind, route), floor in best.items())
                 + "; pooled over the three, mean validation top-1 by floor: "
                 + ", ".join(f"{f}: {v:.3f}" for f, v in pooled.items()))
    for kind in ("digits", "photos"):
        floors_md += f"; {kind} pixel baselines on the full test split (logistic regression / RBF SVM, seed-mean): "
        floors_md += " / ".join(
            f"{statistics.mean(targets.pixel_floors(trees(kind, s)[0])[m] for s in seeds):.3f}" for m in ("logreg", "svm"))
    md = (f"### Few-shot schedule: the step floor `--min-steps`\n\n"
          f"Command: `python -m benchmarks.fewshot_schedule run --seeds {','.join(map(str, seeds))} --floors "
          f"{','.join(map(str, floors))}`, then `report` (benchmarks/fewshot_schedule.py says what each cell is). "
          f"{LABELS} labeled images a class, {HELD_OUT} of them held out for validation; resnet18, every flag but "
          f"`--min-steps` at its default; mean ± sd over seeds (the labeled draw and `--seed`). Best floor by "
          f"validation: {floors_md}.\n\n"
          + table(["target", "route", "--min-steps", "steps", "epochs", "val top-1", "test top-1", "wall s"], rows)
          + f"\n\n![validation top-1 against steps]({PLOT.relative_to(ROOT / 'docs')})")
    write_section("fewshot_schedule", md)
    print(md)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[0, 1])
    r.add_argument("--floors", type=lambda s: [int(x) for x in s.split(",")], default=[0, 100, 300, 1000])
    sub.add_parser("report")
    args = ap.parse_args()
    run(args) if args.cmd == "run" else report(args)


if __name__ == "__main__":
    main()
