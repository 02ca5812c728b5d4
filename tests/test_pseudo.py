"""`ptgen pseudo`: pseudo conditional sampling into unlabeled shards."""

import json

import pyarrow.parquet as pq
import pytest
import webdataset as wds
from click.testing import CliRunner

from generate.cli import main as ptgen
from ptcommon.runfolder import ModelConfig, create_model
from train.models import save_run


def pseudo(model, classifier, target, out, *extra):
    args = ["pseudo", "--model", model, "--classifier", classifier, "--target", target, "--out", out,
            "--per-target", 4, "--shard-size", 5, "--quiet", *extra]
    return CliRunner().invoke(ptgen, [str(a) for a in args])


def test_pseudo_shards_are_unlabeled_and_name_their_targets(tiny_model, classifier, target, tmp_path):
    out = tmp_path / "ps"
    result = pseudo(tiny_model, classifier, target, out, "--top-k", 2, "--temperature", 0.5)
    assert result.exit_code == 0, result.output
    header = json.loads((out / "dataset.json").read_text())
    assert header["labeled"] is False and header["count"] == 12 and header["num_targets"] == 3
    samples = list(wds.WebDataset(sorted(str(p) for p in out.glob("pseudo-*.tar")), shardshuffle=False))
    assert len(samples) == 12 and not any("cls" in s for s in samples)
    keys = [json.loads(s["json"])["target_key"] for s in samples]
    assert keys == ["train/a/1.png"] * 4 + ["train/a/2.png"] * 4 + ["train/b/3.png"] * 4
    top = json.loads(samples[0]["json"])["top_classes"]
    assert len(top) == 2 and abs(sum(p for _, p in top) - 1) < 1e-5
    assert not (out / "_info.json").exists()  # nothing for timm to train a labeled head on
    assert pq.read_table(out / "manifest.parquet").num_rows == 12
    assert "source classifier on the 3 targets: mean top-1 probability" in result.output + result.stderr


def test_confidence_note_warns_when_the_classifier_recognises_few_targets():
    import torch

    from generate.soft_labels import confidence_note

    line, unsure = confidence_note(torch.tensor([0.9, 0.7, 0.8]))
    assert not unsure and line == "source classifier on the 3 targets: mean top-1 probability 0.80 (median 0.80)"
    line, unsure = confidence_note(torch.tensor([0.05, 0.1, 0.2]))
    assert unsure and "mean top-1 probability 0.12" in line and "ptgen inspect" in line


def test_pseudo_is_deterministic_across_batches_ranks_and_reruns(tiny_model, classifier, target, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert pseudo(tiny_model, classifier, target, a).exit_code == 0
    for rank in (1, 0):
        assert pseudo(tiny_model, classifier, target, b, "--batch-size", 3, "--rank", rank, "--world", 2).exit_code == 0
    assert [p.read_bytes() for p in sorted(a.glob("*.tar"))] == [p.read_bytes() for p in sorted(b.glob("*.tar"))]
    again = pseudo(tiny_model, classifier, target, a)
    assert again.exit_code == 0 and "(3 already done)" in again.output
    clash = pseudo(tiny_model, classifier, target, a, "--top-k", 2)
    assert clash.exit_code != 0 and "holds shards of another config" in clash.stderr


def test_random_condition_ignores_the_targets(tiny_model, classifier, target, tmp_path):
    """--condition random: each sample one source class drawn from its own seed, the same in a rerun;
    a config of its own, so it never mixes with soft-label shards."""
    out, again, soft = tmp_path / "random", tmp_path / "again", tmp_path / "soft"
    for folder in (out, again):
        result = pseudo(tiny_model, classifier, target, folder, "--condition", "random")
        assert result.exit_code == 0 and "mean top-1 probability" not in result.output + result.stderr
    assert pseudo(tiny_model, classifier, target, soft).exit_code == 0
    samples = list(wds.WebDataset(sorted(str(p) for p in out.glob("pseudo-*.tar")), shardshuffle=False))
    tops = [json.loads(s["json"])["top_classes"] for s in samples]
    assert all(len(t) == 1 and t[0][1] == 1.0 for t in tops)
    assert len({t[0][0] for t in tops}) > 1  # 12 draws over 5 classes
    assert [p.read_bytes() for p in sorted(out.glob("*.tar"))] == [p.read_bytes() for p in sorted(again.glob("*.tar"))]
    hashes = {json.loads((f / "dataset.json").read_text())["config_hash"] for f in (out, soft)}
    assert len(hashes) == 2


def test_contact_sheet_puts_each_target_before_its_pseudo_samples(tiny_model, classifier, target, tmp_path):
    from PIL import Image

    out, sheet = tmp_path / "ps", tmp_path / "sheet.png"
    assert pseudo(tiny_model, classifier, target, out).exit_code == 0
    result = CliRunner().invoke(ptgen, ["inspect", str(out), "--grid", str(sheet), "--target", str(target)])
    assert result.exit_code == 0, result.output + result.stderr
    assert Image.open(sheet).size[1] > 100  # three rows of a target and its four samples
    wrong = CliRunner().invoke(ptgen, ["inspect", str(out), "--grid", str(tmp_path / "x.png"), "--target", str(tmp_path)])
    assert wrong.exit_code != 0 and "give the --target folder the pseudo samples were made from" in wrong.stderr


@pytest.mark.parametrize("case, expected", [
    ("no-train", "no train/ folder"),
    ("k0", "'--per-target': 0 is not in the range x>=1"),
    ("idle-temperature", "--temperature 2 does nothing at --top-k 1 (the default)"),
    ("mismatch", "3 classes without source ids; the generator has 5"),
])
def test_pseudo_bad_input(tiny_model, classifier, target, tmp_path, case, expected):
    extra, tgt, cls = [], target, classifier
    if case == "no-train":
        tgt = tmp_path
    elif case == "k0":
        extra = ["--per-target", 0]
    elif case == "idle-temperature":
        extra = ["--temperature", 2]
    else:
        config = ModelConfig("test_resnet", 3, ["x", "y", "z"], 8, 1, [0.5], [0.5])
        cls = tmp_path / "other"
        save_run(cls, create_model(config), config)
    out = tmp_path / "out"
    result = pseudo(tiny_model, cls, tgt, out, *extra)
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.stderr
    assert not out.exists()
