"""pttrain --seed: the same command and seed give the same weights, another seed other weights,
and a run interrupted and resumed ends with the weights of an uninterrupted one."""

import pytest
import torch
from safetensors.torch import load_file

from train.cli import main as pttrain
from train.commands import TargetInfo, prepare_model
from train.trainer import Trainer

FAST = ["--arch", "test_resnet", "--img-size", "16", "--min-steps", "0", "--quiet"]


def finetune(target, *extra):
    """Scratch: 3 images in batches of 2 are 2 steps an epoch, 6 in all."""
    return ["finetune", "--data", target, "--init", "none", "--epochs", 3, "--batch-size", 2, *extra]


def pssl(target, pseudo_shards, *extra):
    """FixMatch (RandAugment, random erasing) on 12 pseudo shard samples, 4 a batch beside finetune's 2-step
    epochs; every sample counts (no guard), so that the unlabeled branch runs whatever the tiny classifier knows."""
    return ["pssl", "--data", target, "--unlabeled", pseudo_shards, "--init", "none", "--ratio", 2,
            "--batch-size", 2, "--epochs", 3, "--threshold", 0, "--guard", "none", *extra]


def weights(cli, args, out) -> dict[str, torch.Tensor]:
    result = cli(pttrain, [*args, "--out", out, *FAST])
    assert result.exit_code == 0, result.output + result.stderr
    return load_file(str(out / "model.safetensors"))


def equal(a: dict, b: dict) -> bool:
    assert a.keys() == b.keys()
    return all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("command", ["finetune", "finetune-workers", "pssl", "kd"])
def test_the_same_seed_gives_the_same_weights(cli, target, pseudo_shards, tmp_path, command):
    args = {"finetune": finetune(target, "--seed", 7),
            "finetune-workers": finetune(target, "--seed", 7, "--workers", 2, "--epochs", 2),
            "pssl": pssl(target, pseudo_shards, "--seed", 7),
            "kd": ["kd", "--data", target, "--epochs", 1, "--batch-size", 2, "--seed", 7]}[command]
    first, second = weights(cli, args, tmp_path / "1"), weights(cli, args, tmp_path / "2")
    assert equal(first, second)


def test_another_seed_gives_other_weights(cli, target, tmp_path):
    assert not equal(weights(cli, finetune(target, "--seed", 1), tmp_path / "1"),
                     weights(cli, finetune(target, "--seed", 2), tmp_path / "2"))


def test_the_seed_draws_the_initial_weights(target):
    info = TargetInfo(["a", "b"], 1, 12)

    def initial(seed):
        return prepare_model(info, "none", "test_resnet", 16, seed=seed)[0].state_dict()

    assert equal(initial(3), initial(3)) and not equal(initial(3), initial(4))


@pytest.mark.parametrize("command", ["finetune", "finetune-workers", "pssl"])
def test_an_interrupted_run_resumes_to_the_weights_of_an_uninterrupted_one(cli, target, pseudo_shards, tmp_path,
                                                                           monkeypatch, command):
    # Interrupted mid-epoch: after step 3 of 2-step epochs (pssl's are finetune's).
    args, stop = {"finetune": (finetune(target, "--seed", 5), 3),
                  "finetune-workers": (finetune(target, "--seed", 5, "--workers", 2), 3),
                  "pssl": (pssl(target, pseudo_shards, "--seed", 5), 3)}[command]
    args = [*args, "--checkpoint-every", 1]
    straight = weights(cli, args, tmp_path / "straight")
    out = tmp_path / "interrupted"
    assert interrupted(cli, args, out, stop, monkeypatch) == list(range(1, stop + 1))
    assert (out / "checkpoint.pt").exists() and not (out / "model.safetensors").exists()
    assert equal(weights(cli, [*args, "--resume"], out), straight)


def interrupted(cli, args, out, stop, monkeypatch) -> list[int]:
    """Run ARGS into OUT, checkpointing every step, until a KeyboardInterrupt after step STOP; the steps checkpointed."""
    checkpoint, steps = Trainer._checkpoint, []

    def interrupt(self):
        checkpoint(self)
        steps.append(self.step)
        if self.step == stop:
            raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "_checkpoint", interrupt)
        result = cli(pttrain, [*args, "--out", out, *FAST])
    assert result.exit_code == 130, result.output + result.stderr
    return steps


@pytest.mark.parametrize("changed, expected", [
    (["--lr", "0.5"], "was started with --lr 0.001, this command gives 0.5"),
    (["--bn-stats", "mixed"], "bn_stats='labeled'"),
    (["--checkpoint-every", "7"], None),  # how often it saves changes nothing it computes
])
def test_a_resume_with_other_settings_is_refused(cli, target, pseudo_shards, tmp_path, monkeypatch, changed, expected):
    args = [*pssl(target, pseudo_shards), "--checkpoint-every", 1]
    out = tmp_path / "run"
    interrupted(cli, args, out, 2, monkeypatch)
    result = cli(pttrain, [*args, *changed, "--resume", "--out", out, *FAST])
    if expected is None:
        assert result.exit_code == 0, result.output + result.stderr
        return
    assert result.exit_code != 0 and expected in result.stderr and "resume with the run's own flags" in result.stderr
    assert (out / "checkpoint.pt").exists()  # the refusal leaves the run resumable
