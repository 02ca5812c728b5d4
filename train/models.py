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

from ptcommon.cli import InputError
from ptcommon.outputs import tensor_bytes, write_atomically
from ptcommon.runfolder import CONFIG_FILE, WEIGHTS_FILE, ModelConfig

# timm's CNNs downsample 32x, so smaller inputs leave their last stages a 1x1 map (or nothing);
# resnet18 pre-trained on 16 px glyphs resized to 32 transferred better (docs/results.md).
MIN_DEFAULT_IMAGE_SIZE = 32


def default_image_size(data_size: int, in_chans: int = 1, arch: str | None = None) -> int:
    """The model input size when --img-size is not given. For RGB data at least as large as ARCH's
    pretrained input size (224 for resnet50), that size: photos of any size train where ImageNet
    models do. Otherwise (grayscale, small images) the data's, raised to 32 px when smaller."""
    if in_chans == 3 and arch is not None:
        from .data.transforms import pretrained_input_size

        pretrained = pretrained_input_size(arch)
        if data_size >= pretrained:
            return pretrained
    return max(data_size, MIN_DEFAULT_IMAGE_SIZE)


def save_run(folder: Path, model: torch.nn.Module, config: ModelConfig) -> None:
    """Write the run's config, then its weights; the weights file is what marks a run finished,
    so it appears only whole."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    config_text = json.dumps(config.as_dict(), ensure_ascii=False, indent=1) + "\n"
    write_atomically(folder / CONFIG_FILE, lambda tmp: tmp.write_text(config_text), "--out", lambda: len(config_text))
    write_atomically(folder / WEIGHTS_FILE, lambda tmp: save_file(state, str(tmp)), "--out",
                     lambda: tensor_bytes(state))


def check_input_size(model: torch.nn.Module, config: ModelConfig) -> None:
    """Refuse, before training starts, an input size that the architecture downsamples to nothing
    (many ImageNet models need 32 px or more)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, config.in_chans, config.image_size, config.image_size))
    except RuntimeError as err:
        reason = str(err).splitlines()[0][:120]
        raise InputError(f"--arch {config.arch}: cannot take {config.image_size} px input ({reason}); "
                         f"pass a larger --img-size (e.g. {2 * config.image_size}) or another --arch") from None
    finally:
        model.train(was_training)
