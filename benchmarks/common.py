"""What the benchmark scripts share: running ptgen / pttrain, the transfer studies' command line
and bookkeeping, plots, and the one writer of docs/results.md.

Every benchmark runs from the repository root as `python -m benchmarks.NAME ...`.

The tools run one way only: `run_tool`, a subprocess of `python -m generate ...` (ptgen) or
`python -m train ...` (pttrain), which is how users and torchrun start them. Not click's
CliRunner in-process, because
  - the studies chain many long trainings: a process per command gives its memory back, starts
    from the tool's own torch threads, RNG and module state rather than what earlier commands
    left behind, and an interrupted study leaves checkpoints that the next command resumes;
  - synth_throughput measures the peak RSS of a `ptgen synth` process, which only a process of
    its own has;
  - a timed command then costs what it costs a user (interpreter start, imports and model
    loading included), the same in every benchmark.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "results.md"


def module_command(module: str, *args: object) -> list[str]:
    """`python -m MODULE ARGS` with this interpreter, arguments as strings."""
    return [sys.executable, "-m", module, *map(str, args)]


@dataclass(frozen=True)
class ToolRun:
    seconds: float
    peak_rss_mb: float


def run_tool(tool: str, *args: object) -> ToolRun:
    """Run `python -m TOOL ARGS` (TOOL: generate for ptgen, train for pttrain) from the repository
    root, echoing the command; raise CalledProcessError when it fails."""
    cmd = module_command(tool, *args)
    print("$", shlex.join(["python", *cmd[1:]]), flush=True)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT)
    # wait4 rather than proc.wait(): it also returns this child's own peak RSS, which
    # RUSAGE_CHILDREN would merge with every earlier child's.
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    # Popen would otherwise try to reap the child again when collected.
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, cmd)
    return ToolRun(seconds, usage.ru_maxrss / 1024)  # Linux reports KiB


def study_main(doc: str, run_study: Callable[[argparse.Namespace], None],
               report_study: Callable[[argparse.Namespace], None],
               add_run_args: Callable[[argparse.ArgumentParser], None], *,
               per_class: int, pp_epochs: int, seeds: list[int]) -> None:
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


def measurement_main(doc: str, default_out: Path, run: Callable[[argparse.Namespace], None],
                     report: Callable[[argparse.Namespace], None],
                     add_run_args: Callable[[argparse.ArgumentParser], None]) -> None:
    """The `run` / `report` command line of a measurement that keeps its figures in a results file
    (`--out`): `run` measures into it (and with `--report` writes the tables), `report` writes the
    tables from it again; `add_run_args` adds the measurement's own flags."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    add_run_args(r)
    r.add_argument("--out", type=Path, default=default_out)
    r.add_argument("--report", action="store_true", help="then write the tables, as `report` does")
    p = sub.add_parser("report")
    p.add_argument("--out", type=Path, default=default_out, help="the results file `run` wrote")
    args = ap.parse_args()
    run(args) if args.cmd == "run" else report(args)


def start_study(work: Path, args: argparse.Namespace) -> None:
    """Record the study's settings and export the digits target once per seed (as digits-SEED)."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "study.json").write_text(json.dumps(vars(args), indent=1))
    for seed in args.seeds:
        digits = work / f"digits-{seed}"
        if not (digits / "split.json").exists():
            run_tool("train", "data", "digits", "--out", digits, "--labels-per-class", args.labels, "--seed", seed)


# The studies measured before pttrain's --min-steps floor: their schedule is their --epochs alone, so that
# their commands still give the numbers docs/results.md reports.
EPOCHS_ONLY = ("--min-steps", 0)


def finished(run_dir: Path) -> bool:
    return (run_dir / "model.safetensors").exists()


def train_until_finished(command: str, out: Path, *args: object) -> ToolRun | None:
    """`pttrain COMMAND ARGS --out OUT --quiet`, resumed when OUT holds an unfinished run;
    None, without running, when OUT already holds a finished run."""
    if finished(out):
        return None
    # pttrain resumes from a checkpoint, and starts again a run stopped before its first one.
    resume = ["--resume"] if out.is_dir() and any(out.iterdir()) else []
    return run_tool("train", command, *args, "--out", out, "--quiet", *resume)


def curve_on_test(tree: Path) -> Path:
    """TREE with its test/ also as val/ (links, beside it as TREE-curve): the studies that plot test top-1
    during training, as they did when pttrain drew its curve on test/. They choose nothing on it."""
    linked = tree.parent / f"{tree.name}-curve"
    linked.mkdir(exist_ok=True)
    for part, source in (("train", "train"), ("val", "test"), ("test", "test")):
        if not (linked / part).exists():
            (linked / part).symlink_to((tree / source).resolve(), target_is_directory=True)
    return linked


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def keep_scores(kept: Path, found: dict[str, object], **fields: object) -> dict:
    """The tracked results file KEPT (benchmarks/results/), with FOUND merged into its "scores" and
    FIELDS set, written back and returned. runs/ is git-ignored and does not outlive a machine, so a
    study that accumulates seeds across sessions reports from this file, committed with the code."""
    data = read_json(kept) if kept.exists() else {}
    data.setdefault("scores", {}).update(found)
    data.update(fields)
    kept.parent.mkdir(parents=True, exist_ok=True)
    partial = kept.with_name(kept.name + ".tmp")  # replaced whole, so a reader never sees half a file
    partial.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    partial.replace(kept)
    return data


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def curve(run_dir: Path) -> list[tuple[int, float]]:
    """A fine-tuning run's (epoch, test top-1) wherever it scored itself (1-based epochs)."""
    return [(r["epoch"] + 1, r["val_top1"]) for r in read_jsonl(run_dir / "metrics.jsonl") if "val_top1" in r]


def mean_curve(curves: list[list[tuple[int, float]]]) -> tuple[list[int], list[float]]:
    """The epochs the runs scored at, and their mean top-1 there."""
    return [e for e, _ in curves[0]], [statistics.mean(v for _, v in col) for col in zip(*curves)]


def spread(values: list[float]) -> str:
    """`mean ± sd` of one value over seeds."""
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


def pyplot() -> ModuleType:
    """matplotlib.pyplot on the Agg backend: benchmarks write files and often run without a display."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Figure, path: Path, dpi: int) -> None:
    """Grid and legend on every axis, then save."""
    for ax in fig.axes:
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)


def finish_curve_plot(fig: Figure, axes_titles: dict[Axes, str], path: Path) -> None:
    """Fine-tuning curves: a title and the epoch axis on each axis, then save."""
    for ax, title in axes_titles.items():
        ax.set_title(title)
        ax.set_xlabel("fine-tuning epoch")
    save_figure(fig, path, dpi=110)


# docs/results.md (or another doc a benchmark fills in): each benchmark owns a section between
# markers, so a rerun replaces only its own.

def write_section(name: str, markdown: str, path: Path = RESULTS) -> None:
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{markdown.strip()}\n{end}"
    text = path.read_text() if path.exists() else "# Measured results\n"
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + f"\n\n{block}\n"
    path.write_text(text)


def table(header: list[str], rows: list[list]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
