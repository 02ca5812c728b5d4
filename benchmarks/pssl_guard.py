"""P-SSL that never costs: its weight-0 control against PP -> finetune, and the guards side by side.

Source: the built-in world. Targets (benchmarks/targets.py): digits, which the source classifier does
not recognise; lookalikes and lookalikes-sharp, ten of the source world's own letters, which it does.
Target architecture resnet18. A seed draws the labeled images and seeds every run of its cell; pp runs
and synthetic shards come from the cache the main comparison keeps (benchmarks/reproduce.py), pseudo
shards are `ptgen pseudo` at its defaults (top-1 soft label), made per labeled draw.

Rows, each at pttrain's defaults but for what the row names (every P-SSL flag spelled out, so a result
never stands for a default that has since changed). P-SSL is FixMatch at finetune's labeled batch (64)
and schedule, 64 pseudo samples a step (--ratio 1) unless the row says otherwise:

  logreg      logistic regression on the raw pixels (the floor)
  pp          finetune --init PP
  control     pssl --init PP, pseudo samples at --unlabeled-weight 0 (the labeled branch alone)
  none        pssl, every pseudo sample counts (--guard none)
  weight      pssl, each pseudo sample's loss times its target's confidence (--guard weight)
  drop        pssl, samples of targets under confidence 0.3 left out (--guard drop)
  gate        pssl, every pseudo sample if the targets' mean confidence reaches 0.3, else none (--guard gate)
  default     whichever of weight, drop and gate is pttrain pssl's default guard (gate)
  none-r2     none at --ratio 2: more pseudo samples a step
  oracle      pssl on the target's real unlabeled images (what unlabeled data can give)

Parts (run in the order given, each a list of cells x rows):

  gate     digits and lookalikes-sharp at 5 labels a class: pp, control and the default guard
  main     digits at 5 labels a class: pp, control, none, weight, drop; lookalikes-sharp at 5: pp,
           control, weight, drop
  budgets  digits at 2 and 10, lookalikes at 5: pp and the default guard
  oracle   every target at 2 labels a class: the oracle, pp and the default guard
  ratio    lookalikes-sharp at 5: none-r2

    python -m benchmarks.pssl_guard run [--parts gate,main,budgets,oracle,ratio] [--seeds 0,1,2] [--jobs 3]
    python -m benchmarks.pssl_guard report [--doc FILE|-]

`run` skips every cell whose result exists (in runs/, or kept in benchmarks/results/pssl_guard.json,
which `report` updates from runs/ and which is committed, so that seeds add up across machines), so it
is resumed by running it again. --jobs trainings run at
once, each on one thread (OMP_NUM_THREADS=1 for every run of the study, so that a
route's result never depends on what ran beside it: the control is finetune to the bit only at the
same thread count).
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
from concurrent.futures import ThreadPoolExecutor

from benchmarks.common import (
    RUNS, Kept, cli, describe_paired, doc_flag, eval_top1, flag, ints, paired, read_json, spread, table, words,
    write_section,
)
from benchmarks.reproduce import Cell, Settings, ssl_flags

WORK = RUNS / "pssl_guard"
# What the report reads from a run's train.json, kept beside its top-1.
RECORDED = ("targets_mean_confidence", "pseudo_kept", "pseudo_samples", "pseudo_mean_weight")
SEEDS = [0, 1, 2]
# ptgen pseudo's defaults, named.
PSEUDO = ("--top-k", 1, "--temperature", 1)
BATCH = 64  # finetune's labeled batch, which pssl's labeled branch takes
THRESHOLD = 0.3


def pssl_row(weight: float = 1, ratio: int = 1, guard: tuple = ("--guard", "none")) -> tuple:
    return (*ssl_flags(weight=weight, batch_size=BATCH, ratio=ratio), *guard)


ROWS = {
    "control": pssl_row(weight=0),
    "none": pssl_row(),
    "weight": pssl_row(guard=("--guard", "weight")),
    "drop": pssl_row(guard=("--guard", "drop", "--guard-threshold", THRESHOLD)),
    "gate": pssl_row(guard=("--guard", "gate", "--guard-threshold", THRESHOLD)),
    "none-r2": pssl_row(ratio=2),
    # Real images: no guard applies. FixMatch's flags, at the batch and ratio the other rows take.
    "oracle": ssl_flags(batch_size=BATCH, ratio=1),
}
LABELS = {"logreg": "logistic regression, pixels", "pp": "PP -> finetune", "control": "P-SSL, weight 0 (control)",
          "none": "PP + P-SSL, no guard", "weight": "PP + P-SSL, --guard weight",
          "drop": f"PP + P-SSL, --guard drop (< {THRESHOLD})",
          "gate": f"PP + P-SSL, --guard gate (at {THRESHOLD})", "none-r2": "PP + P-SSL, no guard, ratio 2",
          "oracle": "oracle: real unlabeled images"}
TARGETS = ("digits", "lookalikes", "lookalikes-sharp")
GUARDED = ("weight", "drop", "gate")
PARTS = {
    # The default guard (gate) with its references, on digits and lookalikes-sharp at 5 labels a class.
    "gate": [("digits", 5, ["logreg", "pp", "control", "default"]),
             ("lookalikes-sharp", 5, ["logreg", "pp", "control", "default"])],
    # lookalikes-sharp has no `none` row: --guard drop keeps 98-100% of its pseudo samples there (the
    # report's guard table), which makes drop that row but for a few samples.
    "main": [("digits", 5, ["logreg", "pp", "control", "none", "weight", "drop"]),
             ("lookalikes-sharp", 5, ["logreg", "pp", "control", "weight", "drop"])],
    # At the default guard, once the main part has chosen it: the row of that name.
    "budgets": [("digits", 2, ["logreg", "pp", "default"]), ("digits", 10, ["logreg", "pp", "default"]),
                ("lookalikes", 5, ["logreg", "pp", "default"])],
    "oracle": [(t, 2, ["oracle"]) for t in TARGETS] + [(t, 2, ["logreg", "pp", "default"]) for t in TARGETS[1:]],
    "ratio": [("lookalikes-sharp", 5, ["none-r2"])],
}


def resolve(row: str) -> str:
    """`default` is the row of pttrain pssl's default guard."""
    if row != "default":
        return row
    from train.guard import DEFAULT_GUARD

    return DEFAULT_GUARD if DEFAULT_GUARD in GUARDED else "none"


def cell(target: str, budget: int, seed: int, row: str) -> Cell:
    row = resolve(row)
    settings = Settings(target=target, pseudo_extra=PSEUDO, row_extra=ROWS.get(row, ()))
    return Cell(WORK / target, settings, budget, seed, name=row)


def command_row(row: str) -> str:
    """The main comparison's row whose command a row runs (reproduce.Cell.command)."""
    return {"logreg": "logreg", "pp": "pp", "oracle": "oracle"}.get(row, "pp+fixmatch")


def key(target: str, budget: int, seed: int, row: str) -> str:
    return f"{target}/{budget}/{seed}/{resolve(row)}"


def run_task(task: tuple) -> None:
    c = cell(*task)
    if key(*task) not in kept() and not c.result(resolve(task[3])).exists():
        c.run(command_row(resolve(task[3])))


def prepare_draw(target: str, budget: int, seed: int) -> None:
    c = cell(target, budget, seed, "none")
    c.exported()
    c.pseudo()


def prerequisites(tasks: list[tuple], jobs: int) -> None:
    """What the trainings share, made before them: the synthetic shards, then in one pool one pp run
    a seed and every cell's labeled draw and pseudo shards (which need no pp run)."""
    cell("digits", 5, tasks[0][2], "pp").synth()
    seeds = sorted({t[2] for t in tasks})
    draws = sorted({(t[0], t[1], t[2]) for t in tasks})
    with ThreadPoolExecutor(jobs) as pool:
        made = [pool.submit(lambda s: cell("digits", 5, s, "pp").pp_run(), s) for s in seeds]
        made += [pool.submit(prepare_draw, *d) for d in draws]
        for future in made:
            future.result()


def tasks_of(parts: list[str], seeds: list[int]) -> list[tuple]:
    """Seed by seed within a part, so that a part stopped early has whole seeds to report."""
    return [(target, budget, seed, row) for part in parts for seed in seeds for target, budget, rows in PARTS[part]
            for row in rows]


def run(args: argparse.Namespace) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    kept()  # read once, here: the pool's threads share it
    tasks = tasks_of(args.parts, args.seeds)
    prerequisites(tasks, args.jobs)
    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(run_task, tasks))


@functools.cache
def kept() -> dict[str, dict]:
    """Every cell's {"top1", "train"}: the kept file (benchmarks/results/pssl_guard.json), updated
    with what runs/ holds now."""
    found, scores = {}, Kept("pssl_guard")
    for target, budget, seed, row in tasks_of(list(PARTS), SEEDS):
        c, row = cell(target, budget, seed, row), resolve(row)
        if c.result(row).exists():
            record = c.folder(row) / "train.json"
            train = read_json(record) if record.exists() else {}
            found[key(target, budget, seed, row)] = {"top1": eval_top1(c.result(row)),
                                                     "train": {k: train[k] for k in RECORDED if k in train}}
    scores.update(found)
    return scores.scores


def top1(target: str, budget: int, seed: int, row: str) -> float | None:
    found = kept().get(key(target, budget, seed, row))
    return found["top1"] if found else None


def train_record(target: str, budget: int, seed: int, row: str) -> dict:
    found = kept().get(key(target, budget, seed, row))
    return found["train"] if found else {}


def paired_with(target: str, budget: int, seeds: list[int], a: str, b: str) -> str:
    """A - B seed by seed, described."""
    return describe_paired(paired({s: top1(target, budget, s, a) for s in seeds},
                                  {s: top1(target, budget, s, b) for s in seeds}))


def readme_table(seeds: list[int]) -> str:
    """The README's table: each target and budget at pttrain pssl's defaults, beside PP -> finetune
    (and, at 2 labels a class, beside what the target's real unlabeled images give)."""
    rows = []
    cells = [("digits", 2), ("digits", 5), ("digits", 10), ("lookalikes", 2), ("lookalikes", 5),
             ("lookalikes-sharp", 2), ("lookalikes-sharp", 5)]
    for target, budget in cells:
        values = {r: [v for s in seeds if (v := top1(target, budget, s, r)) is not None]
                  for r in ("logreg", "pp", "control", "default", "oracle")}
        confidence = [r["targets_mean_confidence"] for s in seeds
                      if (r := train_record(target, budget, s, "default")).get("targets_mean_confidence")]
        rows.append([f"{target}, {budget}/class", f"{statistics.mean(confidence):.2f}" if confidence else "—",
                     *(f"{spread(v)}" + (f" (n={len(v)})" if len(v) != len(seeds) else "") if v else "—"
                       for v in values.values()), paired_with(target, budget, seeds, "default", "pp")])
    return table(["target", "source's confidence", "logistic regression, pixels", "PP -> finetune",
                  "P-SSL at weight 0 (control)", "PP + P-SSL (the method, --guard gate)",
                  "oracle: real unlabeled images", "method minus PP -> finetune, paired"], rows)


def report(args: argparse.Namespace) -> None:
    seeds = SEEDS
    body, pairs, guards, seen = [], [], [], set()
    for part in ("gate", "main", "budgets", "oracle", "ratio"):
        for target, budget, rows in PARTS[part]:
            for row in rows:
                if (target, budget, resolve(row)) in seen:
                    continue
                seen.add((target, budget, resolve(row)))
                values = [v for s in seeds if (v := top1(target, budget, s, row)) is not None]
                if not values:
                    continue
                row = resolve(row)
                body.append([f"{target}, {budget}/class", LABELS[row], f"{spread(values)} (n={len(values)})"])
                if row in ("logreg", "pp"):
                    continue
                pp_spread = [v for s in seeds if (v := top1(target, budget, s, "pp")) is not None]
                sd = statistics.stdev(pp_spread) if len(pp_spread) > 1 else float("nan")
                vs_control = paired_with(target, budget, seeds, row, "control") if row != "control" else "—"
                pairs.append([f"{target}, {budget}/class", LABELS[row], paired_with(target, budget, seeds, row, "pp"),
                              f"{sd:.3f}", vs_control])
                records = [r for s in seeds if (r := train_record(target, budget, s, row))]
                kept = [r["pseudo_kept"] / r["pseudo_samples"] for r in records if r.get("pseudo_samples")]
                weights = [r["pseudo_mean_weight"] for r in records if r.get("pseudo_mean_weight") is not None]
                confidence = [r["targets_mean_confidence"] for r in records if r.get("targets_mean_confidence")]
                if kept:
                    guards.append([f"{target}, {budget}/class", LABELS[row], f"{statistics.mean(confidence):.2f}",
                                   f"{statistics.mean(kept):.2f}", f"{statistics.mean(weights):.2f}"])
    text = [
        "Command: `python -m benchmarks.pssl_guard run --parts gate,budgets,oracle,main --seeds 0,1,2 --jobs 2`, then "
        "`python -m benchmarks.pssl_guard report` (benchmarks/pssl_guard.py says what each row runs). Built-in "
        "source world, resnet18, pseudo shards from `ptgen pseudo` at its defaults (10 a labeled image, top-1 soft "
        f"label); P-SSL is FixMatch (threshold 0.95) at finetune's labeled batch ({BATCH}) and schedule, "
        "`--bn-stats labeled`, ratio 1 unless the row says otherwise; every run on one thread. Test top-1, mean ± "
        "sd over seeds 0, 1, 2 (the labeled draw and `--seed`).",
        "",
        table(["target", "route", "test top-1"], body),
        "",
        "Paired differences, seed by seed (a row minus PP -> finetune, and minus the weight-0 control), with PP -> "
        "finetune's own seed spread:",
        "",
        table(["target", "route", "minus PP -> finetune", "sd of PP -> finetune", "minus the control"], pairs),
    ]
    if guards:
        text += ["", "What each guard did (train.json, mean over seeds): the source classifier's mean confidence on "
                 "the targets, the share of pseudo samples kept and their mean weight over all samples:", "",
                 table(["target", "route", "targets' mean confidence", "kept", "mean weight"], guards)]
    text += ["", "Compute: every P-SSL row takes finetune's 300 steps of 64 labeled images; at ratio 1 a step also "
             "passes 64 pseudo samples twice (weak and strong view), about 3 times finetune's image passes (5 times at "
             "ratio 2). The control and a guard that keeps no sample skip the pseudo samples and cost what finetune "
             "costs. (Wall times are not given: the study shared the machine with other work.)"]
    write_section("pssl_guard", "\n".join(text), args.doc)
    print("\nThe README's table (P-SSL at pttrain's defaults):\n")
    print(readme_table(seeds))


def main() -> None:
    cli(__doc__,
        run=(run, [flag("--parts", type=words, default=list(PARTS)), flag("--seeds", type=ints, default=SEEDS),
                   flag("--jobs", type=int, default=3)]),
        report=(report, [doc_flag()]))


if __name__ == "__main__":
    main()
