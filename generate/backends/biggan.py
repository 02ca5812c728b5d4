"""Backend: a BigGAN in pytorch-pretrained-biggan's folder layout (the `biggan` extra), the source
generator of the method's paper (Yamaguchi et al. sampled a BigGAN trained on ImageNet).

Layout, as the package's `BigGAN.from_pretrained` reads it: `config.json` (a `BigGANConfig`) and
`pytorch_model.bin` (a state dict), or `model.safetensors` instead; optionally `ptgen.json` with
`class_names` and `truncation`. `from_pretrained` is never called: it unpickles the weights with a
plain `torch.load`, which runs any code a pickle carries. Here a `.bin` is read under
`weights_only=True`, which loads a state dict and refuses anything else; converting a downloaded
folder once writes `model.safetensors` beside it, which is then read instead:

    python -m generate.backends.biggan convert FOLDER

A GAN draws an image in one forward pass: `steps` is ignored, and there is no classifier-free
guidance (no null class). The class input is already a vector over the classes, mapped through a
linear embedding, so a soft label p is fed as it is and a class id as its one-hot row.

Truncation: each sample's noise z comes from its own seed, `truncated_noise_sample(1, z_dim,
truncation, seed)` (scipy's truncated normal on [-2, 2] over numpy's frozen RandomState stream,
scaled by the truncation), and the model reads the truncation too, to pick its batch-norm
statistics. The default, 0.4, is the value BigGAN's authors show samples at for the truncation
trick; the paper of our method does not state the truncation it used. `ptgen.json`'s `truncation`
or the constructor's argument sets another.

Two workarounds for the package (0.1.1, unchanged since 2019; it runs on torch 2.14 without errors
or warnings otherwise):
- RandomState takes seeds below 2**32, ptgen's per-sample seeds have 63 bits: a seed below 2**32
  is passed as it is (z as the package's own examples draw it), a larger one as its two 32-bit words.
- `BigGANBatchNorm` interpolates its table of statistics (one row per truncation step of
  1/(n_stats-1)) with the two weights swapped, and float division puts some truncations on the
  wrong row (0.14 / 0.02 is 7.000000000000001, so 0.14 gets the statistics of 0.16; likewise 0.28,
  0.56, 0.58 and 0.94). `stats_truncation` computes the value to hand the model instead, so that
  its lookup yields the statistics of the truncation asked for.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ptcommon.cli import InputError
from ptcommon.weights import read_state_dict

from ..generator import OnePassGenerator, Start, check_condition, to_uint8
from .folder import INDEX_FILE, META_FILE, read_json, read_meta, weights_digest

CONFIG_NAME = "config.json"  # the package's CONFIG_NAME and WEIGHTS_NAME, without importing it
WEIGHTS_NAME = "pytorch_model.bin"
SAFETENSORS_NAME = "model.safetensors"
DEFAULT_TRUNCATION = 0.4
# Keys every BigGANConfig file has and a pttrain run folder's config.json (arch, num_classes, ...) lacks.
_CONFIG_KEYS = ("z_dim", "num_classes", "output_dim", "class_embed_dim")
_EXTRA = "pip install -e '.[biggan]' (pytorch-pretrained-biggan)"


def stats_truncation(truncation: float, n_stats: int) -> float:
    """The truncation to hand the package's model so that its batch norms use the statistics of
    `truncation`: its row of the table, or the linear interpolation of the two rows around it.

    `BigGANBatchNorm` takes `coef, i = modf(t / step)` and weighs row i by `coef` and row i + 1 by
    `1 - coef`, which is linear interpolation mirrored: handing it i + (1 - coef) undoes that. On a
    row k whose float division is inexact, it gets k - 1 + 1e-9 instead: row k - 1 weighs 1e-9,
    below float32's resolution.
    """
    step = 1.0 / (n_stats - 1)
    position = truncation / step
    row = round(position)
    if abs(position - row) < 1e-9:
        if math.modf(truncation / step) == (0.0, float(row)):
            return truncation
        return (row - 1 + 1e-9) * step
    below = math.floor(position)
    return (below + 1 - (position - below)) * step


def noise(seeds: Sequence[int], z_dim: int, truncation: float) -> np.ndarray:
    """Truncated noise (len(seeds), z_dim), each row from its own seed alone."""
    from pytorch_pretrained_biggan import truncated_noise_sample

    rows = [
        truncated_noise_sample(1, z_dim, truncation, seed=s if s < 2**32 else [s & 0xFFFFFFFF, s >> 32])
        for s in map(int, seeds)
    ]
    return np.concatenate(rows) if rows else np.zeros((0, z_dim), np.float32)


def read_state(folder: Path) -> dict[str, torch.Tensor]:
    """The folder's weights, never by running pickled code: model.safetensors if present, else
    pytorch_model.bin under weights_only."""
    for name in (SAFETENSORS_NAME, WEIGHTS_NAME):
        if (folder / name).exists():
            return read_state_dict(folder / name, f"--model {folder}")
    raise InputError(f"--model {folder}: no {WEIGHTS_NAME} or {SAFETENSORS_NAME}; expected {BigGANGenerator.layout}")


def convert_to_safetensors(folder: str | Path) -> Path:
    """Write `model.safetensors` beside the folder's `pytorch_model.bin` (read under weights_only)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    if not (folder / WEIGHTS_NAME).is_file():
        raise InputError(f"{folder}: no {WEIGHTS_NAME} to convert")
    state = read_state_dict(folder / WEIGHTS_NAME, str(folder))
    path = folder / SAFETENSORS_NAME
    save_file({name: tensor.contiguous() for name, tensor in state.items()}, str(path))
    return path


class BigGANGenerator(OnePassGenerator):
    """Samples a pytorch-pretrained-biggan `BigGAN` in one pass per batch."""

    name = "biggan"
    layout = "config.json (BigGAN: z_dim, num_classes, output_dim...) + pytorch_model.bin or model.safetensors"
    network = "model"  # one forward pass draws the image

    @classmethod
    def claims(cls, folder: Path) -> bool:
        if (folder / INDEX_FILE).exists() or (folder / "unet").is_dir():
            return False
        config = read_json(folder / CONFIG_NAME)
        return all(key in config for key in _CONFIG_KEYS)

    @classmethod
    def describe(cls, folder: Path) -> dict:
        config = read_json(folder / CONFIG_NAME)
        return {"num_classes": config.get("num_classes"), "image_size": config.get("output_dim"), "channels": 3}

    def __init__(self, folder: str | Path, device: str = "cpu", dtype: torch.dtype = torch.float32,
                 truncation: float | None = None):
        """`truncation` overrides ptgen.json's and the default (0.4); it lies in [1/(n_stats-1), 1]
        (0.02 to 1 for the released models: the model has batch-norm statistics for that range)."""
        try:
            from pytorch_pretrained_biggan import BigGAN, BigGANConfig
        except ImportError:
            raise InputError(f"--model {folder}: a BigGAN folder needs the biggan extra: {_EXTRA}") from None

        self.folder = Path(folder)
        if not (self.folder / CONFIG_NAME).is_file():
            raise InputError(f"--model {folder}: no {CONFIG_NAME}; expected {self.layout}")
        config = BigGANConfig.from_json_file(str(self.folder / CONFIG_NAME))
        # The model never reads output_dim: its size is 4 px doubled by every upsampling layer.
        size = 4 * 2 ** sum(bool(layer[0]) for layer in config.layers)
        if size != config.output_dim:
            raise InputError(f"--model {folder}: {CONFIG_NAME} says output_dim {config.output_dim} but its "
                             f"layers upsample 4 px to {size}")
        meta = read_meta(self.folder)
        truncation = float(truncation if truncation is not None else meta.get("truncation", DEFAULT_TRUNCATION))
        lowest = 1.0 / (config.n_stats - 1)
        if not lowest <= truncation <= 1.0:
            raise InputError(f"--model {folder}: truncation {truncation} must lie in [{lowest:g}, 1]")
        n = config.num_classes
        self._class_names = list(meta.get("class_names") or [f"class_{i}" for i in range(n)])
        if len(self._class_names) != n:
            raise InputError(f"--model {folder}: {META_FILE} names {len(self._class_names)} classes "
                             f"but the BigGAN has {n}")

        model = BigGAN(config)
        try:
            # Strict: the package's own loader is not, and leaves what is missing uninitialised.
            model.load_state_dict(read_state(self.folder))
        except RuntimeError as err:
            detail = " ".join(str(err).split())[:200]
            raise InputError(f"--model {folder}: the weights do not fit {CONFIG_NAME} ({detail})") from None

        self.truncation = truncation
        self._model_truncation = stats_truncation(truncation, config.n_stats)
        self.config = config
        self.device = torch.device(device)
        self.dtype = dtype
        # eval() matters beyond dropout: in training mode every forward pass runs a spectral-norm
        # power iteration that updates the weights' u and v, so images would depend on earlier batches.
        self.model = model.to(self.device, dtype).eval()
        self._fingerprint = {
            "backend": "pytorch-pretrained-biggan",
            "config": config.to_dict(),
            # Every weights file in the folder: converting adds model.safetensors and so changes the
            # fingerprint, which errs on the side of a fresh dataset.
            "weights_sha256": weights_digest(self.folder),
            "truncation": truncation,
        }

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    @property
    def class_names(self) -> list[str]:
        return self._class_names

    @property
    def image_size(self) -> int:
        return self.config.output_dim

    @property
    def channels(self) -> int:
        return 3

    def fingerprint(self) -> dict:
        return self._fingerprint

    def no_way_back(self) -> str:
        return (f"{self.folder} is a BigGAN, which maps noise to an image in one pass and has no way back from an "
                "image to start from")

    def class_vectors(self, condition: torch.Tensor) -> torch.Tensor:
        """What the model's class input gets: probabilities as they are, class ids as one-hot rows."""
        check_condition(condition, self.num_classes)
        if not condition.is_floating_point():
            condition = torch.nn.functional.one_hot(condition, self.num_classes)
        return condition.to(self.device, self.dtype)

    @torch.inference_mode()
    def sample(
        self, condition: torch.Tensor, seeds: Sequence[int], steps: int, guidance: float, *,
        start: Start | None = None,
    ) -> np.ndarray:
        """One forward pass; `steps` is ignored (a GAN has no sampling steps)."""
        if start is not None:
            self.check_start("start")
        labels = self.class_vectors(condition)
        if len(seeds) != len(condition):
            raise ValueError(f"{len(seeds)} seeds for {len(condition)} conditions")
        if guidance > 1.0:
            raise ValueError("classifier-free guidance needs a model trained with a null class")
        z = torch.from_numpy(noise(seeds, self.config.z_dim, self.truncation)).to(self.device, self.dtype)
        return to_uint8(self.model(z, labels, self._model_truncation))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m generate.backends.biggan",
                                     description="Tools for BigGAN model folders.")
    commands = parser.add_subparsers(dest="command", required=True)
    convert = commands.add_parser("convert", help=f"write {SAFETENSORS_NAME} beside {WEIGHTS_NAME}, "
                                  "so that the weights load without unpickling")
    convert.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    try:
        path = convert_to_safetensors(args.folder)
    except InputError as err:
        parser.exit(2, f"{parser.prog}: error: {err.format_message()}\n")
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
