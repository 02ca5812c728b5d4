"""Target architectures (any timm model by name) and run folders.

A run folder ends with `model.safetensors` and `config.json` (architecture, classes and their
source ids, image size, normalisation), which is all a later step needs to rebuild the model:
fine-tuning from it, evaluating it, or using it as a classifier SPEC (a teacher, or the source
classifier of pseudo conditional sampling). The format's reader is shared with the generation
stage (`ptcommon.runfolder`); writing runs is this stage's job.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from ptcommon.runfolder import (BUILTIN_PREFIX, CONFIG_FILE, WEIGHTS_FILE, ModelConfig, check_arch, create_model,
                                load_run, resolve_run)

__all__ = ["BUILTIN_PREFIX", "WEIGHTS_FILE", "ModelConfig", "check_arch", "create_model", "load_run", "resolve_run",
           "save_run"]


def save_run(folder: Path, model: torch.nn.Module, config: ModelConfig) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / WEIGHTS_FILE))
    (folder / CONFIG_FILE).write_text(json.dumps(config.as_dict(), ensure_ascii=False, indent=1) + "\n")
