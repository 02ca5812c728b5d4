"""Run folders: where a training command writes, and the rules that keep finished runs safe."""

from __future__ import annotations

import datetime
from pathlib import Path

from ptcommon.cli import InputError

from .models import WEIGHTS_FILE

CHECKPOINT_FILE = "checkpoint.pt"
RUNS_DIR = Path("runs")


def default_run_dir(command: str) -> Path:
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
    return RUNS_DIR / f"{command}-{stamp}"


def prepare_run_dir(out: Path | None, command: str, resume: bool) -> Path:
    """The folder a run writes: a new one by default; an existing one only to resume it.

    A finished run (it has model.safetensors) is never overwritten.
    """
    folder = out if out is not None else default_run_dir(command)
    if (folder / WEIGHTS_FILE).exists():
        raise InputError(f"--out {folder}: holds a finished run; choose a new folder (runs are never overwritten)")
    has_checkpoint = (folder / CHECKPOINT_FILE).exists()
    if resume and not has_checkpoint:
        raise InputError(f"--resume: {folder} holds no {CHECKPOINT_FILE} to resume from")
    if not resume and has_checkpoint:
        raise InputError(f"--out {folder}: holds an unfinished run; pass --resume to continue it, or choose a new folder")
    if not resume and folder.exists() and any(folder.iterdir()):
        raise InputError(f"--out {folder}: is not empty; choose a new folder")
    return folder
