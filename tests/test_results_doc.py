"""docs/results.md against the kept results files: each block that a `report` rebuilds from
benchmarks/results/ must be what that report prints now, and README.md's results table what
`python -m benchmarks.pssl_guard report` prints. The reports run as the commands they are, with an
empty runs/ folder (BENCHMARKS_RUNS), so they read the kept files alone, and into a copy of the
document, so the repository's files stay as they are. Seconds: no training, no sampling."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "results.md"
README = ROOT / "README.md"

# (the report's command line after `python -m`, the blocks it writes)
REBUILT = [
    (["benchmarks.pssl_guard", "report"], ["pssl_guard"]),
    (["benchmarks.ablations", "report", "--groups", "pp_format"], ["ablations_pp_format"]),
    (["benchmarks.ablations", "report", "--groups", "filtering,filtering_lookalikes,guidance,guidance_lookalikes"],
     ["ablations_filtering", "ablations_filtering_lookalikes", "ablations_guidance", "ablations_guidance_lookalikes"]),
    (["benchmarks.train_data_path", "report", "--gpu-rate", "3000"], ["train_data_path"]),
    (["benchmarks.rehearsal", "report"], ["rehearsal"]),
    (["benchmarks.lookalikes", "report"], ["lookalikes"]),
]


def block(text: str, name: str) -> str | None:
    found = re.search(re.escape(f"<!-- {name}:start -->") + ".*?" + re.escape(f"<!-- {name}:end -->"), text, re.S)
    return found.group(0) if found else None


def run_report(args: list[str], tmp_path: Path, doc: Path | str) -> str:
    """The report's stdout; it writes its blocks into DOC ("-": to stdout)."""
    runs = tmp_path / "runs"
    runs.mkdir(exist_ok=True)
    env = {**os.environ, "BENCHMARKS_RUNS": str(runs), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", *args, "--doc", str(doc)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("args, names", REBUILT, ids=[" ".join(a[:1] + a[2:]) for a, _ in REBUILT])
def test_block_is_what_its_report_prints(args: list[str], names: list[str], tmp_path: Path) -> None:
    copy = tmp_path / "results.md"
    shutil.copy(RESULTS, copy)
    run_report(args, tmp_path, copy)
    written, kept = copy.read_text(), RESULTS.read_text()
    for name in names:
        assert block(kept, name) is not None, f"docs/results.md has no block {name}"
        assert block(written, name) == block(kept, name), (
            f"docs/results.md's block {name} differs from what `python -m {' '.join(args)}` prints; "
            f"rerun it (it rewrites the block)")
    assert written == kept  # the report wrote its own blocks and nothing else


def test_readme_table_is_what_pssl_guard_report_prints(tmp_path: Path) -> None:
    out = run_report(["benchmarks.pssl_guard", "report"], tmp_path, "-")
    printed = out.split("The README's table", 1)[1]
    table = "\n".join(line for line in printed.splitlines() if line.startswith("|"))
    assert table.count("\n") >= 2, out
    assert table in README.read_text(), (
        "README.md's results table differs from what `python -m benchmarks.pssl_guard report` prints")


def test_report_writes_only_into_the_file_it_is_given(tmp_path: Path) -> None:
    """--doc FILE: the repository's docs/results.md is left as it was, the copy gets the block."""
    before = RESULTS.read_bytes()
    copy = tmp_path / "other.md"
    copy.write_text("# Elsewhere\n")
    run_report(["benchmarks.pssl_guard", "report"], tmp_path, copy)
    assert RESULTS.read_bytes() == before
    assert block(copy.read_text(), "pssl_guard") == block(before.decode(), "pssl_guard")


def headings(text: str) -> list[str]:
    body = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return [line for line in body.splitlines() if line.startswith("#")]


def test_each_heading_once() -> None:
    seen = headings(RESULTS.read_text())
    assert len(seen) == len(set(seen)), sorted(h for h in seen if seen.count(h) > 1)


def test_no_empty_table_cells() -> None:
    """A cell that has no figure says so ("—", "-" or words); an empty one reads as a lost figure."""
    empty = []
    for number, line in enumerate(RESULTS.read_text().splitlines(), 1):
        if line.startswith("|") and not set(line) <= set("|-: "):
            cells = line.strip().strip("|").split("|")
            if any(not cell.strip() for cell in cells):
                empty.append(f"{number}: {line}")
    assert not empty, "\n".join(empty)


def test_blocks_are_paired_and_named_once() -> None:
    text = RESULTS.read_text()
    starts = re.findall(r"<!-- (\S+):start -->", text)
    ends = re.findall(r"<!-- (\S+):end -->", text)
    assert starts == ends and len(starts) == len(set(starts))
