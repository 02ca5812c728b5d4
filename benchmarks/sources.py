"""What the studies take from the source side, made once and shared from runs/cache/: synthetic
shards (`ptgen synth`), pseudo pre-trained runs (`pttrain pp`) and pseudo shards (`ptgen pseudo`).

Each artifact's folder name holds every setting it depends on, so a study asking for the same
thing gets the same folder, and `made.json` beside it records the seconds it took once; a study
reports from those how much time the cache saved it.
"""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.common import ROOT, ToolRun, read_json, run_tool, train_until_finished

CACHE = ROOT / "runs" / "cache"
MADE = "made.json"


def _record(folder: Path, run: ToolRun | None) -> None:
    if run is not None:
        (folder / MADE).write_text(json.dumps({"seconds": run.seconds}))


def seconds(folder: Path) -> float:
    """How long making FOLDER took (the run that finished it; a resumed one counts its last part only)."""
    return read_json(folder / MADE)["seconds"]


def made(folder: Path) -> bool:
    return (folder / MADE).exists()


def _tag(extra: tuple) -> str:
    tag = "".join(str(e).lstrip("-") for e in extra)
    return "-" + tag if tag else ""


def synth_path(per_class: int, seed: int = 0, classes: int | None = None, *extra: object) -> Path:
    return CACHE / f"synth-{per_class}pc-{classes or 'all'}cls-s{seed}{_tag(extra)}"


def pp_path(shards: Path, epochs: int, seed: int, *extra: object) -> Path:
    return CACHE / f"pp-{shards.name}-e{epochs}-s{seed}{_tag(extra)}"


def pseudo_path(name: str, per_target: int, seed: int, *extra: object) -> Path:
    return CACHE / f"pseudo-{name}-{per_target}pt-s{seed}{_tag(extra)}"


def synth(per_class: int, seed: int = 0, classes: int | None = None, *extra: object) -> Path:
    """Built-in samples: PER_CLASS a class, of all classes or the first CLASSES, with EXTRA flags of
    `ptgen synth` (the image format)."""
    out = synth_path(per_class, seed, classes, *extra)
    if not made(out):
        picked = ["--classes", classes] if classes else []
        _record(out, run_tool("generate", "synth", "--out", out, "--per-class", per_class, "--seed", seed,
                              *picked, *extra, "--quiet"))
    return out


def pp(shards: Path, epochs: int, seed: int, *extra: object) -> Path:
    """A resnet18 pre-trained on SHARDS for EPOCHS at pttrain's pp defaults (plus EXTRA flags), seeded by SEED."""
    out = pp_path(shards, epochs, seed, *extra)
    _record(out, train_until_finished("pp", out, "--shards", shards, "--epochs", epochs, "--seed", seed, *extra))
    return out


def pseudo(target: Path, name: str, per_target: int, seed: int, *extra: object) -> Path:
    """Pseudo samples of the built-in world for TARGET's train/ images (NAME says which target),
    with EXTRA flags of `ptgen pseudo` (temperature, top-k)."""
    out = pseudo_path(name, per_target, seed, *extra)
    if not made(out):
        _record(out, run_tool("generate", "pseudo", "--target", target, "--out", out, "--per-target", per_target,
                              "--seed", seed, *extra, "--quiet"))
    return out
