"""Look-alikes grown from the target images (`ptgen pseudo --strength S`) against today's P-SSL,
PP -> finetune and the oracle.

Source: the built-in world; targets (benchmarks/targets.py) digits at 2 and 5 labels a class, and
lookalikes and lookalikes-sharp at 2; resnet18; seeds 0, 1, 2, each drawing the labeled images and
seeding every run of its cell. All rows of a seed start from the same pp run (the main comparison's
cache), so their differences are paired. Pseudo shards are 10 a labeled image, top-1 soft label.

Rows (every flag a default could change spelled out):

  pp              finetune --init PP (also the P-SSL control: pssl at --unlabeled-weight 0 ends with
                  these weights to the bit, tests/test_pssl.py)
  noise-gate      pssl on pseudo samples drawn from noise (S = 1), --guard gate: today's method
  grown-S         pssl on look-alikes grown at strength S (0.5, 0.8), --guard none: whether the
                  gate, set for samples from noise, should hold them back too
  extra-S-wW      finetune --init PP --extra-labeled LOOK-ALIKES(S) --extra-weight W (W 0.5, 1; and
                  S 0.2 at W 0.5): the look-alikes as labeled data, each with its own target's class
  oracle          pssl on the target's real unlabeled images (what unlabeled data can give)

    python -m benchmarks.lookalikes run [--seeds 0,1,2] [--jobs 2] [--cells digits/2,...]
    python -m benchmarks.lookalikes report [--doc FILE|-]

`run` skips every cell kept in benchmarks/results/lookalikes.json or present under runs/, so it
resumes by running it again; every training runs on one thread (OMP_NUM_THREADS=1).
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import threading
from concurrent.futures import ThreadPoolExecutor

from benchmarks.common import (
    RUNS, Kept, cli, describe_paired, doc_flag, eval_top1, flag, ints, paired, spread, table, words, write_section,
)
from benchmarks.pssl_guard import BATCH, PSEUDO, pssl_row
from benchmarks.reproduce import Cell, Settings, ssl_flags

WORK = RUNS / "lookalikes"
SEEDS = [0, 1, 2]
STRENGTHS = (0.5, 0.8)
WEIGHTS = (0.5, 1)
# The labeled use at each of STRENGTHS and WEIGHTS, and at a low strength: on the built-in generator's 5
# steps, look-alikes at 0.5 and up already take the shape of the source class they are conditioned
# on, while at 0.2 they keep their target's (compare `ptgen inspect --grid` of each).
EXTRA = ((0.2, 0.5), *((s, w) for s in STRENGTHS for w in WEIGHTS))
# The goal's cells first, so that a partial run holds them whole.
CELLS = ("digits/2", "lookalikes/2", "lookalikes-sharp/2", "digits/5")
GATE = ("--guard", "gate", "--guard-threshold", 0.3)


def grown(strength: float) -> tuple:
    return (*PSEUDO, "--strength", strength)


# row -> (the main comparison's command row, ptgen pseudo's flags, the row's own training flags, label)
ROWS: dict[str, tuple[str, tuple, tuple, str]] = {
    "pp": ("pp", PSEUDO, (), "PP -> finetune"),
    "noise-gate": ("pp+fixmatch", PSEUDO, pssl_row(guard=GATE), "P-SSL, samples from noise, --guard gate"),
    **{f"grown-{s}": ("pp+fixmatch", grown(s), pssl_row(), f"P-SSL, look-alikes at S={s}, --guard none")
       for s in STRENGTHS},
    **{f"extra-{s}-w{w}": ("pp+extra", grown(s), ("--extra-weight", w), f"look-alikes at S={s} as labeled, W={w}")
       for s, w in EXTRA},
    "oracle": ("oracle", PSEUDO, ssl_flags(batch_size=BATCH, ratio=1), "oracle: real unlabeled images"),
}


def cell(target: str, budget: int, seed: int, row: str) -> Cell:
    _, pseudo, own, _ = ROWS[row]
    return Cell(WORK / target, Settings(target=target, pseudo_extra=pseudo, row_extra=own), budget, seed, name=row)


def key(target: str, budget: int, seed: int, row: str) -> str:
    return f"{target}/{budget}/{seed}/{row}"


def parse_cells(cells: list[str]) -> list[tuple[str, int]]:
    return [(c.split("/")[0], int(c.split("/")[1])) for c in cells]


# What rows of one seed share (its labeled draw, and pseudo shards: grown-S's are extra-S-wW's too) is
# made by one job at a time, so that two jobs never write the same folder at once.
_MAKING = threading.Lock()


def run_task(task: tuple) -> None:
    target, budget, seed, row = task
    c = cell(*task)
    if key(*task) not in kept() and not c.result(row).exists():
        with _MAKING:
            c.exported()
            c.pseudo()
        c.run(ROWS[row][0])


def run(args: argparse.Namespace) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    kept()
    # A cell's seeds before the next cell, so that a partial run already holds whole paired comparisons.
    tasks = [(t, b, s, r) for t, b in parse_cells(args.cells) for s in args.seeds for r in ROWS]
    # What the trainings share, first and one at a time: the synthetic shards, a pp run a seed.
    for seed in args.seeds:
        cell("digits", 5, seed, "pp").pp_run()
    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(run_task, tasks))


@functools.cache
def kept() -> dict[str, float]:
    """Every cell's test top-1: the kept file (benchmarks/results/lookalikes.json), updated from runs/."""
    scores = Kept("lookalikes")
    scores.update({key(t, b, s, r): eval_top1(c.result(r)) for t, b in parse_cells(list(CELLS)) for s in SEEDS
                   for r in ROWS if (c := cell(t, b, s, r)).result(r).exists()})
    return scores.scores


def top1(target: str, budget: int, seed: int, row: str) -> float | None:
    return kept().get(key(target, budget, seed, row))


# The goal for a route to become the default: where the source does not know the target, at
# least half the oracle's gain; no seed of any cell below PP -> finetune by more than 0.005; and
# lookalikes-sharp's gain under today's method kept.
UNKNOWN = (("digits", 2), ("lookalikes", 2))
KNOWN = ("lookalikes-sharp", 2)
FLOOR = -0.005


def gains(target: str, budget: int, row: str) -> dict[int, float]:
    """ROW minus PP -> finetune, seed by seed."""
    return paired({s: top1(target, budget, s, row) for s in SEEDS}, {s: top1(target, budget, s, "pp") for s in SEEDS})


def mean_or_none(diffs: dict[int, float]) -> float | None:
    return statistics.mean(diffs.values()) if diffs else None


def share(target: str, budget: int, row: str) -> float | None:
    """ROW's mean gain over PP -> finetune as a share of the oracle's, over the seeds that have both."""
    own, oracle = gains(target, budget, row), gains(target, budget, "oracle")
    common = own.keys() & oracle.keys()
    base = statistics.mean(oracle[s] for s in common) if common else 0
    return statistics.mean(own[s] for s in common) / base if base > 0 else None


def percent(value: float | None) -> str:
    return f"{value:+.0%}" if value is not None else "—"


def goal_table() -> str:
    """Per route, each part of the goal as measured, and the seeds it rests on."""
    sharp = mean_or_none(gains(*KNOWN, "noise-gate"))
    body = []
    for row, (_, _, _, label) in ROWS.items():
        if row in ("pp", "oracle"):
            continue
        shares = [percent(share(target, budget, row)) for target, budget in UNKNOWN]
        every = [d for t, b in parse_cells(list(CELLS)) for d in gains(t, b, row).values()]
        own_sharp = mean_or_none(gains(*KNOWN, row))
        body.append([label, *shares, f"{min(every):+.3f} ({len(every)} seed-cells)" if every else "—",
                     f"{own_sharp:+.3f}" if own_sharp is not None else "—"])
    return ("Against the goal: the share of the oracle's mean gain where the source does not know the target "
            f"(goal: 50% or more), the worst paired difference from PP -> finetune over every seed of every cell "
            f"(goal: {FLOOR} or more), and the mean gain on lookalikes-sharp at 2 labels a class (goal: today's "
            f"method's, {f'{sharp:+.3f}' if sharp is not None else 'not yet measured'}, kept).\n\n"
            + table(["route", "share of oracle's gain, digits/2", "share, lookalikes/2", "worst seed-cell",
                     "lookalikes-sharp/2 gain"], body))


def report(args: argparse.Namespace) -> None:
    body = []
    for target, budget in parse_cells(list(CELLS)):
        for row, (_, _, _, label) in ROWS.items():
            values = [v for s in SEEDS if (v := top1(target, budget, s, row)) is not None]
            if not values:
                continue
            diffs = gains(target, budget, row) if row != "pp" else {}
            body.append([f"{target}, {budget}/class", label, f"{spread(values)} (n={len(values)})",
                         describe_paired(diffs) if diffs else "—", percent(share(target, budget, row)) if diffs else "—"])
    text = ("Command: `python -m benchmarks.lookalikes run --seeds 0,1,2`, then `python -m benchmarks.lookalikes "
            "report` (benchmarks/lookalikes.py says what each row runs). Built-in source world, resnet18, 10 pseudo "
            f"samples a labeled image (top-1 soft label); P-SSL is FixMatch at finetune's labeled batch ({BATCH}), "
            "ratio 1; every run on one thread. Test top-1, mean ± sd over seeds; each row minus PP -> finetune seed by "
            "seed; and the share of the oracle's mean gain over PP -> finetune that the row's mean gain makes, over the seeds with both.\n\n"
            + table(["target", "route", "test top-1", "minus PP -> finetune, paired", "share of the oracle's gain"],
                    body)
            + "\n\n" + goal_table())
    write_section("lookalikes", text, args.doc)


def main() -> None:
    cli(__doc__,
        run=(run, [flag("--seeds", type=ints, default=SEEDS), flag("--jobs", type=int, default=2),
                   flag("--cells", type=words, default=list(CELLS), help="TARGET/BUDGET, e.g. digits/2.")]),
        report=(report, [doc_flag()]))


if __name__ == "__main__":
    main()
