"""Ablations of the method on digits: one setting varied at a time around the defaults, same seeds as
the main comparison (benchmarks/reproduce.py), at one labeled budget (5 a class unless --budget).

  top_k        PCS top-k in {1, 5, all}; PP + P-SSL (FixMatch)
  temperature  PCS temperature T in {0.5, 1, 2} at the chosen top-k; PP + P-SSL (FixMatch)
  pcs          the condition of the pseudo samples: the soft label (PCS), its argmax only (--top-k 1),
               or a uniformly random source class a sample (--condition random); PP + P-SSL (FixMatch)
  bn_stats     SSL with batch norm's running statistics from labeled and unlabeled images (FixMatch's
               one pass) or from the labeled images alone (--bn-stats labeled), on pseudo samples and
               on the real unlabeled digits (the oracle)
  fixmatch     FixMatch's threshold in {0.8, 0.95, 0.99} and unlabeled weight in {0, 0.5, 1, 2}; PP + P-SSL.
               Weight 0 is the control: pssl's own schedule with the pseudo samples ignored
  pssl_batch   P-SSL's labeled batch: 16 labeled + 112 pseudo (FixMatch's ratio 7) against 64 labeled
               (pp -> finetune's batch) + 128 pseudo, at unlabeled weight 1 and 0
  coverage     the main rows on the lookalikes target (benchmarks/targets.py): 10 of the source
               world's own letter classes in the digits' coarse look, where digits are classes the
               source world does not hold
  coverage_sharp  the same on lookalikes-sharp: those letters as the source world renders them
  kd           KD's alpha in {0.5, 1, 2} and T in {2, 4, 8}
  pp_size      synthetic images a source class in {1, 3, 10, 30} (5 epochs), then PP -> finetune
  pp_format    the PP shards' image format: PNG (lossless, what --image-format auto writes for the
               built-in world), JPEG at quality 95 and 90, WebP at 95; then PP -> finetune
  filtering    PP shards kept by the source classifier at P >= 0.5 and 0.8 (ptgen synth --classifier
               --min-confidence), against no filter, all at the generator's guidance 2 and on the classes a
               probe finds it can serve (filter_classes); then PP -> finetune on digits
               (filtering_lookalikes: on lookalikes); the report gives the candidates drawn a kept image
  guidance     PP shards at guidance 2 against a scale drawn per sample in [1, 3]; then PP -> finetune on
               digits (guidance_lookalikes: on lookalikes)
  pp_epochs    PP epochs in {2, 5, 15} (10 images a class), then PP -> finetune; in both, pp keeps
               its --min-steps floor like every route, so short runs are lifted to 300 steps (the
               report gives each pp run's steps)

Variants of a product default (PCS, FixMatch, KD) name every value explicitly, so a result never
stands for a default that has since changed; the pp groups' middle variant (the study's own pp
settings) is the main comparison's cell. Every cell is skipped when its result exists.

    python -m benchmarks.ablations run [--groups pcs,kd,...] [--seeds 0,1,2] [--budget 5] [--max-minutes 55]
    python -m benchmarks.ablations report                       # the whole study: one section, one plot
    python -m benchmarks.ablations report --groups pp_format    # a group in a section of its own
    ... report [--doc FILE|-]                                   # into another file, or to stdout

Every cell's top-1, and each pp run's schedule, is also kept in benchmarks/results/ablations.json
(tracked), so that a group's seeds add up across machines and `report --groups pp_format` rebuilds
from that file alone; `run` skips what is kept there too.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Callable

from benchmarks import reproduce, targets
from benchmarks.common import (
    ROOT, RUNS, Kept, cli, describe_paired, doc_flag, flag, ints, paired, pyplot, read_json, spread, table, words,
    write_section,
)
from benchmarks.reproduce import FULL, SOURCE, Cell, Settings, mask_rate, ssl_flags

WORK = RUNS / "ablations"
PLOT = ROOT / "docs" / "ablations.png"


@dataclass(frozen=True)
class Variant:
    label: str
    row: str  # the main comparison's row it varies
    change: dict  # Settings fields that differ from FULL; empty for the defaults

    def cell(self, budget: int, seed: int) -> Cell:
        if not self.change:
            return Cell(reproduce.WORK, FULL, budget, seed)
        settings: Settings = dataclasses.replace(FULL, **self.change)
        # Named by what changes, not by the label, so that two groups asking for the same run share it.
        tag = "-".join(f"{k}{''.join(map(str, v)) if isinstance(v, tuple) else v}" for k, v in sorted(self.change.items()))
        return Cell(WORK, settings, budget, seed,
                    name=f"{self.row}-{reproduce.short_name(tag.replace('--', '').replace('_', ''))}")


def pseudo(label: str, *flags, on: dict | None = None, **fixmatch_flags) -> Variant:
    """A P-SSL variant: pseudo shards made with FLAGS, trained with FixMatch's FIXMATCH_FLAGS (ON: other
    Settings fields, such as the target)."""
    return Variant(label, "pp+fixmatch", {**(on or {}), "pseudo_extra": flags, "row_extra": ssl_flags(**fixmatch_flags)})


def kd(label: str, alpha: float = 1, temperature: float = 4) -> Variant:
    return Variant(label, "kd", {"row_extra": ("--alpha", alpha, "--kd-temperature", temperature)})


def oracle(label: str, on: dict | None = None, **fixmatch_flags) -> Variant:
    return Variant(label, "oracle", {**(on or {}), "row_extra": ssl_flags(**fixmatch_flags)})


ALL = ("--top-k", "all", "--temperature", 1)  # the paper's soft label, the main comparison's PCS


def coverage(target: str) -> list[Variant]:
    """The main rows on TARGET, with the argmax variant and the weight-0 control."""
    on = {"target": target}
    return [Variant("logistic regression, pixels", "logreg", on), Variant("scratch", "scratch", on),
            Variant("PP -> finetune", "pp", on), pseudo("PP + P-SSL", *ALL, on=on),
            pseudo("PP + P-SSL, argmax (top-k 1)", "--top-k", 1, "--temperature", 1, on=on),
            pseudo("PP + P-SSL, weight 0 (control)", *ALL, on=on, weight=0), oracle("oracle (real unlabeled)", on=on)]


# The built-in generator's own guidance, named, so that these groups' PP shards are made and
# trained by the code they measure rather than taken from the main comparison's cache.
FIXED_GUIDANCE = ("--guidance", 2)


# Some glyph classes the generator draws so that its own classifier rarely recognises them: a filter
# at any useful P would stop at those (ptgen synth stops a class that cannot fill its quota). The
# filtering groups therefore train on the classes whose 3 probe samples all reach PROBE_FLOOR, the
# unfiltered variant included; `filter_classes` says how they were found.
PROBE_FLOOR = 0.7


def filter_classes() -> str:
    """--class-ids of the classes the filter can serve: from `ptgen synth --per-class 3` scored by
    the source classifier at --min-confidence 0.001 (which keeps every sample and records its
    confidence), those whose every sample reaches PROBE_FLOOR; made once and kept."""
    key = "filter_classes"
    if key not in kept().scores:
        import pyarrow.parquet as pq

        probe = reproduce.CACHE / "filter-probe"
        if reproduce.made_seconds(probe) is None:
            reproduce.run_tool("generate", "synth", "--out", probe, "--per-class", 3, "--seed", 0, "--classifier",
                               SOURCE, "--min-confidence", 0.001, "--quiet")
            (probe / reproduce.MADE).write_text("{}")
        rows = pq.read_table(probe / "manifest.parquet", columns=["label", "confidence"]).to_pylist()
        lowest: dict[int, float] = {}
        for row in rows:
            lowest[row["label"]] = min(lowest.get(row["label"], 1.0), row["confidence"])
        kept().update({key: [c for c in sorted(lowest) if lowest[c] >= PROBE_FLOOR]})
    return ",".join(map(str, kept().scores[key]))


def filtering(target: str = "digits") -> list[Variant]:
    """PP -> finetune on shards kept by the source classifier at two levels of P, against none, on
    the classes of `filter_classes`."""
    on, classes = {"target": target}, ("--class-ids", filter_classes())
    return [Variant("no filter", "pp", {**on, "synth_extra": (*FIXED_GUIDANCE, *classes)})] + [
        Variant(f"P >= {p}", "pp", {**on, "synth_extra": (*FIXED_GUIDANCE, *classes, "--classifier", SOURCE,
                                                           "--min-confidence", p)}) for p in (0.5, 0.8)]


@functools.cache
def source_guidance() -> float:
    """The built-in generator's own guidance, loaded once however often the groups are listed."""
    from generate.models import load_generator

    return load_generator(SOURCE).defaults.guidance


def guidance(target: str = "digits") -> list[Variant]:
    """PP -> finetune on shards sampled at the generator's guidance 2, against a scale drawn per sample.
    While 2 is the generator's own default its flag is left out: the same bytes, so the fixed variant
    is the main comparison's shards and pp runs, made once."""
    on = {"target": target}
    fixed = {} if source_guidance() == 2 else {"synth_extra": FIXED_GUIDANCE}
    return [Variant("guidance 2", "pp", {**on, **fixed}),
            Variant("guidance 1:3 a sample", "pp", {**on, "synth_extra": ("--guidance", "1:3")})]


# The PCS top-k at which the temperature is varied, and the soft label of the `pcs` group: a soft
# label kept to a few classes (at top-k 1, the default, the temperature changes nothing).
CHOSEN_TOP_K = 5

# Every variant of a setting that pttrain/ptgen has a default for names its value explicitly, so that
# a result never silently stands for a default that has since changed (--condition random ignores
# PCS's top-k and temperature).
# A group's variants, or what makes them where that needs a run first (filter_classes).
GROUPS: dict[str, tuple[str, list[Variant] | Callable[[], list[Variant]]]] = {
    "top_k": ("PCS top-k (T = 1)", [pseudo(f"k={k}", "--top-k", k, "--temperature", 1) for k in (1, 5, "all")]),
    "temperature": (f"PCS temperature T (top-k {CHOSEN_TOP_K})", [
        pseudo(f"T={t}", "--top-k", CHOSEN_TOP_K, "--temperature", t) for t in (0.5, 1, 2)]),
    "pcs": ("condition of the pseudo samples", [
        pseudo(f"soft label, top-{CHOSEN_TOP_K}", "--top-k", CHOSEN_TOP_K, "--temperature", 1),
        pseudo("soft label, all classes", *ALL),
        pseudo("argmax only", "--top-k", 1, "--temperature", 1),
        pseudo("random source classes", "--condition", "random")]),
    "bn_stats": ("batch-norm statistics in SSL", [
        pseudo("pseudo, mixed (FixMatch's one pass)", *ALL, bn_stats="mixed"),
        pseudo("pseudo, labeled only", *ALL),
        oracle("real unlabeled, mixed", bn_stats="mixed"),
        oracle("real unlabeled, labeled only")]),
    "fixmatch": ("FixMatch threshold and unlabeled weight", [
        pseudo("weight=0 (control)", *ALL, weight=0)]
        + [pseudo(f"threshold={t}", *ALL, threshold=t) for t in (0.8, 0.95, 0.99)]
        + [pseudo(f"weight={w}", *ALL, weight=w) for w in (0.5, 2)]),
    "pssl_batch": ("P-SSL's labeled batch (PP + P-SSL, FixMatch)", [
        pseudo(f"{b} labeled + {b * r} pseudo, weight {w}", *ALL, batch_size=b, ratio=r, weight=w)
        for b, r in ((16, 7), (64, 2)) for w in (1, 0)]),
    "coverage": ("lookalikes: the source world's letters in the digits' coarse look", coverage("lookalikes")),
    "coverage_sharp": ("lookalikes-sharp: the source world's letters as it renders them",
                       coverage("lookalikes-sharp")),
    "kd": ("KD alpha and temperature", [kd(f"alpha={a}", alpha=a) for a in (0.5, 1, 2)]
           + [kd(f"T={t}", temperature=t) for t in (2, 8)]),
    "pp_size": ("synthetic images a source class for PP", [
        Variant(f"{n}/class", "pp", {} if n == FULL.pp_per_class else {"pp_per_class": n}) for n in (1, 3, 10, 30)]),
    "pp_format": ("image format of the PP shards", [Variant("png", "pp", {})] + [
        Variant(f"{fmt} q{q}", "pp", {"synth_extra": ("--image-format", fmt, "--quality", q)})
        for fmt, q in (("jpg", 95), ("jpg", 90), ("webp", 95))]),
    "filtering": ("PP shards filtered by the source classifier (digits)", filtering),
    "filtering_lookalikes": ("PP shards filtered by the source classifier (lookalikes)",
                             functools.partial(filtering, "lookalikes")),
    "guidance": ("guidance of the PP shards (digits)", guidance),
    "guidance_lookalikes": ("guidance of the PP shards (lookalikes)", functools.partial(guidance, "lookalikes")),
    "pp_epochs": ("PP epochs", [
        Variant(f"{e} epochs", "pp", {} if e == FULL.pp_epochs else {"pp_epochs": e}) for e in (2, 5, 15)]),
}


def run(args: argparse.Namespace) -> None:
    start = time.monotonic()
    for group in args.groups:
        for seed in args.seeds:
            for variant in variants_of(group):
                cell = variant.cell(args.budget, seed)
                if top1(variant, args.budget, seed) is not None:
                    continue
                if args.max_minutes is not None and time.monotonic() - start > 60 * args.max_minutes:
                    print(f"ablations: --max-minutes {args.max_minutes} reached; rerun the same command to go on",
                          file=sys.stderr)
                    return
                cell.run(variant.row)


def variants_of(group: str) -> list[Variant]:
    variants = GROUPS[group][1]
    return variants() if callable(variants) else variants


@functools.cache
def kept() -> Kept:
    return Kept("ablations")


def top1(variant: Variant, budget: int, seed: int) -> float | None:
    """The cell's test top-1, from its run (and kept) or, where the run is gone, from the kept file."""
    return kept().top1(variant.cell(budget, seed).result(variant.row))


def paired_lines(variants: list[Variant], args: argparse.Namespace,
                 rows: tuple[str, ...] = ("pp+fixmatch", "oracle")) -> str:
    """Each variant of ROWS against the group's first PP -> finetune variant (for a coverage
    group PP -> finetune itself, for pp_format the PNG shards) on the same draws."""
    base = next(v for v in variants if v.row == "pp")
    scores = {v.label: {s: top1(v, args.budget, s) for s in args.seeds} for v in variants}
    out = [f"{v.label} {describe_paired(diffs)}" for v in variants
           if v is not base and v.row in rows and (diffs := paired(scores[v.label], scores[base.label]))]
    return f"Paired against {base.label}, seed by seed: " + "; ".join(out) + "." if out else ""


def pp_schedule(variant: Variant, budget: int, seeds: list[int]) -> dict | None:
    """How the first of SEEDS with a record trained the variant's pp run ({"steps", "epochs_run"}): from
    its train.json under runs/ (and kept, like the scores), else from the kept file."""
    for seed in seeds:
        record = variant.cell(budget, seed).pp_path() / "train.json"
        key = record.relative_to(RUNS).as_posix()
        if record.exists():
            r = read_json(record)
            kept().update({key: {"steps": r["steps"], "epochs_run": r["epochs_run"]}})
        if key in kept().scores:
            return kept().scores[key]
    return None


def pp_schedules(variants: list[Variant], args: argparse.Namespace) -> str:
    """How long each variant's pp run trained: pp's --min-steps floor lifts short runs to the same
    number of steps as every other route, so a variant's epochs alone can mislead."""
    out = [f"{v.label}: {r['steps']} steps ({r['epochs_run']} epochs)" for v in variants
           if (r := pp_schedule(v, args.budget, args.seeds)) is not None]
    return "The pp runs, as they trained: " + "; ".join(out) + "." if out else ""


def filtering_cost(variants: list[Variant], args: argparse.Namespace) -> str:
    """Candidates drawn a kept image, and the kept images' mean confidence, from each filtered
    variant's PP shards (the manifest's `candidates` and `confidence`)."""
    import pyarrow.parquet as pq

    out = []
    for v in variants:
        folder = v.cell(args.budget, args.seeds[0]).synth_path()
        key = f"cache/{folder.name}/filtering"
        manifest = folder / "manifest.parquet"
        if manifest.exists() and "candidates" in pq.read_schema(manifest).names:
            rows = pq.read_table(manifest, columns=["candidates", "confidence"]).to_pydict()
            summary = {"candidates_per_kept": sum(rows["candidates"]) / len(rows["candidates"]),
                       "mean_confidence": statistics.mean(rows["confidence"])}
            kept().update({key: summary})
        if (summary := kept().scores.get(key)) is not None:
            out.append(f"{v.label}: {summary['candidates_per_kept']:.2f} candidates a kept image, "
                       f"kept confidence {summary['mean_confidence']:.3f} on average")
    classes = len(kept().scores["filter_classes"])
    return f"Cost of the filter, over the {classes} classes every variant samples: " + "; ".join(out) + "." if out else ""


def group_part(group: str, args: argparse.Namespace) -> tuple[str, list[float], list[float]]:
    """A group's table (and, for its kind, the pp schedules or the paired lines), with each
    variant's mean and sd for the plot."""
    title, variants = GROUPS[group][0], variants_of(group)
    rows, means, sds = [], [], []
    for v in variants:
        values = [t for s in args.seeds if (t := top1(v, args.budget, s)) is not None]
        masks = [m for s in args.seeds if (m := mask_rate(v.cell(args.budget, s).folder(v.row))) is not None]
        rows.append([v.label, reproduce.LABELS[v.row].strip("*"), spread(values) if values else "—", len(values),
                     f"{statistics.mean(masks):.2f}" if masks else "—"])
        means.append(statistics.mean(values) if values else float("nan"))
        sds.append(statistics.stdev(values) if len(values) > 1 else 0.0)
    header = ["variant", "route", "test top-1", "seeds", "FixMatch mask rate"]
    if all(row[-1] == "—" for row in rows):  # no P-SSL run in the group
        header, rows = header[:-1], [row[:-1] for row in rows]
    parts = [f"{title}:", table(header, rows)]
    shard_groups = ("pp_format", "filtering", "filtering_lookalikes", "guidance", "guidance_lookalikes")
    if group in ("pp_size", "pp_epochs", *shard_groups):
        parts.append(pp_schedules(variants, args))
    if group in shard_groups:
        parts.append(paired_lines(variants, args, rows=("pp",)))
    if group.startswith("filtering"):
        parts.append(filtering_cost(variants, args))
    part = "\n\n".join(p for p in parts if p)
    target = variants[0].change.get("target")
    if target:
        tree = variants[0].cell(args.budget, args.seeds[0]).exported()  # the test split is the same for every seed
        seen = targets.source_recognition(tree)
        top1_line = (f"top-1, over its 1000 classes, on the {target} test images: {seen['top1']:.3f}; its "
                     if seen["top1"] is not None else "")  # only a lookalikes tree's classes are source classes
        part += (f"\n\nThe source classifier's {top1_line}mean top-1 probability on seed {args.seeds[0]}'s labeled "
                 f"{target} images: {seen['mean_top_prob']:.2f}."
                 + ("" if group in shard_groups else " " + paired_lines(variants, args)))
    return part, means, sds


def report(args: argparse.Namespace) -> None:
    if args.groups:  # each its own section, beside the whole study's (which needs every group's runs)
        for group in args.groups:
            part = group_part(group, args)[0]
            target = variants_of(group)[0].change.get("target", "digits")
            write_section(f"ablations_{group}", f"Command: `python -m benchmarks.ablations run --groups {group} --budget "
                          f"{args.budget} --seeds {','.join(map(str, args.seeds))}`, then `python -m benchmarks.ablations "
                          f"report --groups {group}` (benchmarks/ablations.py says what the group varies); test top-1 "
                          f"on {target} at {args.budget} labels a class, mean ± sd over seeds.\n\n" + part, args.doc)
        return
    plt = pyplot()
    present = [g for g in GROUPS if any(top1(v, args.budget, s) is not None for v in variants_of(g) for s in args.seeds)]
    if not present:
        raise SystemExit(f"no ablation results under {WORK}: run `python -m benchmarks.ablations run` first")
    cols = min(4, len(present))
    rows_of_plots = -(-len(present) // cols)
    fig, axes = plt.subplots(rows_of_plots, cols, figsize=(3.4 * cols, 3.8 * rows_of_plots), squeeze=False)
    for ax in axes.flat[len(present):]:
        ax.set_visible(False)
    parts = []
    for ax, group in zip(axes.flat, present):
        title, variants = GROUPS[group][0], variants_of(group)
        part, means, sds = group_part(group, args)
        parts.append(part)
        ax.bar(range(len(variants)), means, yerr=sds, capsize=3, color=[f"C{i}" for i in range(len(variants))])
        ax.set_xticks(range(len(variants)), [v.label for v in variants], rotation=30, ha="right", fontsize=7)
        finite = [m for m in means if m == m]
        ax.set_ylim(max(0, min(finite) - 0.05), min(1, max(finite) + 0.02))
        ax.set_title(title, fontsize=8)
    for row in axes:
        row[0].set_ylabel(f"test top-1, {args.budget} labels/class")
    fig.tight_layout()
    fig.savefig(PLOT, dpi=110)
    digits = targets.source_recognition(Cell(reproduce.WORK, FULL, args.budget, args.seeds[0]).exported())
    md = (f"Command: `python -m benchmarks.ablations run --budget {args.budget} --seeds "
          f"{','.join(map(str, args.seeds))}`, then `python -m benchmarks.ablations report` (benchmarks/ablations.py "
          "says what each group varies). One setting at a time; mean ± sd of the test top-1 over seeds (digits, except "
          "the coverage groups, on their own target); for P-SSL runs, the mean share of pseudo samples above "
          "FixMatch's threshold over the second half of training. The source classifier's mean top-1 probability on "
          f"seed {args.seeds[0]}'s labeled digits: {digits['mean_top_prob']:.2f}.\n\n"
          + "\n\n".join(parts) + f"\n\n![ablations]({PLOT.relative_to(ROOT / 'docs')})")
    write_section("ablations", md, args.doc)


def main() -> None:
    common = [flag("--seeds", type=ints, default=[0, 1, 2]),
              flag("--budget", type=int, default=5, help="Labeled images a class.")]
    cli(__doc__,
        run=(run, [*common, flag("--groups", type=words, default=list(GROUPS), help=f"Of: {', '.join(GROUPS)}."),
                   flag("--max-minutes", type=float, help="Start no new cell after this long.")]),
        report=(report, [*common, doc_flag(),
                         flag("--groups", type=words, help="Each group given gets a section of its own "
                              "(default: the whole study, one section and its plot).")]))


if __name__ == "__main__":
    main()
