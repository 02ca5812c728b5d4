"""Run folders: where a training command writes, and the rules that keep finished runs safe."""

from __future__ import annotations

import datetime
from pathlib import Path

from ptcommon.cli import InputError

from .models import WEIGHTS_FILE

CHECKPOINT_FILE = "checkpoint.pt"
METRICS_FILE = "metrics.jsonl"
RUNS_DIR = Path("runs")


def default_run_dir(command: str) -> Path:
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
    return RUNS_DIR / f"{command}-{stamp}"


def prepare_run_dir(out: Path | None, command: str, resume: bool) -> tuple[Path, bool]:
    """The folder a run writes: a new one by default; an existing one only to resume it. Also
    whether there is a checkpoint to resume from: --resume on a run stopped before its first
    checkpoint (its log alone in the folder) starts that run again from step 0.

    A finished run (it has model.safetensors) is never overwritten.
    """
    folder = out if out is not None else default_run_dir(command)
    if (folder / WEIGHTS_FILE).exists():
        raise InputError(f"--out {folder}: holds a finished run; choose a new folder (runs are never overwritten)")
    has_checkpoint = (folder / CHECKPOINT_FILE).exists()
    found = {p.name for p in folder.iterdir()} if folder.is_dir() else set()
    log_only = found == {METRICS_FILE}
    if resume and not has_checkpoint and not log_only:
        raise InputError(f"--resume: {folder} holds no {CHECKPOINT_FILE} to resume from")
    if not resume and has_checkpoint:
        raise InputError(f"--out {folder}: holds an unfinished run; pass --resume to continue it, or choose a new folder")
    if not resume and found:
        hint = (": it holds only the log of a run stopped before its first checkpoint; pass --resume to start that "
                "run again there, or choose a new folder") if log_only else "; choose a new folder"
        raise InputError(f"--out {folder}: is not empty{hint}")
    return folder, resume and has_checkpoint
