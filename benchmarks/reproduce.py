"""Does the method work here? The paper's comparison on the digits target.

Source: the built-in world (its glyph generator and classifier). Target: `pttrain data digits` with
K labeled images a class (K = 2, 5, 10; 899 test images), target architecture resnet18, which is
not the source classifier's. A seed draws the labeled images and seeds every run of its cells.
The source side is made once under runs/cache/ and shared: the synthetic shards by every seed, the
pp run of a seed by that seed's budgets, the pseudo shards of a labeled draw by every row that
uses them (and the ablations and the P-SSL study share them too).

Rows, each at pttrain's defaults, so every deep route gets its schedule by the same rule (its
--epochs, raised to at least --min-steps optimizer steps):

  logreg, svm     logistic regression and an RBF SVM on the raw pixels (scikit-learn): the floor
  scratch         finetune --init none
  kd              kd --teacher builtin:glyphs-1k
  pp              pp on synthetic shards, then finetune --init PP
  pssl            pssl --init none --unlabeled PSEUDO (P-SSL alone, FixMatch)
  pp+fixmatch     pssl --init PP --unlabeled PSEUDO (the method)
  pp+uda          the same with --algo uda
  oracle          pssl --init PP --unlabeled digits' real unlabeled/ images (FixMatch)
  source arch     finetune --init builtin:glyphs-1k: the source classifier's own architecture and
                  weights, for reference (the case the method does not assume)
  control         pp+fixmatch at unlabeled weight 0: the pseudo samples ignored
  pp+extra        finetune --init PP --extra-labeled PSEUDO: the pseudo samples as labeled data, each
                  with its target's class (the look-alike study, benchmarks/lookalikes.py)

    python -m benchmarks.reproduce run [--budgets 2,5,10] [--seeds 0,1,2] [--rows ...] [--max-minutes 55]
    python -m benchmarks.reproduce report     # table, bar chart and reading into docs/results.md
    python -m benchmarks.reproduce quick      # one budget, one seed, the main rows and a look-alike route, short runs

`run` skips every cell whose result exists and stops starting new cells after --max-minutes, so
the table is built over several runs of it. Every cell's top-1 is kept in
benchmarks/results/reproduce.json (tracked), which `report` reads.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import statistics
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

from benchmarks import targets
from benchmarks.common import (
    ROOT, RUNS, Kept, ToolRun, cli, doc_flag, flag, ints, paired, pyplot, read_json, read_jsonl, run_tool, spread, table,
    train_until_finished, words, write_section,
)

WORK = RUNS / "reproduce"
QUICK_WORK = RUNS / "reproduce-quick"
CACHE = RUNS / "cache"
PLOT = ROOT / "docs" / "reproduce.png"
SOURCE = "builtin:glyphs-1k"
# Beside each folder of the cache: the seconds its making took, which each further use saves.
MADE = "made.json"


@dataclass(frozen=True)
class Settings:
    """What a cell's rows are made from; the ablations vary one field at a time."""

    pp_per_class: int = 10  # synthetic images a source class (1000 classes)
    pp_epochs: int = 5
    per_target: int = 10  # pseudo samples a labeled image
    extra: tuple = ()  # flags of every training run, pp included (the quick mode's shorter schedule)
    pseudo_extra: tuple = ()  # flags of ptgen pseudo (temperature, top-k, condition)
    synth_extra: tuple = ()  # flags of ptgen synth for the PP shards (the image format)
    row_extra: tuple = ()  # flags of the row's own training run (KD's alpha, FixMatch's threshold), in place of SSL_FLAGS
    row_flags: tuple = ()  # (row, flags) pairs in place of SSL_FLAGS for those rows (the quick mode's P-SSL defaults)
    target: str = "digits"  # benchmarks/targets.py's export of that name


def ssl_flags(threshold: float = 0.95, weight: float = 1, bn_stats: str = "labeled", batch_size: int = 16,
              ratio: int = 7) -> tuple:
    """pttrain pssl's flags, each named (FixMatch's published settings unless given), so that a
    result never silently stands for a default that has since changed."""
    return ("--threshold", threshold, "--unlabeled-weight", weight, "--bn-stats", bn_stats, "--batch-size", batch_size,
            "--ratio", ratio)


# The SSL rows' own flags in the main table (UDA's published threshold is 0.8).
SSL_FLAGS = {"pssl": ssl_flags(), "pp+fixmatch": ssl_flags(), "oracle": ssl_flags(), "pp+uda": ssl_flags(threshold=0.8),
             "control": ssl_flags(weight=0)}


def current_pssl(weight: float = 1, guard: str | None = None) -> tuple:
    """pttrain pssl's defaults, each named: finetune's labeled batch, ratio 1 and the default guard
    (benchmarks/pssl_guard.py measured them); the control ignores its pseudo samples, so it takes no guard."""
    from train.guard import DEFAULT_GUARD

    guard = guard or (DEFAULT_GUARD if weight else "none")
    return (*ssl_flags(weight=weight, batch_size=64, ratio=1), "--guard", guard)


# The main table's PCS: the soft label over all classes, as the paper has it, named so that the
# table keeps its meaning whatever ptgen pseudo's default.
FULL = Settings(pseudo_extra=("--top-k", "all", "--temperature", 1))
QUICK = Settings(pp_per_class=3, pp_epochs=3, per_target=5, extra=("--min-steps", 100),
                 pseudo_extra=("--top-k", 1, "--temperature", 1),
                 row_flags=(("pp+fixmatch", current_pssl()), ("control", current_pssl(weight=0)),
                            ("oracle", ssl_flags(batch_size=64, ratio=1))))

# The look-alike route of the quick table, the best of benchmarks/lookalikes.py's on lookalikes at 2 labels a class:
# pseudo samples grown from each labeled image at strength S, as labeled data at weight W.
LOOKALIKE_STRENGTH, LOOKALIKE_WEIGHT = 0.8, 0.5
QUICK_LOOKALIKES = replace(QUICK, pseudo_extra=(*QUICK.pseudo_extra, "--strength", LOOKALIKE_STRENGTH),
                           row_extra=("--extra-weight", LOOKALIKE_WEIGHT))
LOOKALIKES_LABEL = f"look-alikes at S={LOOKALIKE_STRENGTH} as labeled data, W={LOOKALIKE_WEIGHT}"

PIXEL_ROWS = ("logreg", "svm")
DEEP_ROWS = ("scratch", "kd", "pp", "pssl", "pp+fixmatch", "pp+uda", "oracle", "source arch", "control")
QUICK_ROWS = ("logreg", "svm", "scratch", "kd", "pp", "control", "pp+fixmatch", "oracle")
LABELS = {"logreg": "logistic regression, pixels", "svm": "RBF SVM, pixels", "scratch": "scratch", "kd": "KD",
          "pp": "PP -> finetune", "pssl": "P-SSL from scratch", "pp+fixmatch": "**PP + P-SSL (FixMatch)**",
          "pp+uda": "PP + P-SSL (UDA)", "oracle": "oracle: PP + SSL on real unlabeled",
          "source arch": "reference: source classifier finetuned", "control": "P-SSL at weight 0 (control)"}


def short_name(name: str) -> str:
    """NAME, or where it would be too long for a folder's name (a list of class ids in it) its
    start and a digest of the whole."""
    return name if len(name) <= 80 else name[:40] + "-" + hashlib.sha256(name.encode()).hexdigest()[:12]


def _tag(extra: tuple) -> str:
    """A cache folder's name part for the flags EXTRA."""
    tag = short_name("".join(str(e).lstrip("-") for e in extra))
    return "-" + tag if tag else ""


def _made(folder: Path, run: ToolRun | None) -> Path:
    if run is not None:
        (folder / MADE).write_text(json.dumps({"seconds": run.seconds}))
    return folder


def made_seconds(folder: Path) -> float | None:
    """How long making a cache folder took (its last run, where it was resumed); None if unmade."""
    return read_json(folder / MADE)["seconds"] if (folder / MADE).exists() else None


class Cell:
    """One labeled draw: budget K, seed S, and the shared inputs its rows train from."""

    def __init__(self, work: Path, settings: Settings, budget: int, seed: int, name: str | None = None):
        """NAME, when given, names the rows' folders in place of the row (an ablation's variant)."""
        self.work, self.settings, self.budget, self.seed, self.name = work, settings, budget, seed, name
        self.tree = work / f"{settings.target}-b{budget}-s{seed}"

    def folder(self, row: str) -> Path:
        return self.work / f"{(self.name or row).replace(' ', '-').replace('+', '-')}-b{self.budget}-s{self.seed}"

    def result(self, row: str) -> Path:
        return self.folder(row) / "test.json"

    # The cache's folder names hold every setting their content depends on, so that whoever asks
    # for the same thing gets the same folder.
    def synth_path(self) -> Path:
        return CACHE / f"synth-{self.settings.pp_per_class}pc-allcls-s0{_tag(self.settings.synth_extra)}"

    def pp_path(self) -> Path:
        s = self.settings
        return CACHE / f"pp-{self.synth_path().name}-e{s.pp_epochs}-s{self.seed}{_tag(s.extra)}"

    def pseudo_path(self) -> Path:
        s = self.settings
        return CACHE / f"pseudo-{s.target}-b{self.budget}-s{self.seed}-{s.per_target}pt-s{self.seed}{_tag(s.pseudo_extra)}"

    def synth(self) -> Path:
        out, s = self.synth_path(), self.settings
        if made_seconds(out) is None:
            _made(out, run_tool("generate", "synth", "--out", out, "--per-class", s.pp_per_class, "--seed", 0,
                                *s.synth_extra, "--quiet"))
        return out

    def pp_run(self) -> Path:
        s = self.settings
        return _made(self.pp_path(), train_until_finished("pp", self.pp_path(), "--shards", self.synth(), "--epochs",
                                                          s.pp_epochs, "--seed", self.seed, *s.extra))

    def pseudo(self) -> Path:
        out, s = self.pseudo_path(), self.settings
        if made_seconds(out) is None:
            _made(out, run_tool("generate", "pseudo", "--target", self.exported(), "--out", out, "--per-target",
                                s.per_target, "--seed", self.seed, *s.pseudo_extra, "--quiet"))
        return out

    def command(self, row: str) -> list:
        data = ["--data", targets.training_part(self.tree)]
        return {
            "scratch": lambda: ["finetune", *data, "--init", "none"],
            "kd": lambda: ["kd", *data, "--teacher", SOURCE],
            "pp": lambda: ["finetune", *data, "--init", self.pp_run()],
            "pssl": lambda: ["pssl", *data, "--unlabeled", self.pseudo(), "--init", "none"],
            "pp+fixmatch": lambda: ["pssl", *data, "--unlabeled", self.pseudo(), "--init", self.pp_run()],
            "control": lambda: ["pssl", *data, "--unlabeled", self.pseudo(), "--init", self.pp_run()],
            "pp+uda": lambda: ["pssl", *data, "--unlabeled", self.pseudo(), "--init", self.pp_run(), "--algo", "uda"],
            "oracle": lambda: ["pssl", *data, "--unlabeled", self.tree / "unlabeled", "--init", self.pp_run()],
            "pp+extra": lambda: ["finetune", *data, "--init", self.pp_run(), "--extra-labeled", self.pseudo()],
            "source arch": lambda: ["finetune", *data, "--init", SOURCE],
        }[row]()

    def exported(self) -> Path:
        """The cell's labeled draw, made if missing."""
        targets.EXPORTS[self.settings.target](self.tree, self.budget, self.seed)
        return self.tree

    def run(self, row: str) -> None:
        self.exported()
        if row in PIXEL_ROWS:
            score = targets.pixel_floors(self.tree)[row]
            self.folder(row).mkdir(parents=True, exist_ok=True)
            self.result(row).write_text(json.dumps({"top1": score}))
            return
        out = self.folder(row)
        command, *args = self.command(row)
        own = self.settings.row_extra or dict(self.settings.row_flags).get(row) or SSL_FLAGS.get(row, ())
        done = train_until_finished(command, out, *args, "--seed", self.seed, *self.settings.extra, *own)
        if done is not None:
            (out / "wall.json").write_text(json.dumps({"seconds": done.seconds}))
        run_tool("train", "eval", "--run", out, "--data", self.tree, "--json", self.result(row))


@functools.cache
def kept() -> Kept:
    return Kept("reproduce")


def top1(work: Path, row: str, budget: int, seed: int) -> float | None:
    return kept().top1(Cell(work, FULL, budget, seed).result(row))


def run_cells(work: Path, settings: Settings, budgets: list[int], seeds: list[int], rows: list[str],
              max_minutes: float | None) -> None:
    """Every missing result, budget by budget, until --max-minutes."""
    start = time.monotonic()
    for budget in budgets:
        for seed in seeds:
            cell = Cell(work, settings, budget, seed)
            for row in rows:
                if cell.result(row).exists() or (work == WORK and top1(work, row, budget, seed) is not None):
                    continue
                if max_minutes is not None and time.monotonic() - start > 60 * max_minutes:
                    print(f"reproduce: --max-minutes {max_minutes} reached; rerun the same command to go on",
                          file=sys.stderr)
                    return
                cell.run(row)


def mask_rate(run_dir: Path) -> float | None:
    """The share of unlabeled images over FixMatch's threshold, averaged over the second half of a
    P-SSL run (None for other routes, and where runs/ lacks the run): how much of its unlabeled
    data the method actually trains on."""
    path = run_dir / "metrics.jsonl"
    rows = [r for r in read_jsonl(path) if "mask" in r] if path.exists() else []
    late = rows[len(rows) // 2:]
    return statistics.mean(r["mask"] for r in late) if late else None


def by_seed(work: Path, row: str, budget: int, seeds: list[int]) -> dict[int, float | None]:
    return {s: top1(work, row, budget, s) for s in seeds}


def scores(work: Path, row: str, budget: int, seeds: list[int]) -> list[float]:
    """Test top-1 of ROW at BUDGET for the seeds that have a result."""
    return [v for v in by_seed(work, row, budget, seeds).values() if v is not None]


def grid(work: Path) -> tuple[list[int], list[int], list[str]]:
    """Budgets, seeds and rows that have a result, in runs/ or kept."""
    for path in work.glob("*/test.json"):
        kept().top1(path)
    prefix = work.relative_to(RUNS).as_posix() + "/"
    parsed = [key[len(prefix):-len("/test.json")].rsplit("-b", 1) for key in kept().scores if key.startswith(prefix)]
    budgets = sorted({int(rest.split("-s")[0]) for _, rest in parsed})
    seeds = sorted({int(rest.split("-s")[1]) for _, rest in parsed})
    present = {Cell(work, FULL, 0, 0).folder(r).name.rsplit("-b", 1)[0]: r for r in PIXEL_ROWS + DEEP_ROWS}
    rows = [r for r in PIXEL_ROWS + DEEP_ROWS if r in {present.get(row) for row, _ in parsed}]
    return budgets, seeds, rows


def main_table(work: Path, budgets: list[int], seeds: list[int], rows: list[str]) -> str:
    body = []
    for row in rows:
        cells = []
        for b in budgets:
            values = scores(work, row, b, seeds)
            cells.append(f"{spread(values)} (n={len(values)})" if values else "—")
        body.append([LABELS[row], *cells])
    return table(["route", *(f"{b} labels/class" for b in budgets)], body)


def bar_chart(work: Path, budgets: list[int], seeds: list[int], rows: list[str], path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.8 / len(rows)
    for k, row in enumerate(rows):
        means, sds, xs = [], [], []
        for i, b in enumerate(budgets):
            values = scores(work, row, b, seeds)
            if values:
                xs.append(i + (k - len(rows) / 2 + 0.5) * width)
                means.append(statistics.mean(values))
                sds.append(statistics.stdev(values) if len(values) > 1 else 0)
        ax.bar(xs, means, width, yerr=sds, capsize=2, label=LABELS[row].strip("*"), color=f"C{k % 10}",
               hatch="//" if row in PIXEL_ROWS else None)
    ax.set_xticks(range(len(budgets)), [f"{b} labels/class" for b in budgets])
    ax.set_ylabel("digits test top-1 (mean ± sd over seeds)")
    lows = [statistics.mean(v) for r in rows for b in budgets if (v := scores(work, r, b, seeds))]
    ax.set_ylim(max(0, min(lows) - 0.1), 1)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7, ncol=2, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def reading(work: Path, budgets: list[int], seeds: list[int], rows: list[str]) -> str:
    """The method against each rival, budget by budget: the paired difference against its seed spread."""
    method = "pp+fixmatch"
    if method not in rows:
        return "The method's row has no result yet."
    lines = []
    for b in budgets:
        parts = []
        for rival in ("logreg", "svm", "scratch", "kd", "pp", "pssl"):
            if rival not in rows:
                continue
            diffs = list(paired(by_seed(work, method, b, seeds), by_seed(work, rival, b, seeds)).values())
            if not diffs:
                continue
            mean, name = statistics.mean(diffs), LABELS[rival].strip("*")
            if len(diffs) > 1:
                sd = statistics.stdev(diffs)
                parts.append(f"{mean:+.3f} over {name} (sd {sd:.3f}, n={len(diffs)}, "
                             f"{'beyond' if abs(mean) > sd else 'within'} the spread)")
            else:
                parts.append(f"{mean:+.3f} over {name} (one seed: no spread yet)")
        if not parts:
            continue
        gap = ""
        # Over the seeds that have all three, so that the three means are of the same labeled draws.
        common = [s for s in seeds if all(top1(work, r, b, s) is not None for r in ("pp", "oracle", method))]
        if common:
            pp, oracle, ours = (statistics.mean(top1(work, r, b, s) for s in common) for r in ("pp", "oracle", method))
            if oracle != pp:
                gap = (f"; over the {len(common)} seed(s) with all three, it closes {(ours - pp) / (oracle - pp):.0%} of "
                       f"the gap from PP alone ({pp:.3f}) to the oracle ({oracle:.3f})")
        masks = {r: [m for s in seeds if (m := mask_rate(Cell(work, FULL, b, s).folder(r))) is not None]
                 for r in ("pp+fixmatch", "oracle") if r in rows}
        mask = "; ".join(f"{LABELS[r].strip('*')} {statistics.mean(v):.2f}" for r, v in masks.items() if v)
        mask = f" FixMatch mask rate, second half of training: {mask}." if mask else ""
        lines.append(f"- {b} labels/class: PP + P-SSL (FixMatch) is {'; '.join(parts)}{gap}.{mask}")
    return "\n".join(lines)


def stage_times(work: Path, budgets: list[int], seeds: list[int], rows: list[str]) -> str:
    """Wall seconds of each stage, and what the shared cache saved: an artifact made once and used by
    N results saved N - 1 makings."""
    def uses(users: tuple[str, ...], seed: int, budget_list: list[int]) -> int:
        return sum(Cell(work, FULL, b, seed).result(r).exists() for r in users for b in budget_list)

    lines = []
    pps = {s: t for s in seeds if (t := made_seconds(Cell(work, FULL, 0, s).pp_path())) is not None}
    pseudos = {(b, s): t for b in budgets for s in seeds
               if (t := made_seconds(Cell(work, FULL, b, s).pseudo_path())) is not None}
    if (t := made_seconds(Cell(work, FULL, 0, 0).synth_path())) is not None:
        lines.append(f"- `ptgen synth`, {1000 * FULL.pp_per_class:,} images: {t:.0f} s, made once for the {len(pps)} pp "
                     f"runs here (and every other study using the cache): {t * max(0, len(pps) - 1):.0f} s saved.")
    if pps:
        saved = sum(t * max(0, uses(("pp", "pp+fixmatch", "pp+uda", "oracle"), s, budgets) - 1) for s, t in pps.items())
        lines.append(f"- `pttrain pp`, {FULL.pp_epochs} epochs: {statistics.mean(pps.values()):.0f} s a seed, made once "
                     f"for every row and budget that starts from it: {saved:.0f} s of pre-training saved.")
    if pseudos:
        saved = sum(t * max(0, uses(("pssl", "pp+fixmatch", "pp+uda"), s, [b]) - 1) for (b, s), t in pseudos.items())
        lines.append(f"- `ptgen pseudo`, {FULL.per_target} a labeled image: {min(pseudos.values()):.0f}-"
                     f"{max(pseudos.values()):.0f} s a labeled draw, made once for its P-SSL rows: {saved:.0f} s saved.")
    for row in rows:
        walls = [read_json(w)["seconds"] for b in budgets for s in seeds
                 if (w := Cell(work, FULL, b, s).folder(row) / "wall.json").exists()]
        if walls:
            lines.append(f"- {LABELS[row].strip('*')}: {statistics.mean(walls):.0f} s a run (mean of {len(walls)}).")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> None:
    unknown = [r for r in args.rows if r not in PIXEL_ROWS + DEEP_ROWS]
    if unknown:
        raise SystemExit(f"reproduce: --rows: unknown row {unknown[0]!r}")
    run_cells(WORK, FULL, args.budgets, args.seeds, args.rows, args.max_minutes)


def report(args: argparse.Namespace) -> None:
    budgets, seeds, rows = grid(WORK)
    if not rows:
        raise SystemExit(f"no results under {WORK} or in {kept().path}: run `python -m benchmarks.reproduce run` first")
    bar_chart(WORK, budgets, seeds, rows, PLOT)
    md = ("Command: `python -m benchmarks.reproduce run --budgets 2,5,10 --seeds 0,1,2` (it skips finished "
          "cells), then `python -m benchmarks.reproduce report`. Source: the built-in world; target: "
          "`pttrain data digits --labels-per-class K --seed S`, resnet18; every deep route at pttrain's defaults "
          f"(its epochs raised to at least `--min-steps` steps); PP: {FULL.pp_epochs} epochs on "
          f"{FULL.pp_per_class} synthetic images a class; pseudo: {FULL.per_target} a labeled image, "
          f"`ptgen pseudo {' '.join(map(str, FULL.pseudo_extra))}` (the soft label over all classes, the default "
          "when the table was made; the default is now `--top-k 1`, chosen in \"Ablations\"); P-SSL and the oracle: "
          f"`pttrain pssl {' '.join(map(str, SSL_FLAGS['pp+fixmatch']))}` (UDA: `--threshold "
          f"{SSL_FLAGS['pp+uda'][1]}`). Test top-1 on the "
          "899 fixed test digits, mean ± sd over seeds (n = seeds with a result).\n\n"
          + main_table(WORK, budgets, seeds, rows)
          + f"\n\n![main comparison]({PLOT.relative_to(ROOT / 'docs')})\n\n"
          "Paired differences (same labeled draw and seed):\n\n" + reading(WORK, budgets, seeds, rows)
          + "\n\nWall time on this machine (2 cores), as recorded by the run that made each artifact; up to "
          "three single-threaded studies ran at once, so read these as upper bounds (the "
          "uncontended rates are in the throughput sections above):\n\n" + stage_times(WORK, budgets, seeds, rows))
    write_section("reproduce", md, args.doc)


def quick(_: argparse.Namespace) -> None:
    """One budget, one seed, the main rows and the look-alike route, short schedules: a first table
    for a newcomer."""
    start = time.monotonic()
    run_cells(QUICK_WORK, QUICK, [5], [0], list(QUICK_ROWS), None)
    cell = Cell(QUICK_WORK, QUICK, 5, 0)
    grown = Cell(QUICK_WORK, QUICK_LOOKALIKES, 5, 0, name="lookalikes")
    if not grown.result("pp+extra").exists():
        grown.run("pp+extra")
    rows = [[LABELS[r].strip("*"), f"{read_json(cell.result(r))['top1']:.3f}"] for r in QUICK_ROWS]
    rows.insert(QUICK_ROWS.index("oracle"), [LOOKALIKES_LABEL, f"{read_json(grown.result('pp+extra'))['top1']:.3f}"])
    print(f"\nreproduce quick: digits, 5 labels/class, seed 0, runs of {QUICK.extra[1]} steps, PP on "
          f"{QUICK.pp_per_class} images a class for {QUICK.pp_epochs} epochs ({(time.monotonic() - start) / 60:.1f} min; "
          f"the full study: `python -m benchmarks.reproduce run`)")
    for row, flags in QUICK.row_flags:
        print(f"{LABELS[row].strip('*')}: pttrain pssl {' '.join(map(str, flags))}")
    print(f"{LOOKALIKES_LABEL}: ptgen pseudo {' '.join(map(str, QUICK_LOOKALIKES.pseudo_extra))}, then pttrain "
          f"finetune --extra-labeled PSEUDO {' '.join(map(str, QUICK_LOOKALIKES.row_extra))}")
    print()
    print(table(["route", "test top-1"], rows))


def main() -> None:
    cli(__doc__,
        run=(run, [flag("--budgets", type=ints, default=[2, 5, 10], help="Labeled images a class."),
                   flag("--seeds", type=ints, default=[0, 1, 2]),
                   flag("--rows", type=words, default=list(PIXEL_ROWS + DEEP_ROWS),
                        help=f"Comma-separated, of: {', '.join(PIXEL_ROWS + DEEP_ROWS)}."),
                   flag("--max-minutes", type=float, help="Start no new cell after this long.")]),
        report=(report, [doc_flag()]),
        quick=(quick, []))


if __name__ == "__main__":
    main()
