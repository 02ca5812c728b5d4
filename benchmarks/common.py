"""What the benchmark scripts share: running ptgen / pttrain, the command line, scores kept in
results files, paired differences, and the one writer of docs/results.md.

Every benchmark runs from the repository root as `python -m benchmarks.NAME COMMAND ...`.

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
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
# git-ignored: what the studies train and measure. BENCHMARKS_RUNS names another folder (an empty one
# makes a report rebuild from the kept results files alone, as tests/test_results_doc.py does).
RUNS = Path(os.environ.get("BENCHMARKS_RUNS") or ROOT / "runs")
KEPT = ROOT / "benchmarks" / "results"  # tracked: the scores the studies report from
RESULTS = ROOT / "docs" / "results.md"


Flag = tuple[tuple[str, ...], dict]


def flag(*names: str, **options: Any) -> Flag:
    """One argument of a subcommand, as `argparse.ArgumentParser.add_argument` takes it."""
    return names, options


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",")]


def words(text: str) -> list[str]:
    return text.split(",")


def cli(doc: str, **commands: tuple[Callable[[argparse.Namespace], object], list[Flag]]) -> None:
    """Parse the command line and run the subcommand it names: COMMANDS maps each name (a `_` in it
    is a `-` on the command line) to its function and its flags."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    for name, (_, flags) in commands.items():
        parser = sub.add_parser(name.replace("_", "-"))
        for names, options in flags:
            parser.add_argument(*names, **options)
    args = ap.parse_args()
    commands[args.command.replace("-", "_")][0](args)


def out_flag(default: Path) -> Flag:
    """--out of a measurement that keeps its figures in a results file, for `run` and `report` alike."""
    return flag("--out", type=Path, default=default, help=f"the results file [default: {default.relative_to(ROOT)}]")


def doc_target(text: str) -> Path | str:
    return "-" if text == "-" else Path(text)


def doc_flag() -> Flag:
    """--doc of a command that writes sections of docs/results.md: another Markdown file, or - for stdout."""
    return flag("--doc", type=doc_target, default=RESULTS, metavar="FILE|-",
                help="the Markdown file whose sections this replaces; - prints them instead [default: docs/results.md]")


def save_result(path: Path, result: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {path}")


def module_command(module: str, *args: object) -> list[str]:
    """`python -m MODULE ARGS` with this interpreter, arguments as strings."""
    return [sys.executable, "-m", module, *map(str, args)]


@dataclass(frozen=True)
class ToolRun:
    seconds: float
    peak_rss_mb: float | None  # the tool's own process, its children aside; None where it was killed


# Runs a tool's module as __main__ and, at its exit, writes the process's peak RSS (VmHWM) to the
# file named in argv[1]. The peak a parent could read from wait4 would include its own: the kernel
# carries a process's peak across exec, and a forked or vforked child starts from the parent's.
_PEAK_RUNNER = """
import atexit, runpy, sys
out, module = sys.argv[1], sys.argv[2]
def peak():
    line = next(l for l in open('/proc/self/status') if l.startswith('VmHWM:'))
    open(out, 'w').write(line.split()[1])
atexit.register(peak)
sys.argv = [module, *sys.argv[3:]]
runpy.run_module(module, run_name='__main__', alter_sys=True)
"""


def run_tool(tool: str, *args: object) -> ToolRun:
    """Run `python -m TOOL ARGS` (TOOL: generate for ptgen, train for pttrain) from the repository
    root, echoing the command; raise CalledProcessError when it fails."""
    cmd = module_command(tool, *args)
    print("$", shlex.join(["python", *cmd[1:]]), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        peak = Path(tmp) / "peak"
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", _PEAK_RUNNER, peak, tool, *cmd[3:]], cwd=ROOT)
        seconds = time.perf_counter() - start
        if proc.returncode:
            raise subprocess.CalledProcessError(proc.returncode, cmd)
        return ToolRun(seconds, int(peak.read_text()) / 1024 if peak.exists() else None)  # KiB
def train_until_finished(command: str, out: Path, *args: object) -> ToolRun | None:
    """`pttrain COMMAND ARGS --out OUT --quiet`, resumed when OUT holds an unfinished run;
    None, without running, when OUT already holds a finished run."""
    if (out / "model.safetensors").exists():
        return None
    # pttrain resumes from a checkpoint, and starts again a run stopped before its first one.
    resume = ["--resume"] if out.is_dir() and any(out.iterdir()) else []
    return run_tool("train", command, *args, "--out", out, "--quiet", *resume)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def eval_top1(result: Path) -> float:
    """The test top-1 in a `pttrain eval --json` file."""
    return read_json(result)["top1"]


class Kept:
    """A study's scores in its tracked results file, benchmarks/results/NAME.json, by key. runs/
    does not outlive a machine, so a study that adds seeds across machines reports from this file,
    committed with the code."""

    def __init__(self, name: str):
        self.path = KEPT / f"{name}.json"
        self.data = read_json(self.path) if self.path.exists() else {}
        self.scores: dict[str, Any] = self.data.setdefault("scores", {})

    def update(self, found: dict[str, Any]) -> None:
        """FOUND merged into the scores; the file rewritten when that changed anything."""
        if all(self.scores.get(key) == value for key, value in found.items()):
            return
        self.scores.update(found)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(self.path.name + ".tmp")  # replaced whole: no reader sees half a file
        partial.write_text(json.dumps(self.data, indent=1, sort_keys=True) + "\n")
        partial.replace(self.path)

    def top1(self, result: Path) -> float | None:
        """The top-1 of RESULT (a `pttrain eval --json` file under runs/), kept under its path
        below runs/; the kept score where the run is gone; None where there is neither."""
        key = result.relative_to(RUNS).as_posix()
        if result.exists():
            self.update({key: eval_top1(result)})
        return self.scores.get(key)


def spread(values: list[float]) -> str:
    """`mean ± sd` of one value over seeds."""
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


def paired(a: dict[int, float | None], b: dict[int, float | None]) -> dict[int, float]:
    """A - B seed by seed (same labeled draw, same --seed), over the seeds that both have."""
    return {s: x - b[s] for s, x in a.items() if x is not None and b.get(s) is not None}


def describe_paired(diffs: dict[int, float]) -> str:
    """`mean (sd; seeds each)` of paired differences, "—" where there are none."""
    if not diffs:
        return "—"
    values = list(diffs.values())
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):+.3f} (sd {sd:.3f}; seeds {', '.join(f'{d:+.3f}' for d in values)})"


def pyplot() -> ModuleType:
    """matplotlib.pyplot on the Agg backend: benchmarks write files and often run without a display."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_section(name: str, markdown: str, path: Path | str | None = None) -> None:
    """Replace the section NAME of docs/results.md (or of PATH; "-" prints it) with MARKDOWN: each
    benchmark owns the block between its markers, so a rerun replaces only its own. A block holds
    what the command produces (its command line, conditions and tables); the heading, the question
    and the reading around it are the document's. A section not yet in the file is added at its end."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{markdown.strip()}\n{end}"
    if path == "-":
        print(block)
        return
    path = Path(path or RESULTS)
    text = path.read_text() if path.exists() else "# Measured results\n"
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + f"\n\n{block}\n"
    path.write_text(text)
    print(f"wrote the section {name} of {path}")


def table(header: list[str], rows: list[list]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
