"""pttrain pssl: FixMatch and UDA on labeled target images plus unlabeled pseudo samples."""

import json

import pytest
import torch

from train.cli import main as pttrain
from train.ssl import UDA, FixMatch


def metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_fixmatch_masks_unconfident_predictions():
    weak = torch.tensor([[10.0, 0.0], [0.1, 0.0]])  # confident, unconfident
    strong = torch.tensor([[0.0, 10.0], [0.0, 10.0]])
    loss, used = FixMatch(threshold=0.95).unlabeled_loss(weak, strong)
    assert used.item() == 0.5
    assert loss.item() == pytest.approx(torch.nn.functional.cross_entropy(strong[:1], torch.tensor([0])).item() / 2)


def test_uda_targets_are_sharpened():
    weak = torch.tensor([[2.0, 0.0]])
    loss_same, _ = UDA(threshold=0.0).unlabeled_loss(weak, weak / 0.4)
    loss_other, _ = UDA(threshold=0.0).unlabeled_loss(weak, weak)
    assert loss_same.item() == pytest.approx(0.0, abs=1e-6) and loss_other.item() > 0


@pytest.mark.parametrize("algo", ["fixmatch", "uda"])
def test_pssl_on_pseudo_shards_lowers_its_loss(cli, target, pseudo_shards, tmp_path, algo):
    out = tmp_path / algo
    result = cli(pttrain, ["pssl", "--data", target, "--unlabeled", pseudo_shards, "--init", "none", "--algo", algo,
                           "--arch", "test_resnet", "--threshold", 0, "--ratio", 2, "--batch-size", 2, "--epochs", 12, "--min-steps", 0,
                           "--lr", 3e-3, "--warmup-epochs", 0, "--out", out, "--quiet"])
    assert result.exit_code == 0, result.output + result.stderr
    rows = [r for r in metrics(out) if "loss" in r]
    assert rows[-1]["step"] == 12 * 3 and rows[-1]["loss"] < rows[0]["loss"]
    assert all(r["mask"] == 1.0 for r in rows)
    assert (out / "model.safetensors").exists()
    assert "bn_stats='labeled'" in json.loads((out / "train.json").read_text())["algorithm"]


def test_oracle_with_a_folder_of_real_images(cli, target, tmp_path):
    out = tmp_path / "oracle"
    result = cli(pttrain, ["pssl", "--data", target, "--unlabeled", target / "test", "--init", "none",
                           "--arch", "test_resnet", "--ratio", 1, "--batch-size", 1, "--epochs", 1, "--min-steps", 0, "--out", out,
                           "--quiet"])
    assert result.exit_code == 0, result.output + result.stderr
    assert json.loads((out / "train.json").read_text())["unlabeled"] == str(target / "test")


def test_pssl_bad_input(cli, tiny_model, target, tmp_path):
    from click.testing import CliRunner

    from generate.cli import main as ptgen

    synth = tmp_path / "synth"
    assert CliRunner().invoke(ptgen, ["synth", "--model", str(tiny_model), "--out", str(synth), "--per-class", "1",
                                      "--quiet"]).exit_code == 0
    (tmp_path / "empty").mkdir()
    for unlabeled, expected in ((synth, "holds labeled shards from ptgen synth"), (tmp_path / "empty", "no images found")):
        result = cli(pttrain, ["pssl", "--data", target, "--unlabeled", unlabeled, "--init", "none",
                               "--out", tmp_path / "run"])
        assert result.exit_code != 0 and expected in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert not (tmp_path / "run").exists()


def test_bn_stats_labeled_keeps_running_statistics_to_the_labeled_images():
    """--bn-stats labeled: after a step, batch norm's running mean is what the labeled images alone
    give; mixed (FixMatch's one pass) lets the unlabeled images move it."""
    from train.ssl import FixMatch

    torch.manual_seed(0)
    labeled, weak, strong = torch.randn(4, 3, 8, 8), torch.randn(6, 3, 8, 8) + 5, torch.randn(6, 3, 8, 8) + 5
    batch = ((labeled, torch.tensor([0, 1, 0, 1])), (weak, strong))

    def model():
        torch.manual_seed(1)
        return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.AdaptiveAvgPool2d(1),
                                   torch.nn.Flatten(), torch.nn.Linear(4, 2)).train()

    reference = model()
    reference(labeled)
    means = {}
    for stats in ("mixed", "labeled"):
        net = model()
        FixMatch(threshold=0.0, bn_stats=stats).loss(net, batch, torch.device("cpu"))[0].backward()
        means[stats] = net[1].running_mean
    assert torch.allclose(means["labeled"], reference[1].running_mean)
    assert not torch.allclose(means["mixed"], reference[1].running_mean)


def test_bn_stats_default_is_labeled_where_it_can_run():
    from ptcommon.cli import InputError
    from train.ssl import bn_stats_for

    assert bn_stats_for(None, distributed=False, batch_size=16) == "labeled"
    assert bn_stats_for(None, distributed=True, batch_size=16) == "mixed"
    assert bn_stats_for(None, distributed=False, batch_size=1) == "mixed"
    assert bn_stats_for("mixed", distributed=False, batch_size=16) == "mixed"
    with pytest.raises(InputError, match="--bn-stats labeled.*torchrun"):
        bn_stats_for("labeled", distributed=True, batch_size=16)
    with pytest.raises(InputError, match="--bn-stats labeled needs --batch-size 2"):
        bn_stats_for("labeled", distributed=False, batch_size=1)
