"""Synthetic images as labeled extra data (--extra-labeled, --extra-weight) in finetune and pssl's
labeled branch: labels matched to the target's class names, the weighted term, its record, its refusals."""

import json
import shutil

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from generate.cli import main as ptgen
from test_foreign_shards import jpeg, write_set
from train.cli import main as pttrain
from train.runs import CHECKPOINT_FILE
from train.trainer import Trainer

FAST = ["--init", "none", "--arch", "test_resnet", "--batch-size", 4, "--epochs", 2, "--min-steps", 0, "--workers", 0,
        "--quiet"]
DIGITS = [str(d) for d in range(10)]

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """The digits target with 2 labeled images a class; without test/ (899 images the run's end would score)."""
    out = tmp_path_factory.mktemp("digits") / "digits"
    assert CliRunner().invoke(pttrain, ["data", "digits", "--out", str(out), "--labels-per-class", "2"]).exit_code == 0
    for part in ("test", "unlabeled"):
        shutil.rmtree(out / part)
    return out


def named_synth(tiny_model, folder, names: list[str], per_class: int):
    """ptgen synth of the tiny UNet, its classes renamed NAMES (its ptgen.json class_names)."""
    model = shutil.copytree(tiny_model, folder / "model")
    meta = json.loads((model / "ptgen.json").read_text())
    (model / "ptgen.json").write_text(json.dumps({**meta, "class_names": names}))
    out = folder / "shards"
    args = ["synth", "--model", model, "--out", out, "--per-class", per_class, "--shard-size", 5, "--quiet"]
    assert CliRunner().invoke(ptgen, [str(a) for a in args]).exit_code == 0
    return out


@pytest.fixture(scope="module")
def digit_synth(tiny_model, tmp_path_factory):
    """10 synthetic images of classes named "0" to "4", the digits' own class names."""
    return named_synth(tiny_model, tmp_path_factory.mktemp("digit_synth"), DIGITS[:5], 2)


def pseudo(tiny_model, classifier, target, out):
    args = ["pseudo", "--model", tiny_model, "--classifier", classifier, "--target", target, "--out", out,
            "--per-target", 1, "--shard-size", 8, "--quiet"]
    result = CliRunner().invoke(ptgen, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return out


def cls_set(folder, info: dict | None):
    """Another tool's labeled shards: 2 tars of 4 RGB images of class ids 0..2, with INFO as _info.json."""
    write_set(folder, "train-{:06d}.tar", 2, 4, lambda i: {"jpg": jpeg(i), "cls": str(i % 3).encode()})
    if info is not None:
        (folder / "_info.json").write_text(json.dumps(info))
    return f"{folder}/train-{{000000..000001}}.tar"


def train(cli, command, digits, out, *args):
    result = cli(pttrain, [command, "--data", digits, *FAST, "--out", out, *args])
    assert result.exit_code == 0, result.output + result.stderr
    return out


def weights(run):
    return load_file(str(run / "model.safetensors"))


def same(a, b) -> bool:
    return a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


def test_class_named_synth_shards_add_a_weighted_term(cli, digits, digit_synth, tmp_path):
    plain = train(cli, "finetune", digits, tmp_path / "plain")
    extra = ["--extra-labeled", digit_synth]
    once, again = (train(cli, "finetune", digits, tmp_path / name, *extra) for name in ("once", "again"))
    control = train(cli, "finetune", digits, tmp_path / "control", *extra, "--extra-weight", 0)
    assert same(weights(once), weights(again))
    assert not same(weights(once), weights(control))
    # At weight 0 the extra images are not read: the run is the plain one, weight for weight.
    assert same(weights(control), weights(plain))

    record = json.loads((once / "train.json").read_text())
    header = json.loads((digit_synth / "dataset.json").read_text())
    assert record["extra_labeled"] == {"data": str(digit_synth), "config_hash": header["config_hash"], "count": 10,
                                       "classes": 5, "labels": "class_names", "weight": 1.0}
    assert record["settings"]["extra_weight"] == 1.0
    assert json.loads((control / "train.json").read_text())["extra_labeled"]["weight"] == 0
    rows = [json.loads(line) for line in (once / "metrics.jsonl").read_text().splitlines()]
    assert all("loss_extra" in r and "extra_top1" in r for r in rows if "loss" in r)


def test_pseudo_samples_are_labeled_by_their_target_class(cli, digits, tiny_model, classifier, tmp_path):
    shards = pseudo(tiny_model, classifier, digits, tmp_path / "pseudo")
    out = train(cli, "finetune", digits, tmp_path / "run", "--extra-labeled", shards, "--workers", 1)
    record = json.loads((out / "train.json").read_text())["extra_labeled"]
    assert (record["count"], record["classes"], record["labels"]) == (20, 10, "target_class")
    assert not same(weights(out), weights(train(cli, "finetune", digits, tmp_path / "plain", "--workers", 1)))


def test_a_run_with_extra_data_resumes_to_the_weights_of_one_never_stopped(cli, digits, digit_synth, tmp_path,
                                                                           monkeypatch):
    args = ["--extra-labeled", digit_synth, "--checkpoint-every", 4]
    straight = train(cli, "finetune", digits, tmp_path / "straight", *args)
    step = Trainer._train_step

    def stopped_after_6(self, *a):
        if self.step == 6:
            raise KeyboardInterrupt
        step(self, *a)

    monkeypatch.setattr(Trainer, "_train_step", stopped_after_6)
    out = tmp_path / "resumed"
    assert cli(pttrain, ["finetune", "--data", digits, *FAST, "--out", out, *args]).exit_code == 130
    assert torch.load(out / CHECKPOINT_FILE, weights_only=True)["step"] == 4
    monkeypatch.undo()
    train(cli, "finetune", digits, out, *args, "--resume")
    assert same(weights(straight), weights(out))


def test_pssl_takes_a_named_brace_list_in_its_labeled_branch(cli, digits, pseudo_shards, tmp_path):
    shards = cls_set(tmp_path / "wds", {"class_names": ["3", "5", "7"]})
    out = train(cli, "pssl", digits, tmp_path / "pssl", "--unlabeled", pseudo_shards, "--guard", "none",
                "--extra-labeled", shards, "--extra-weight", 0.5)
    record = json.loads((out / "train.json").read_text())["extra_labeled"]
    assert (record["count"], record["classes"], record["labels"], record["weight"]) == (8, 3, "class_names", 0.5)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]
    assert rows and all("loss_extra" in r and "loss_u" in r for r in rows)


REFUSALS = {
    "some": "3 of its classes are not classes of --data {digits}: 'cat', 'dog', 'emu'; every class",
    "none": "none of its 3 classes ('tiny class 1', 'tiny class 3', 'tiny class 4') is a class of --data",
    "unnamed": "its labels are class ids without names",
    "unlabeled": "its samples have no labels (no .cls member)",
    "pseudo of unlabeled": "3 of its 3 pseudo samples carry no target_class (their target images had no labels)",
    "negative": "Invalid value for '--extra-weight'",
    "weight alone": "--extra-weight 0.5: weighs the loss of --extra-labeled's images; give --extra-labeled",
}


@pytest.mark.parametrize("case", REFUSALS)
def test_extra_data_refused_in_one_line_before_the_run(cli, digits, tiny_model, classifier, labeled_shards, tmp_path,
                                                        case):
    if case == "some":
        args = ["--extra-labeled", named_synth(tiny_model, tmp_path, ["0", "1", "cat", "dog", "emu"], 1)]
    elif case == "none":
        args = ["--extra-labeled", labeled_shards]
    elif case == "unnamed":
        args = ["--extra-labeled", cls_set(tmp_path / "wds", None)]
    elif case == "unlabeled":
        write_set(tmp_path / "web", "{:05d}.tar", 1, 3, lambda i: {"jpg": jpeg(i), "txt": b"a photo"})
        args = ["--extra-labeled", f"{tmp_path}/web/00000.tar"]
    elif case == "pseudo of unlabeled":
        images = tmp_path / "flat" / "train"
        images.mkdir(parents=True)
        for i in range(3):  # in train/ itself, in no class folder
            shutil.copy(next((digits / "train" / str(i)).iterdir()), images / f"{i}.png")
        args = ["--extra-labeled", pseudo(tiny_model, classifier, images.parent, tmp_path / "pseudo")]
    elif case == "negative":
        args = ["--extra-labeled", labeled_shards, "--extra-weight", -1]
    else:
        args = ["--extra-weight", 0.5]
    out = tmp_path / "run"
    result = cli(pttrain, ["finetune", "--data", digits, *FAST, "--out", out, *args])
    assert result.exit_code == 2 and REFUSALS[case].format(digits=digits) in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()
