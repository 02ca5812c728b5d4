"""Does the method work here? The paper's comparison on the digits target, rebuilt from results files.

Source: the built-in world (its glyph generator and classifier). Target: `pttrain data digits` with
K labeled images a class (K = 2, 5, 10; 899 test images), target architecture resnet18, which is
not the source classifier's. A seed draws the labeled images and seeds every run of its cells;
the pp run of a seed is shared by that seed's budgets, the synthetic shards by every seed, and
the pseudo shards of a labeled draw by every row that uses them (benchmarks/sources.py).

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

    python -m benchmarks.reproduce run [--budgets 2,5,10] [--seeds 0,1,2] [--rows ...] [--max-minutes 55]
    python -m benchmarks.reproduce report     # table, bar chart and reading into docs/results.md
    python -m benchmarks.reproduce --quick    # one budget, one seed, the main rows, short runs: a table in minutes

`run` skips every cell whose result exists and stops starting new cells after --max-minutes, so the
table is built across sittings; `report` needs only the results files.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks import sources, targets
from benchmarks.common import ROOT, pyplot, read_json, read_jsonl, run_tool, spread, table, train_until_finished, write_section

WORK = ROOT / "runs" / "reproduce"
QUICK_WORK = ROOT / "runs" / "reproduce-quick"
PLOT = ROOT / "docs" / "reproduce.png"
SOURCE = "builtin:glyphs-1k"


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
    """pttrain pssl's flags, each named (its FixMatch defaults unless given), so that a result never
    silently stands for a default that has since changed."""
    return ("--threshold", threshold, "--unlabeled-weight", weight, "--bn-stats", bn_stats, "--batch-size", batch_size,
            "--ratio", ratio)


# The SSL rows' own flags, as the table was made (UDA's published threshold is 0.8).
SSL_FLAGS = {"pssl": ssl_flags(), "pp+fixmatch": ssl_flags(), "oracle": ssl_flags(), "pp+uda": ssl_flags(threshold=0.8),
             "control": ssl_flags(weight=0)}


def current_pssl(weight: float = 1, guard: str | None = None) -> tuple:
    """pttrain pssl's defaults, each named: finetune's labeled batch, ratio 1 and the default guard
    (benchmarks/pssl_guard.py measured them); the control ignores its pseudo samples, so it takes no guard."""
    from train.guard import DEFAULT_GUARD

    guard = guard or (DEFAULT_GUARD if weight else "none")
    return (*ssl_flags(weight=weight, batch_size=64, ratio=1), "--guard", guard)

# PCS as the table was made: the soft label over all classes, ptgen pseudo's default until the
# ablations chose --top-k 1; named, so that the table keeps its meaning.
FULL = Settings(pseudo_extra=("--top-k", "all", "--temperature", 1))
QUICK = Settings(pp_per_class=3, pp_epochs=3, per_target=5, extra=("--min-steps", 100),
                 pseudo_extra=("--top-k", 1, "--temperature", 1),
                 row_flags=(("pp+fixmatch", current_pssl()), ("control", current_pssl(weight=0))))

PIXEL_ROWS = ("logreg", "svm")
DEEP_ROWS = ("scratch", "kd", "pp", "pssl", "pp+fixmatch", "pp+uda", "oracle", "source arch", "control")
QUICK_ROWS = ("logreg", "svm", "scratch", "kd", "pp", "control", "pp+fixmatch")
LABELS = {"logreg": "logistic regression, pixels", "svm": "RBF SVM, pixels", "scratch": "scratch", "kd": "KD",
          "pp": "PP -> finetune", "pssl": "P-SSL from scratch", "pp+fixmatch": "**PP + P-SSL (FixMatch)**",
          "pp+uda": "PP + P-SSL (UDA)", "oracle": "oracle: PP + SSL on real unlabeled",
          "source arch": "reference: source classifier finetuned", "control": "P-SSL at weight 0 (control)"}


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

    def pp_run(self) -> Path:
        s = self.settings
        return sources.pp(sources.synth(s.pp_per_class, 0, None, *s.synth_extra), s.pp_epochs, self.seed, *s.extra)

    def pp_path(self) -> Path:
        s = self.settings
        return sources.pp_path(sources.synth_path(s.pp_per_class, 0, None, *s.synth_extra), s.pp_epochs, self.seed,
                               *s.extra)

    def pseudo(self) -> Path:
        return sources.pseudo(self.tree, *self._pseudo_key())

    def pseudo_path(self) -> Path:
        return sources.pseudo_path(*self._pseudo_key())

    def _pseudo_key(self) -> tuple:
        s = self.settings
        return f"{s.target}-b{self.budget}-s{self.seed}", s.per_target, self.seed, *s.pseudo_extra

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


def run_cells(work: Path, settings: Settings, budgets: list[int], seeds: list[int], rows: list[str],
              max_minutes: float | None) -> bool:
    """Every missing result, budget by budget; False when --max-minutes stopped it early."""
    start = time.monotonic()
    for budget in budgets:
        for seed in seeds:
            cell = Cell(work, settings, budget, seed)
            for row in rows:
                if cell.result(row).exists():
                    continue
                if max_minutes is not None and time.monotonic() - start > 60 * max_minutes:
                    print(f"reproduce: --max-minutes {max_minutes} reached; rerun the same command to go on",
                          file=sys.stderr)
                    return False
                cell.run(row)
    return True


def mask_rate(run_dir: Path) -> float | None:
    """The share of unlabeled images over FixMatch's threshold, averaged over the second half of a
    P-SSL run (None for other routes): how much of its unlabeled data the method actually trains on."""
    path = run_dir / "metrics.jsonl"
    rows = [r for r in read_jsonl(path) if "mask" in r] if path.exists() else []
    late = rows[len(rows) // 2:]
    return statistics.mean(r["mask"] for r in late) if late else None


def top1(work: Path, row: str, budget: int, seed: int) -> float | None:
    path = Cell(work, FULL, budget, seed).result(row)
    return read_json(path)["top1"] if path.exists() else None


def scores(work: Path, row: str, budget: int, seeds: list[int]) -> list[float]:
    """Test top-1 of ROW at BUDGET for the seeds that have a result."""
    return [v for s in seeds if (v := top1(work, row, budget, s)) is not None]


def grid(work: Path) -> tuple[list[int], list[int], list[str]]:
    """Budgets, seeds and rows present in WORK's results."""
    found = [p.parent.name for p in work.glob("*/test.json")]
    parsed = [name.rsplit("-b", 1) for name in found]
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


def paired(work: Path, a: str, b: str, budget: int, seeds: list[int]) -> tuple[float, float, int]:
    """Mean and sd over seeds of A - B where both have a result."""
    pairs = [(top1(work, a, budget, s), top1(work, b, budget, s)) for s in seeds]
    diffs = [x - y for x, y in pairs if x is not None and y is not None]
    if not diffs:
        return float("nan"), float("nan"), 0
    return statistics.mean(diffs), statistics.stdev(diffs) if len(diffs) > 1 else 0.0, len(diffs)


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
            mean, sd, n = paired(work, method, rival, b, seeds)
            if n > 1:
                verdict = "beyond" if abs(mean) > sd else "within"
                parts.append(f"{mean:+.3f} over {LABELS[rival].strip('*')} (sd {sd:.3f}, n={n}, {verdict} the spread)")
            elif n:
                parts.append(f"{mean:+.3f} over {LABELS[rival].strip('*')} (one seed: no spread yet)")
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
    synth = sources.synth_path(FULL.pp_per_class)
    pps = {s: p for s in seeds if sources.made(p := Cell(work, FULL, 0, s).pp_path())}
    pseudos = {(b, s): p for b in budgets for s in seeds if sources.made(p := Cell(work, FULL, b, s).pseudo_path())}
    if sources.made(synth):
        t = sources.seconds(synth)
        lines.append(f"- `ptgen synth`, {1000 * FULL.pp_per_class:,} images: {t:.0f} s, made once for the {len(pps)} pp "
                     f"runs here (and every other study using the cache): {t * max(0, len(pps) - 1):.0f} s saved.")
    if pps:
        times = {s: sources.seconds(p) for s, p in pps.items()}
        saved = sum(t * max(0, uses(("pp", "pp+fixmatch", "pp+uda", "oracle"), s, budgets) - 1) for s, t in times.items())
        lines.append(f"- `pttrain pp`, {FULL.pp_epochs} epochs: {statistics.mean(times.values()):.0f} s a seed, made once "
                     f"for every row and budget that starts from it: {saved:.0f} s of pre-training saved.")
    if pseudos:
        times = {key: sources.seconds(p) for key, p in pseudos.items()}
        saved = sum(t * max(0, uses(("pssl", "pp+fixmatch", "pp+uda"), s, [b]) - 1) for (b, s), t in times.items())
        lines.append(f"- `ptgen pseudo`, {FULL.per_target} a labeled image: {min(times.values()):.0f}-"
                     f"{max(times.values()):.0f} s a labeled draw, made once for its P-SSL rows: {saved:.0f} s saved.")
    for row in rows:
        walls = [read_json(w)["seconds"] for b in budgets for s in seeds
                 if (w := Cell(work, FULL, b, s).folder(row) / "wall.json").exists()]
        if walls:
            lines.append(f"- {LABELS[row].strip('*')}: {statistics.mean(walls):.0f} s a run (mean of {len(walls)}).")
    return "\n".join(lines)


def report(work: Path = WORK) -> str:
    budgets, seeds, rows = grid(work)
    if not rows:
        raise SystemExit(f"no results under {work}: run `python -m benchmarks.reproduce run` first")
    bar_chart(work, budgets, seeds, rows, PLOT)
    md = ("### Does the method work? The main comparison on digits\n\n"
          "Command: `python -m benchmarks.reproduce run --budgets 2,5,10 --seeds 0,1,2` (across sittings: it skips "
          "finished cells), then `python -m benchmarks.reproduce report`. Source: the built-in world; target: "
          "`pttrain data digits --labels-per-class K --seed S`, resnet18; every deep route at pttrain's defaults "
          f"(its epochs raised to at least `--min-steps` steps); PP: {FULL.pp_epochs} epochs on "
          f"{FULL.pp_per_class} synthetic images a class; pseudo: {FULL.per_target} a labeled image, "
          f"`ptgen pseudo {' '.join(map(str, FULL.pseudo_extra))}` (the soft label over all classes, the default "
          "when the table was made; the default is now `--top-k 1`, chosen in \"Ablations\"); P-SSL and the oracle: "
          f"`pttrain pssl {' '.join(map(str, SSL_FLAGS['pp+fixmatch']))}` (UDA: `--threshold "
          f"{SSL_FLAGS['pp+uda'][1]}`). Test top-1 on the "
          "899 fixed test digits, mean ± sd over seeds (n = seeds with a result).\n\n"
          + main_table(work, budgets, seeds, rows)
          + f"\n\n![main comparison]({PLOT.relative_to(ROOT / 'docs')})\n\n"
          "Paired differences (same labeled draw and seed):\n\n" + reading(work, budgets, seeds, rows)
          + "\n\nWall time on this machine (2 cores), as recorded by the sitting that made each artifact; the "
          "sittings ran up to three single-threaded studies at once, so read these as upper bounds (the "
          "uncontended rates are in the throughput sections above):\n\n" + stage_times(work, budgets, seeds, rows))
    write_section("reproduce", md)
    return md


def quick() -> None:
    """One budget, one seed, the main rows, short schedules: a first table for a newcomer."""
    start = time.monotonic()
    run_cells(QUICK_WORK, QUICK, [5], [0], list(QUICK_ROWS), None)
    rows = [[LABELS[r].strip("*"), f"{read_json(Cell(QUICK_WORK, QUICK, 5, 0).result(r))['top1']:.3f}"] for r in QUICK_ROWS]
    print(f"\nreproduce --quick: digits, 5 labels/class, seed 0, runs of {QUICK.extra[1]} steps, PP on "
          f"{QUICK.pp_per_class} images a class for {QUICK.pp_epochs} epochs ({(time.monotonic() - start) / 60:.1f} min; "
          f"the full study: `python -m benchmarks.reproduce run`)")
    for row, flags in QUICK.row_flags:
        print(f"{LABELS[row].strip('*')}: pttrain pssl {' '.join(map(str, flags))}")
    print()
    print(table(["route", "test top-1"], rows))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="A small table in minutes (runs/reproduce-quick).")
    sub = ap.add_subparsers(dest="cmd")
    r = sub.add_parser("run")
    ints = lambda s: [int(x) for x in s.split(",")]  # noqa: E731
    r.add_argument("--budgets", type=ints, default=[2, 5, 10], help="Labeled images a class.")
    r.add_argument("--seeds", type=ints, default=[0, 1, 2])
    r.add_argument("--rows", type=lambda s: s.split(","), default=list(PIXEL_ROWS + DEEP_ROWS),
                   help=f"Comma-separated, of: {', '.join(PIXEL_ROWS + DEEP_ROWS)}.")
    r.add_argument("--max-minutes", type=float, help="Start no new cell after this long (a sitting).")
    sub.add_parser("report")
    args = ap.parse_args()
    if args.quick:
        quick()
    elif args.cmd == "run":
        unknown = [r for r in args.rows if r not in PIXEL_ROWS + DEEP_ROWS]
        if unknown:
            ap.error(f"--rows: unknown row {unknown[0]!r}")
        run_cells(WORK, FULL, args.budgets, args.seeds, args.rows, args.max_minutes)
    elif args.cmd == "report":
        print(report())
    else:
        ap.error("give --quick, run or report")


if __name__ == "__main__":
    main()
