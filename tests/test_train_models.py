"""Target architectures by timm name, run folders, and classifier SPECs."""

import pytest
import torch

from ptcommon.cli import InputError
from ptcommon.runfolder import ModelConfig, check_arch, create_model, load_run
from train.models import default_image_size, save_run


def tiny_config(**kw) -> ModelConfig:
    base = dict(arch="resnet10t", num_classes=3, class_names=["a", "b", "c"], image_size=16, in_chans=1,
                mean=[0.5], std=[0.25], source_ids=[4, 8, 15])
    return ModelConfig(**{**base, **kw})


def test_unknown_arch_names_the_closest():
    with pytest.raises(InputError, match=r"--arch resnet19: not a timm architecture; closest: .*resnet18"):
        check_arch("resnet19")


def test_default_image_size_raises_small_data_to_32_px():
    assert [default_image_size(s) for s in (8, 16, 32, 64)] == [32, 32, 32, 64]


def test_run_folder_round_trip(tmp_path):
    config = tiny_config()
    model = create_model(config).eval()
    save_run(tmp_path / "run", model, config)
    loaded, again = load_run(str(tmp_path / "run"))
    assert again == config
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))


def test_run_spec_errors(tmp_path):
    with pytest.raises(InputError, match="no such folder"):
        load_run(str(tmp_path / "nope"), "--init")
    (tmp_path / "half").mkdir()
    with pytest.raises(InputError, match=r"--init .*half: not a finished run folder \(no config.json or model.safetensors\)"):
        load_run(str(tmp_path / "half"), "--init")
    with pytest.raises(InputError, match="no such built-in classifier; built-in: builtin:glyphs-1k"):
        load_run("builtin:nope", "--teacher")


def test_builtin_classifier_spec():
    model, config = load_run("builtin:glyphs-1k", "--teacher")
    assert config.num_classes == 1000 and config.image_size == 16
    assert model(torch.zeros(1, 1, 16, 16)).shape == (1, 1000)


def test_training_stage_never_imports_the_generation_stage():
    import subprocess
    import sys

    code = ("import sys, train.cli, train.commands, train.trainer, train.data.shards; "
            "bad = [m for m in ('generate', 'diffusers') if m in sys.modules]; "
            "assert not bad, bad")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0
