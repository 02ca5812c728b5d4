"""A DiT folder through the README's commands, changed only in --model: synth, pseudo, pp, finetune."""

import json

import pytest

from generate.cli import main as ptgen
from ptcommon.shards import read_samples
from tiny_models import save_tiny_dit
from train.cli import main as pttrain

TRAIN = ["--arch", "test_resnet", "--epochs", "1", "--min-steps", "0", "--batch-size", "4", "--quiet"]


@pytest.fixture(scope="module")
def dit(tmp_path_factory):
    return save_tiny_dit(tmp_path_factory.mktemp("dit") / "model", num_classes=10)


def test_the_backend_is_chosen_from_the_folder(dit, cli):
    info = json.loads(cli(ptgen, ["models", dit, "--json"]).output)
    assert info["backend"] == "dit" and info["num_classes"] == 10 and info["image_size"] == 8
    assert info["channels"] == 3


def test_synth_pp_and_finetune_on_a_dit(dit, target, cli, tmp_path):
    out = tmp_path / "shards"
    synth = ["synth", "--model", dit, "--class-ids", "2,7", "--per-class", 3, "--steps", 3, "--shard-size", 4,
             "--quiet"]
    assert cli(ptgen, [*synth, "--out", out]).exit_code == 0
    header = json.loads((out / "dataset.json").read_text())
    assert header["channels"] == 3 and header["image_size"] == 8
    assert header["class_names"] == ["tiny class 2, synonym 2", "tiny class 7, synonym 7"]

    # The shard contract holds for DiT too: the batch size changes no byte, a rerun skips what is done.
    other = tmp_path / "batch1"
    assert cli(ptgen, [*synth, "--out", other, "--batch-size", 1]).exit_code == 0
    for shard in sorted(out.glob("*.tar")):
        assert (other / shard.name).read_bytes() == shard.read_bytes()
    again = cli(ptgen, [*synth, "--out", out])
    assert again.exit_code == 0 and "(2 already done)" in again.output

    runs = tmp_path / "runs"
    assert cli(pttrain, ["pp", "--shards", out, "--out", runs / "pp", *TRAIN]).exit_code == 0
    config = json.loads((runs / "pp" / "config.json").read_text())
    assert config["in_chans"] == 3 and config["source_ids"] == [2, 7]
    result = cli(pttrain, ["finetune", "--data", target, "--init", runs / "pp", "--out", runs / "ft", "--epochs", 1, "--min-steps", 0,
                           "--batch-size", 4, "--quiet"])
    assert result.exit_code == 0, result.output


def test_pseudo_on_a_dit(dit, classifier, target, cli, tmp_path):
    out = tmp_path / "pseudo"
    result = cli(ptgen, ["pseudo", "--model", dit, "--classifier", classifier, "--target", target, "--out", out,
                         "--per-target", 2, "--steps", 3, "--quiet"])
    assert result.exit_code == 0, result.output
    header = json.loads((out / "dataset.json").read_text())
    assert header["count"] == 6 and header["channels"] == 3 and not header["labeled"]


def test_fp16_on_cpu_is_refused_in_one_line(dit, cli, tmp_path):
    result = cli(ptgen, ["synth", "--model", dit, "--device", "cpu", "--dtype", "fp16", "--out", tmp_path / "o"])
    assert result.exit_code == 2 and "--dtype fp16: half precision is for CUDA" in result.stderr
    assert not (tmp_path / "o").exists()


def test_pseudo_with_a_timm_classifier_and_local_weights(timm_weights, target, cli, tmp_path):
    dit1000 = save_tiny_dit(tmp_path / "dit1000", num_classes=1000)
    out = tmp_path / "pseudo"
    args = ["pseudo", "--model", dit1000, "--classifier", "timm:test_resnet", "--classifier-weights", timm_weights,
            "--target", target, "--per-target", 1, "--steps", 2, "--quiet"]
    result = cli(ptgen, [*args, "--out", out])
    assert result.exit_code == 0, result.output
    header = json.loads((out / "dataset.json").read_text())
    assert header["classifier"] == "timm:test_resnet" and len(header["classifier_sha256"]) == 64
    # The soft labels are over ImageNet's index order, which the 1000-class DiT shares.
    tops = [sample.meta["top_classes"] for sample in read_samples(sorted(out.glob("*.tar")))]
    assert len(tops) == 3 and all(0 <= c < 1000 for top in tops for c, _ in top)


def test_a_timm_classifier_whose_classes_the_generator_lacks_is_refused(dit, timm_weights, target, cli, tmp_path):
    result = cli(ptgen, ["pseudo", "--model", dit, "--classifier", "timm:test_resnet", "--classifier-weights",
                         timm_weights, "--target", target, "--out", tmp_path / "out"])
    assert result.exit_code == 2
    assert "--classifier timm:test_resnet: its 1000 classes reach source class 10" in result.stderr
    assert "generator's classes are 0..9" in result.stderr and not (tmp_path / "out").exists()


def test_kd_with_a_timm_teacher_and_local_weights(timm_weights, target, cli, tmp_path):
    result = cli(pttrain, ["kd", "--data", target, "--teacher", "timm:test_resnet", "--teacher-weights", timm_weights,
                           "--out", tmp_path / "kd", *TRAIN, "--img-size", 16])
    assert result.exit_code == 0, result.output


def test_timm_weights_that_would_unpickle_code_are_refused(target, cli, tmp_path):
    import pickle

    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return open, (str(marker), "w")

    weights = tmp_path / "evil.pth"
    weights.write_bytes(pickle.dumps({"conv1.weight": Payload()}))
    result = cli(pttrain, ["kd", "--data", target, "--teacher", "timm:test_resnet", "--teacher-weights", weights,
                           "--out", tmp_path / "kd", *TRAIN])
    assert result.exit_code == 2 and "refusing to unpickle it" in result.stderr
    assert not marker.exists() and not (tmp_path / "kd").exists()


def test_compile_runs_and_is_part_of_the_config(dit, cli, tmp_path):
    args = ["synth", "--model", dit, "--classes", 2, "--per-class", 1, "--steps", 2, "--quiet"]
    assert cli(ptgen, [*args, "--out", tmp_path / "eager"]).exit_code == 0
    result = cli(ptgen, [*args, "--out", tmp_path / "compiled", "--compile"])
    assert result.exit_code == 0, result.output
    eager, compiled = (json.loads((tmp_path / d / "dataset.json").read_text()) for d in ("eager", "compiled"))
    assert compiled["compiled"] and not eager["compiled"] and compiled["config_hash"] != eager["config_hash"]


def test_compile_without_a_compiler_is_refused_in_one_line(dit, cli, tmp_path, monkeypatch):
    import shutil

    monkeypatch.setattr(shutil, "which", lambda name: None)
    result = cli(ptgen, ["synth", "--model", dit, "--device", "cpu", "--compile", "--out", tmp_path / "o"])
    assert result.exit_code == 2 and "--compile: compiling for the CPU needs a C++ compiler" in result.stderr
    assert not (tmp_path / "o").exists()


def test_hub_sources_while_the_hub_is_unreachable_say_how_to_go_local(target, cli, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the state of an offline machine, without waiting on the network
    result = cli(ptgen, ["synth", "--model", "facebook/DiT-XL-2-256", "--out", tmp_path / "o"])
    assert result.exit_code == 2 and "could not fetch it from the model hub" in result.stderr
    assert "pass a local diffusers model folder" in result.stderr and not (tmp_path / "o").exists()
    result = cli(pttrain, ["kd", "--data", target, "--teacher", "timm:resnet18", "--out", tmp_path / "kd", *TRAIN])
    assert result.exit_code == 2 and "could not fetch timm's pretrained weights" in result.stderr
    assert "--teacher-weights FILE" in result.stderr and not (tmp_path / "kd").exists()
