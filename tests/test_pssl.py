"""pttrain pssl: FixMatch and UDA on labeled target images plus unlabeled pseudo samples."""

import json

import pytest
import torch
from click.testing import CliRunner

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
                           "--lr", 3e-3, "--warmup-epochs", 0, "--guard", "none", "--out", out, "--quiet"])
    assert result.exit_code == 0, result.output + result.stderr
    rows = [r for r in metrics(out) if "loss" in r]
    # An epoch is finetune's: one pass over the 3 labeled images in batches of 2.
    assert rows[-1]["step"] == 12 * 2
    # The total is noisy a logged interval (the unlabeled term follows each strong view's draw);
    # the run's second half against its first is not.
    half = len(rows) // 2
    mean = lambda part, key: sum(r[key] for r in part) / len(part)  # noqa: E731
    assert mean(rows[half:], "loss") < mean(rows[:half], "loss")
    assert mean(rows[half:], "loss_x") < mean(rows[:half], "loss_x")
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


def test_weights_scale_each_unlabeled_loss():
    weak = torch.tensor([[10.0, 0.0], [10.0, 0.0]])
    strong = torch.tensor([[0.0, 10.0], [0.0, 2.0]])
    full, _ = FixMatch(threshold=0.95).unlabeled_loss(weak, strong)
    each = torch.nn.functional.cross_entropy(strong, torch.tensor([0, 0]), reduction="none")
    weighted, _ = FixMatch(threshold=0.95).unlabeled_loss(weak, strong, torch.tensor([0.5, 0.0]))
    assert full.item() == pytest.approx(each.mean().item())
    assert weighted.item() == pytest.approx(0.5 * each[0].item() / 2)
    uda, _ = UDA(threshold=0.0).unlabeled_loss(weak, strong, torch.tensor([0.0, 0.0]))
    assert uda.item() == 0.0


def test_guard_weights():
    from train.guard import Guard

    assert [Guard("none").weight(c) for c in (0.1, 0.9)] == [1.0, 1.0]
    assert [Guard("weight").weight(c) for c in (0.1, 0.9)] == [0.1, 0.9]
    assert [Guard("drop", 0.3).weight(c) for c in (0.1, 0.3, 0.9)] == [0.0, 1.0, 1.0]
    summary = Guard("drop", 0.5).summary([0.2, 0.6, 1.0, 0.4])
    assert summary["pseudo_kept"] == 2 and summary["pseudo_mean_weight"] == 0.5
    assert summary["targets_mean_confidence"] == pytest.approx(0.55)
    # gate: all or nothing, by the targets' mean confidence.
    assert Guard("gate", 0.5).summary([0.2, 0.6, 1.0, 0.4])["pseudo_kept"] == 4
    assert Guard("gate", 0.6).summary([0.2, 0.6, 1.0, 0.4])["pseudo_kept"] == 0
    assert Guard("gate").weight_of() is None and Guard("none").weight_of() is None


def test_pseudo_samples_record_their_targets_confidence(pseudo_shards):
    from ptcommon.shards import read_header, read_samples, shard_paths

    samples = list(read_samples(shard_paths(pseudo_shards, read_header(pseudo_shards))))
    by_target = {}
    for sample in samples:
        by_target.setdefault(sample.meta["target_key"], set()).add(sample.meta["target_confidence"])
    # One confidence a target, shared by its samples; a top-1 probability over the 5 source classes.
    assert len(by_target) == 3 and all(len(c) == 1 for c in by_target.values())
    assert all(0.2 <= c <= 1 for cs in by_target.values() for c in cs)


def state(run_dir):
    from safetensors.torch import load_file

    return load_file(run_dir / "model.safetensors")


def same_weights(a, b) -> bool:
    sa, sb = state(a), state(b)
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa if "num_batches_tracked" not in k)


SCHEDULE = ["--arch", "test_resnet", "--batch-size", 2, "--epochs", 3, "--min-steps", 0, "--seed", 3, "--quiet"]


@pytest.fixture(scope="module")
def finetuned(target, tmp_path_factory):
    out = tmp_path_factory.mktemp("finetune") / "run"
    result = CliRunner().invoke(pttrain, [str(a) for a in ["finetune", "--data", target, "--init", "none", *SCHEDULE,
                                                           "--out", out]])
    assert result.exit_code == 0, result.output
    return out


def test_an_unlabeled_branch_at_weight_0_changes_nothing():
    """Why pssl skips it: computed, its loss adds exact zeros to the gradients and, with --bn-stats
    labeled, leaves batch norm's running statistics to the labeled images."""
    from train.trainer import Supervised

    torch.manual_seed(0)
    labeled, weak, strong = torch.randn(4, 3, 8, 8), torch.randn(6, 3, 8, 8) + 5, torch.randn(6, 3, 8, 8) + 5
    labels = torch.tensor([0, 1, 0, 1])

    def step(algorithm, batch):
        torch.manual_seed(1)
        net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.AdaptiveAvgPool2d(1),
                                  torch.nn.Flatten(), torch.nn.Linear(4, 2)).train()
        algorithm.loss(net, batch, torch.device("cpu"))[0].backward()
        return [p.grad for p in net.parameters()], [net[1].running_mean, net[1].running_var]

    computed = step(FixMatch(threshold=0.0, weight=0.0), ((labeled, labels), (weak, strong)))
    skipped = step(Supervised(), (labeled, labels))
    assert all(torch.equal(a, b) for part in range(2) for a, b in zip(computed[part], skipped[part]))


def test_the_control_is_finetune(cli, target, pseudo_shards, finetuned, tmp_path):
    """At unlabeled weight 0 the labeled branch is finetune's, batch for batch, so the weights are
    finetune's to the bit; at weight 1 the pseudo samples move them."""
    control, used = tmp_path / "control", tmp_path / "used"
    for out, weight in ((control, 0), (used, 1)):
        result = cli(pttrain, ["pssl", "--data", target, "--unlabeled", pseudo_shards, "--init", "none", "--guard", "none",
                               "--threshold", 0, "--unlabeled-weight", weight, *SCHEDULE, "--out", out])
        assert result.exit_code == 0, result.output + result.stderr
    assert same_weights(control, finetuned)
    assert json.loads((control / "train.json").read_text())["trained_as"] == "finetune"
    assert not same_weights(used, finetuned)


@pytest.mark.parametrize("guard", ["drop", "gate"])
def test_guard_keeps_samples_by_confidence(cli, target, pseudo_shards, finetuned, tmp_path, guard):
    from train.guard import target_confidences

    confidences = target_confidences(pseudo_shards)
    for threshold, kept in ((0, len(confidences)), (1, 0)):
        out = tmp_path / f"t{threshold}"
        result = cli(pttrain, ["pssl", "--data", target, "--unlabeled", pseudo_shards, "--init", "none", "--guard", guard,
                               "--guard-threshold", threshold, *SCHEDULE, "--out", out])
        assert result.exit_code == 0, result.output + result.stderr
        record = json.loads((out / "train.json").read_text())
        assert (record["guard"], record["guard_threshold"], record["pseudo_kept"]) == (guard, threshold, kept)
    # Nothing kept: the source does not know the target, and the run is finetune's.
    assert "keeps none of the 12 pseudo samples" in result.output
    assert same_weights(tmp_path / "t1", finetuned)


def test_guard_weight_records_the_mean_weight(cli, target, pseudo_shards, tmp_path):
    from train.guard import target_confidences

    out = tmp_path / "weighted"
    result = cli(pttrain, ["pssl", "--data", target, "--unlabeled", pseudo_shards, "--init", "none", "--guard", "weight",
                           *SCHEDULE, "--out", out])
    assert result.exit_code == 0, result.output + result.stderr
    record = json.loads((out / "train.json").read_text())
    confidences = target_confidences(pseudo_shards)
    assert record["pseudo_kept"] == 12
    assert record["pseudo_mean_weight"] == pytest.approx(sum(confidences) / len(confidences), abs=1e-6)


def test_guard_bad_input(cli, target, pseudo_shards, tmp_path):
    import shutil

    import pyarrow.parquet as pq

    old = tmp_path / "old"
    shutil.copytree(pseudo_shards, old)
    pq.write_table(pq.read_table(old / "manifest.parquet").drop_columns(["target_confidence"]), old / "manifest.parquet")
    cases = [
        (["--unlabeled", pseudo_shards, "--guard-threshold", 1.5], "1.5 is not in the range"),
        (["--unlabeled", pseudo_shards, "--guard", "weight", "--guard-threshold", 0.5], "only serves --guard drop or gate"),
        (["--unlabeled", target / "test", "--guard", "drop"], "a folder of real images"),
        (["--unlabeled", old], "rerun ptgen pseudo"),
    ]
    for args, expected in cases:
        result = cli(pttrain, ["pssl", "--data", target, "--init", "none", *args, "--out", tmp_path / "run"])
        assert result.exit_code != 0 and expected in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert not (tmp_path / "run").exists()


def test_the_labeled_branch_takes_finetunes_loss():
    """Label smoothing and mixup / CutMix reach pssl's labeled images as they reach finetune's: on the
    same random state, FixMatch's labeled loss is finetune's loss to the bit."""
    import numpy as np
    from timm.data import Mixup

    from train.trainer import Supervised

    torch.manual_seed(0)
    images, weak, strong = torch.randn(4, 3, 8, 8), torch.randn(6, 3, 8, 8), torch.randn(6, 3, 8, 8)
    labels = torch.tensor([0, 1, 0, 1])
    for labeled in (Supervised(0.1), Supervised(0.1, Mixup(mixup_alpha=0.4, cutmix_alpha=1.0, label_smoothing=0.1,
                                                           num_classes=2))):
        losses = []
        for algorithm, batch in ((labeled, (images.clone(), labels)),  # clones: Mixup mixes in place
                                 (FixMatch(labeled=labeled), ((images.clone(), labels), (weak, strong)))):
            torch.manual_seed(1)
            net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.AdaptiveAvgPool2d(1),
                                      torch.nn.Flatten(), torch.nn.Linear(4, 2)).train()
            np.random.seed(2)
            loss, stats = algorithm.loss(net, batch, torch.device("cpu"))
            losses.append(stats.get("loss_x", loss.detach()))
        assert torch.equal(*losses)
        assert not torch.equal(losses[0], Supervised().loss(net, (images, labels), torch.device("cpu"))[0].detach())


def test_the_control_is_finetune_with_its_recipe(cli, target, pseudo_shards, tmp_path):
    recipe = ["--smoothing", 0.1, "--mixup", 0.4, "--cutmix", 1.0]
    finetuned, control = tmp_path / "finetune", tmp_path / "control"
    result = cli(pttrain, ["finetune", "--data", target, "--init", "none", *recipe, *SCHEDULE, "--out", finetuned])
    assert result.exit_code == 0, result.output + result.stderr
    result = cli(pttrain, ["pssl", "--data", target, "--unlabeled", pseudo_shards, "--init", "none", "--unlabeled-weight",
                           0, *recipe, *SCHEDULE, "--out", control])
    assert result.exit_code == 0, result.output + result.stderr
    assert same_weights(control, finetuned)
    assert json.loads((control / "train.json").read_text())["settings"]["mixup"] == 0.4
    # With the pseudo samples counting, the recipe's labeled branch trains beside them.
    used = tmp_path / "used"
    result = cli(pttrain, ["pssl", "--data", target, "--unlabeled", pseudo_shards, "--init", "none", "--guard", "none",
                           "--threshold", 0, *recipe, *SCHEDULE, "--out", used])
    assert result.exit_code == 0, result.output + result.stderr
    assert not same_weights(used, finetuned)
    odd = cli(pttrain, ["pssl", "--data", target, "--unlabeled", pseudo_shards, "--init", "none", "--mixup", 0.2,
                        "--batch-size", 3, "--out", tmp_path / "odd"])
    assert odd.exit_code != 0 and "--mixup 0.2: mixes the images of a batch in pairs, so --batch-size must be even" in odd.stderr
    assert len(odd.stderr.strip().splitlines()) == 1 and not (tmp_path / "odd").exists()
