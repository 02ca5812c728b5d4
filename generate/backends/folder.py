"""What every backend reads from a diffusers model folder: its own description, optional ptgen
metadata, and the fingerprint parts that identify weights and configs wherever the folder lies."""

from __future__ import annotations

import json
from pathlib import Path

from ptcommon.weights import sha256_of

INDEX_FILE = "model_index.json"
META_FILE = "ptgen.json"
_WEIGHT_SUFFIXES = (".safetensors", ".bin")


def read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def pipeline_class(folder: Path) -> str | None:
    """The `_class_name` of diffusers' `model_index.json` (e.g. "DiTPipeline"), if the folder has one."""
    return read_json(folder / INDEX_FILE).get("_class_name")


def read_meta(folder: Path) -> dict:
    """`ptgen.json`: class names, null class, sampling defaults, templates (all optional)."""
    return read_json(folder / META_FILE)


def public_config(config: dict) -> dict:
    """Drop diffusers' bookkeeping keys (paths, library version) that do not change the samples."""
    return {k: v for k, v in config.items() if not k.startswith("_")}


def weights_digest(folder: Path) -> str:
    """One SHA-256 over a model folder's weight files, in name order."""
    return sha256_of(sorted(p for p in folder.iterdir() if p.suffix in _WEIGHT_SUFFIXES))
