"""The training recipe's flags: --opt through timm, the learning-rate rule, regularisation, pp's held-out shards."""

import json

import pytest
import timm
import torch

from train.cli import main as pttrain
from train.trainer import TrainSettings, create_optimizer, effective_lr

FAST = ["--arch", "test_resnet", "--min-steps", 0, "--quiet"]


def test_the_default_optimizer_is_the_one_the_loop_always_built():
    """torch's AdamW over every parameter in one group, decayed alike: the runs before --opt are reproduced."""
    model = timm.create_model("test_resnet", num_classes=3)
    opt = create_optimizer(model, TrainSettings(lr=1e-3, weight_decay=0.05))
    before = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3, weight_decay=0.05)
    assert type(opt) is torch.optim.AdamW and len(opt.param_groups) == 1
    assert [p is q for p, q in zip(opt.param_groups[0]["params"], before.param_groups[0]["params"])] == \
        [True] * len(before.param_groups[0]["params"])
    strip = lambda g: {k: v for k, v in g.items() if k != "params"}  # noqa: E731
    assert strip(opt.param_groups[0]) == strip(before.param_groups[0])


def test_opt_names_and_timm_parameter_groups():
    model = timm.create_model("test_resnet", num_classes=3)
    sgd = create_optimizer(model, TrainSettings(opt="sgd", lr=0.1))
    assert type(sgd) is torch.optim.SGD and sgd.defaults["momentum"] == 0.9 and not sgd.defaults["nesterov"]
    assert create_optimizer(model, TrainSettings(opt="nesterov", lr=0.1)).defaults["nesterov"]
    lars = create_optimizer(model, TrainSettings(opt="lars", lr=0.1, wd_norm_bias=False))
    assert type(lars).__name__ == "Lars"
    decays = {g["weight_decay"]: {p.ndim for p in g["params"]} for g in lars.param_groups}
    assert decays == {0.0: {1}, 0.05: {2, 4}}  # norms and biases undecayed


@pytest.mark.parametrize("opt, batch, expected", [("sgd", 64, 0.025), ("lars", 1024, 0.4), ("adamw", 64, 0.05),
                                                  ("lamb", 1024, 0.2)])
def test_lr_base_is_per_256_images_of_global_batch(opt, batch, expected):
    lr, rule = effective_lr(TrainSettings(opt=opt, lr_base=0.1), batch)
    assert lr == pytest.approx(expected) and rule.startswith("--lr-base 0.1")
    assert effective_lr(TrainSettings(lr=1e-3), batch) == (1e-3, "--lr 0.001")


def test_the_start_line_and_train_json_carry_the_effective_lr(cli, target, tmp_path):
    out = tmp_path / "sgd"
    result = cli(pttrain, ["finetune", "--data", target, "--init", "none", "--opt", "sgd", "--lr-base", 0.2,
                           "--batch-size", 4, "--accum-steps", 2, "--epochs", 2, "--smoothing", 0.1, "--mixup", 0.4,
                           "--cutmix", 1.0, "--clip-grad", 1.0, "--img-size", 16, "--out", out, *FAST])
    assert result.exit_code == 0, result.stderr
    assert "--opt sgd at lr 0.00625 (--lr-base 0.2 x (8/256)) for a global batch of 8" in result.stderr
    record = json.loads((out / "train.json").read_text())
    assert record["lr"] == pytest.approx(0.00625) and record["optimizer"] == "SGD"
    assert record["settings"]["mixup"] == 0.4 and record["settings"]["clip_grad"] == 1.0


def test_pp_holds_out_shards_and_scores_on_them(cli, labeled_shards, tmp_path):
    out = tmp_path / "pp"
    result = cli(pttrain, ["pp", "--shards", labeled_shards, "--val-shards", 2, "--epochs", 2, "--batch-size", 4,
                           "--img-size", 16, "--out", out, *FAST])
    assert result.exit_code == 0, result.stderr
    assert "validation on 2 held-out shard(s) (6 images)" in result.stderr  # shards of 5, 5 and 1 of 21 samples
    record = json.loads((out / "train.json").read_text())
    assert record["val_shards"] == ["synth-000003.tar", "synth-000004.tar"]
    assert record["steps"] == 2 * (15 // 4)  # the 15 samples left
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["val_n"] for r in rows if "val_top1" in r] == [6, 6]
