"""Which augmentation policy should RGB photos get, at the input sizes photo targets train at?

The scenes target (benchmarks/targets.py: ten colour photographs, one class each, 10 labeled
crops a class of 120-288 px at their own aspect, 30 disjoint test crops) trained at --img-size 64,
128 and 224 with each policy, from scratch and after pre-training:

  scratch   `pttrain finetune --init none --augment P --img-size S`
  pre-trained  the same from `--init PRE-S-P`, a resnet18 pre-trained with the same policy and size
            on the textures source (11 classes of scikit-image's other images, 60 crops a class)
            by `pttrain finetune --init none`: the supervised pre-training that `pttrain pp` runs on
            a generator's shards, here on real photographs and textures, since no photo generator's
            weights are on this machine

One schedule rule for every route: batches of 16 and epochs such that
epochs x ceil(n / batch) is about --steps (--pre-steps) optimizer steps, flags otherwise at their
defaults; test top-1 by `pttrain eval` through the run's own policy. Beside them, logistic regression
on the pixels resized to S square. A seed draws the labeled crops and seeds the run; the
pre-trained models are one per size and policy (seed 0), shared by the seeds.

    pip install -e '.[bench]'   # scikit-image, for its photographs
    python -m benchmarks.photo_policy run     # resumes where it stopped: every cell is skipped when done
    python -m benchmarks.photo_policy report

`report` keeps every score it finds under runs/ in benchmarks/results/photo_policy.json, which is
tracked: the table can be rebuilt, and seeds added, in a checkout whose runs/ is gone.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

from benchmarks.common import EPOCHS_ONLY, ROOT, keep_scores, read_json, run_tool, spread, table, train_until_finished, write_section
from benchmarks.targets import SCENE_TEST_PER_CLASS, TEXTURE_PER_CLASS, pixel_floors, scenes, textures, training_part

WORK = ROOT / "runs" / "photo-policy"
KEPT = ROOT / "benchmarks" / "results" / "photo_policy.json"
POLICIES = ("glyph", "natural")
INITS = ("scratch", "pretrained")
BATCH, PRE_BATCH = 16, 16
DEFAULT_SEEDS = {64: [0, 1, 2], 128: [0, 1, 2], 224: [0, 1]}


def epochs_for(steps: int, images: int, batch: int) -> int:
    return max(1, round(steps / math.ceil(images / batch)))


def count(tree: Path) -> int:
    return sum(1 for _ in (tree / "train").glob("*/*.png"))


def pretrained(size: int, policy: str, steps: int) -> Path:
    source = textures(WORK / "textures")
    out = WORK / f"pre-{size}-{policy}"
    train_until_finished("finetune", out, "--data", source, "--init", "none", "--augment", policy,
                         "--img-size", size, "--epochs", epochs_for(steps, count(source), PRE_BATCH),
                         "--batch-size", PRE_BATCH, "--seed", 0, *EPOCHS_ONLY)
    return out


def cell(size: int, policy: str, init: str, seed: int) -> Path:
    return WORK / f"{size}-{policy}-{init}-{seed}"


def run(args: argparse.Namespace) -> None:
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK / "study.json").write_text(json.dumps(vars(args), indent=1))
    # seed by seed, every size within a seed: a study stopped early has the same seeds at every size
    for seed in sorted({s for size in args.sizes for s in args.seeds.get(size, DEFAULT_SEEDS[size])}):
        for size in (size for size in args.sizes if seed in args.seeds.get(size, DEFAULT_SEEDS[size])):
            tree = scenes(WORK / f"scenes-{seed}", args.labels, seed)
            floor = WORK / f"pixels-{size}-{seed}.json"
            if not floor.exists():
                floor.write_text(json.dumps({"top1": pixel_floors(tree, size)["logreg"]}))
            epochs = epochs_for(args.steps, count(tree), BATCH)
            for init in INITS:
                for policy in POLICIES:
                    out = cell(size, policy, init, seed)
                    start = (["--init", pretrained(size, policy, args.pre_steps)] if init == "pretrained"
                             else ["--init", "none", "--img-size", size])
                    train_until_finished("finetune", out, "--data", training_part(tree), *start, "--augment", policy,
                                         "--epochs", epochs, "--batch-size", BATCH, "--seed", seed, *EPOCHS_ONLY)
                    if not (out / "test.json").exists():
                        run_tool("train", "eval", "--run", out, "--data", tree, "--json", out / "test.json")


def collect() -> dict:
    """Every score of the study, {"study": settings, "scores": {"SIZE/ROUTE/SEED": top-1}}: the kept
    file, updated with what runs/ holds now."""
    found, fields = {}, {}
    if (WORK / "study.json").exists():
        fields["study"] = {k: v for k, v in read_json(WORK / "study.json").items() if k in ("steps", "pre_steps", "labels")}
    for path in WORK.glob("pixels-*-*.json"):
        _, size, seed = path.stem.split("-")
        found[f"{size}/pixels/{seed}"] = read_json(path)["top1"]
    for path in WORK.glob("*-*-*-*/test.json"):
        size, policy, init, seed = path.parent.name.split("-")
        found[f"{size}/{policy}-{init}/{seed}"] = read_json(path)["top1"]
    return keep_scores(KEPT, found, **fields)


ROUTES = ("pixels", *(f"{p}-{i}" for i in INITS for p in POLICIES))


def report(args: argparse.Namespace) -> None:
    kept = collect()
    study, scores = kept["study"], kept["scores"]

    def score(size: int, route: str, seed: int) -> float:
        return scores[f"{size}/{route}/{seed}"]

    rows, diffs = [], []
    for size in DEFAULT_SEEDS:
        seeds = sorted({int(k.split("/")[2]) for k in scores if k.startswith(f"{size}/")})
        seeds = [s for s in seeds if all(f"{size}/{r}/{s}" in scores for r in ROUTES)]
        if not seeds:
            continue
        for route in ROUTES:
            values = [score(size, route, s) for s in seeds]
            label = "logistic regression on pixels" if route == "pixels" else route.replace("-", ", ")
            rows.append([size, label, *(f"{v:.3f}" for v in values), spread(values)])
        for init in INITS:
            d = [score(size, f"natural-{init}", s) - score(size, f"glyph-{init}", s) for s in seeds]
            mean = statistics.mean(d)
            sd = statistics.stdev(d) if len(d) > 1 else 0.0
            winner = "natural" if mean > 0 else "glyph"
            ahead = sum((x > 0) == (mean > 0) and x != 0 for x in d)
            diffs.append([size, init, ", ".join(f"{x:+.3f}" for x in d), f"{mean:+.3f}", f"{sd:.3f}",
                          f"{winner} ({ahead} of {len(d)} seeds)"])
    if not rows:
        raise SystemExit(f"photo_policy: no size has all its routes scored yet ({KEPT}, {WORK})")
    seed_cols = max(len(r) for r in rows) - 3
    rows = [r[:2] + r[2:-1] + [""] * (seed_cols - (len(r) - 3)) + r[-1:] for r in rows]
    md = (f"### Augmentation policy for RGB photos, by input size\n\n"
          f"Command: `python -m benchmarks.photo_policy run`, then `report` (the seeds at each size: "
          f"{json.dumps({str(k): v for k, v in DEFAULT_SEEDS.items()})}; fewer at 224 px, where a run costs "
          f"about 12 times one at 64). Target: the scenes task, 10 colour photographs of scikit-image and "
          f"scikit-learn, one class each, {study['labels']} labeled crops a class from the left 55% of each "
          f"photograph and {SCENE_TEST_PER_CLASS} test crops from the rest, stored at their own aspect, "
          f"120-288 px. resnet18 trained at --img-size S by `pttrain finetune`, batch {BATCH}, epochs such that "
          f"about {study['steps']} optimizer steps are taken, flags otherwise at their defaults; pre-trained: from "
          f"a resnet18 first trained with the same policy and size on 11 texture classes of scikit-image "
          f"({TEXTURE_PER_CLASS} crops a class, batch {PRE_BATCH}, about {study['pre_steps']} steps), one per "
          f"size and policy. Test top-1 by `pttrain eval`.\n\n"
          + table(["size", "route", *(f"seed {i}" for i in range(seed_cols)), "mean ± sd"], rows)
          + "\n\nnatural minus glyph, paired by seed:\n\n"
          + table(["size", "start", "per seed", "mean", "sd", "ahead"], diffs))
    write_section("photo_policy", md)
    print(md)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=list(DEFAULT_SEEDS))
    r.add_argument("--seeds", type=lambda s: {size: [int(x) for x in s.split(",")] for size in DEFAULT_SEEDS},
                   default=DEFAULT_SEEDS, help="The same seeds at every size (default: per size, DEFAULT_SEEDS).")
    r.add_argument("--steps", type=int, default=300, help="Optimizer steps of every target run (about).")
    r.add_argument("--pre-steps", type=int, default=300, help="Optimizer steps of every pre-training run (about).")
    r.add_argument("--labels", type=int, default=10, help="Labeled crops per class.")
    sub.add_parser("report")
    args = ap.parse_args()
    run(args) if args.cmd == "run" else report(args)


if __name__ == "__main__":
    main()
