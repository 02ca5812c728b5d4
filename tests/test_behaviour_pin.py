"""The default commands' outputs, pinned: a change of the code's structure must not change the
images synth and pseudo write nor the weights pp and finetune train.

Each command runs as its own process with one torch thread, so the figures depend on the code,
torch's release and the CPU's float arithmetic, not on the cores of the machine. The digests were
taken with torch 2.14.1 on x86-64; elsewhere the test is skipped, since another torch or CPU may
round a weight differently without any change of ptgen's.
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent

PINNED = {
    "synth": "eb493ff0e3a3f88a90b7d677e1c9845f0be49f27c84109c84060e58b5f3ad481",
    "pseudo": "0acaa1456bf3317db9fdbc0f11de7942546b1ef302cb8bb7c8e1263886165a90",
    "pp": "a9a0c4096e7b6562ceef524cdfb90a5da1451d57efeaa0add3779e7fe6040838",
    "finetune": "2a6ac5c865e863f6bf89ba5d85a0ee13e402be4053e7c8e825756729ac92c4ec",
}

pytestmark = pytest.mark.skipif(
    not (torch.__version__.startswith("2.14.1") and platform.machine() == "x86_64"),
    reason="digests pinned on torch 2.14.1, x86-64")


def tool(module: str, *args: object) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_STEP_ID"):
        env.pop(name, None)
    proc = subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def files_digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for path in paths:
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def weights_digest(run: Path) -> str:
    from safetensors.torch import load_file

    h = hashlib.sha256()
    for name, tensor in sorted(load_file(str(run / "model.safetensors")).items()):
        h.update(name.encode() + b"\0" + tensor.contiguous().numpy().tobytes())
    return h.hexdigest()


def digests(tmp: Path) -> dict[str, str]:
    """Small runs of the README's commands at their defaults, and what each wrote."""
    data, synth, pseudo = tmp / "digits", tmp / "synth", tmp / "pseudo"
    tool("train", "data", "digits", "--out", data, "--labels-per-class", 1)
    tool("generate", "synth", "--classes", 4, "--per-class", 3, "--out", synth, "--quiet")
    tool("generate", "pseudo", "--target", data, "--per-target", 2, "--out", pseudo, "--quiet")
    tool("train", "pp", "--shards", synth, "--epochs", 1, "--batch-size", 6, "--min-steps", 0, "--out", tmp / "pp",
         "--quiet")
    tool("train", "finetune", "--data", data, "--init", tmp / "pp", "--epochs", 1, "--batch-size", 5, "--min-steps",
         0, "--out", tmp / "ft", "--quiet")
    return {"synth": files_digest(sorted(synth.glob("*.tar"))), "pseudo": files_digest(sorted(pseudo.glob("*.tar"))),
            "pp": weights_digest(tmp / "pp"), "finetune": weights_digest(tmp / "ft")}


def test_default_commands_write_the_pinned_bytes_and_weights(tmp_path):
    assert digests(tmp_path) == PINNED


if __name__ == "__main__":  # prints the digests of the code it runs in: how PINNED was taken
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for name, digest in digests(Path(tmp)).items():
            print(f'    "{name}": "{digest}",')
