"""Defaults for GPUs that a CPU can check: --dtype auto's choice and its reason, and --decode-batch,
which bounds the VAE's memory without changing an image."""

import pytest
import torch

from generate.cli import main as ptgen
from generate.models import choose_dtype
from tiny_models import save_tiny_dit


@pytest.fixture(scope="module")
def dit(tmp_path_factory):
    return save_tiny_dit(tmp_path_factory.mktemp("dit") / "model", num_classes=10)


def synth(cli, model, out, *extra):
    result = cli(ptgen, ["synth", "--model", model, "--out", out, "--class-ids", "2,7", "--per-class", 3, "--steps", 2,
                         "--batch-size", 6, "--quiet", *extra])
    assert result.exit_code == 0, result.output
    return result


def test_decode_batch_leaves_the_images_alone(dit, cli, tmp_path):
    synth(cli, dit, tmp_path / "whole")
    capped = synth(cli, dit, tmp_path / "capped", "--batch-size", 4, "--decode-batch", 9)
    assert "--decode-batch 9 is larger than --batch-size 4; decoding 4 at a time" in capped.stderr
    synth(cli, dit, tmp_path / "ones", "--decode-batch", 1)
    whole = {p.name: p.read_bytes() for p in (tmp_path / "whole").glob("*.tar")}
    assert whole and {p.name: p.read_bytes() for p in (tmp_path / "ones").glob("*.tar")} == whole
    assert {p.name: p.read_bytes() for p in (tmp_path / "capped").glob("*.tar")} == whole


@pytest.mark.parametrize("decode_batch", [4, 500])  # 500: above --batch-size, which is no reason to cap it here
def test_decode_batch_on_a_model_without_a_vae_is_one_line(cli, tmp_path, decode_batch):
    result = cli(ptgen, ["synth", "--out", tmp_path / "o", "--decode-batch", decode_batch, "--encode-workers", 999])
    assert result.exit_code != 0 and len(result.stderr.strip().splitlines()) == 1
    assert (f"--decode-batch {decode_batch}: builtin:glyphs-1k is a unet model, which does not take --decode-batch; "
            "only these backends do: dit, sd") in result.stderr
    assert not (tmp_path / "o").exists()


def test_auto_dtype_is_fp32_on_cpu_and_said_so(cli, tiny_model, tmp_path):
    import json

    result = cli(ptgen, ["synth", "--model", tiny_model, "--out", tmp_path / "o", "--classes", 1, "--per-class", 1])
    assert "fp32 (auto: fp32 on CPU)" in result.stderr
    assert json.loads((tmp_path / "o" / "dataset.json").read_text())["dtype"] == "fp32"  # the hash of before


@pytest.mark.parametrize("bf16, model, expected", [
    ("native", "builtin:glyphs-1k", "bf16"),
    ("emulated", "dit", "fp16"),  # a V100 or T4: torch emulates bf16 there, slower than fp16
    ("emulated", "builtin:glyphs-1k", "fp32"),
    ("none", "dit", "fp16"),
])
def test_auto_dtype_on_a_gpu(monkeypatch, dit, bf16, model, expected):
    from train.trainer import amp_dtype

    # What a CUDA machine reports, for the choice alone: no kernel runs. torch's own default counts
    # emulation as support.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported",
                        lambda including_emulation=True: bf16 == "native" or (including_emulation and bf16 == "emulated"))
    assert amp_dtype("auto", torch.device("cuda")) == ("bf16" if bf16 == "native" else "fp16")
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        dtype, reason = choose_dtype(str(dit) if model == "dit" else model, "auto", "auto")
        assert dtype == expected and reason.startswith("auto: ")
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        assert choose_dtype(model, "auto", "fp32") == ("fp32", "as given")
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before
