"""Photo targets: channels and input size from the data as a whole, validation parts, and --init timm:NAME."""

import json

import pytest
import torch
from PIL import Image

from train.cli import main as pttrain
from train.commands import TargetRequest, model_input, open_labeled
from train.data.folder import FolderSource

FAST = ["--min-steps", 0, "--quiet"]


def photo_folder(root, first_gray: bool = True):
    """3 classes of RGB photos of 260-300 px, 2 training images each (and a test image); the
    alphabetically first file is grayscale."""
    for c, cls in enumerate(("a", "b", "c")):
        for i, size in enumerate((260, 300)):
            path = root / "train" / cls / f"{i}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            image = Image.new("RGB", (size, size - 20 * i), (80 * c, 200 - 40 * i, 60))
            (image.convert("L") if first_gray and (c, i) == (0, 0) else image).save(path)
        path = root / "test" / cls / "0.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (287, 287), (80 * c, 100, 60)).save(path)
    return root


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return photo_folder(tmp_path_factory.mktemp("photos") / "data")


def trained(cli, out, *args):
    result = cli(pttrain, [*args, "--out", out, *FAST])
    assert result.exit_code == 0, result.output + result.stderr
    return result, json.loads((out / "config.json").read_text()), json.loads((out / "train.json").read_text())


def test_a_grayscale_first_photo_makes_neither_a_gray_model_nor_one_at_its_size(photos, monkeypatch):
    """Once, a folder like this trained a 1-channel resnet18 at 287 px: the first file decided both."""
    monkeypatch.setattr(FolderSource, "load", lambda self, i: pytest.fail("the shape is read from headers alone"))
    target = open_labeled(photos, "--data", None).target
    assert target.in_chans == 3
    assert model_input(target, "none", "resnet18", None, None) == (224, 3)  # resnet18's pretrained input size
    assert model_input(target, "none", "resnet18", 96, 1) == (96, 1)  # --img-size and --in-chans override
    small = photo_folder(photos.parent / "small", first_gray=False)
    for path in small.rglob("*.jpg"):  # RGB photos below the pretrained size keep the data's size
        Image.open(path).resize((64, 48)).save(path)
    assert model_input(open_labeled(small, "--data", None).target, "none", "resnet18", None, None) == (64, 3)


def test_finetune_on_photos_trains_rgb_at_the_pretrained_size_and_tests_at_the_end(cli, photos, tmp_path):
    result, config, record = trained(cli, tmp_path / "ft", "finetune", "--data", photos, "--init", "none",
                                     "--arch", "test_resnet", "--epochs", 1, "--batch-size", 4)
    assert (config["in_chans"], config["image_size"]) == (3, 160)  # test_resnet's pretrained input size
    assert "no validation curve" in result.stderr and "--val-split 0.1" in result.stderr
    assert record["test_n"] == 3 and record["val_n"] is None


def test_val_folder_or_split_draws_the_curve(cli, photos, tmp_path):
    _, _, record = trained(cli, tmp_path / "split", "finetune", "--data", photos, "--init", "none", "--arch",
                           "test_resnet", "--img-size", 32, "--epochs", 2, "--batch-size", 4, "--val-split", 0.5)
    assert (record["train_n"], record["val_n"]) == (3, 3)  # one of each class's two images
    rows = [json.loads(line) for line in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()]
    assert [r["val_n"] for r in rows if "val_top1" in r] == [3, 3]

    data = open_labeled(photos, "--data", None, request=TargetRequest(val_split=0.5, seed=1))
    again = open_labeled(photos, "--data", None, request=TargetRequest(val_split=0.5, seed=1))
    assert sorted(data.val_set.targets) == [0, 1, 2] and data.val_set.indices == again.val_set.indices

    with_val = photos.parent / "with_val"
    photo_folder(with_val)
    for cls in ("a", "b", "c"):
        (with_val / "val" / cls).mkdir(parents=True)
        (with_val / "train" / cls / "1.jpg").rename(with_val / "val" / cls / "1.jpg")
    result, _, record = trained(cli, tmp_path / "val", "finetune", "--data", with_val, "--init", "none", "--arch",
                                "test_resnet", "--img-size", 32, "--epochs", 1, "--batch-size", 4)
    assert "validation on its val part (3 images)" in result.stderr and record["val_n"] == 3


@pytest.fixture(scope="module")
def effnet_weights(tmp_path_factory):
    """Random test_efficientnet weights with an ImageNet head, saved as timm's train.py saves its best
    checkpoint: under state_dict, beside its arguments (an argparse Namespace)."""
    import argparse

    import timm

    torch.manual_seed(0)
    model = timm.create_model("test_efficientnet")
    path = tmp_path_factory.mktemp("effnet") / "model_best.pth.tar"
    torch.save({"epoch": 3, "arch": "test_efficientnet", "state_dict": model.state_dict(),
                "args": argparse.Namespace(model="test_efficientnet", lr=0.1)}, path)
    return path, model.state_dict()


def test_init_timm_takes_the_weights_a_fresh_head_and_their_preprocessing(cli, photos, tmp_path, effnet_weights):
    path, state = effnet_weights
    out = tmp_path / "ref"
    _, config, record = trained(cli, out, "finetune", "--data", photos, "--init", "timm:test_efficientnet",
                                "--init-weights", path, "--img-size", 32, "--epochs", 1, "--batch-size", 4,
                                "--lr", 1e-12, "--weight-decay", 0)
    assert config["arch"] == "test_efficientnet" and config["num_classes"] == 3 and config["in_chans"] == 3
    assert config["mean"] == pytest.approx([0.485, 0.456, 0.406]) and config["interpolation"] == "bicubic"
    assert record["init"] == "timm:test_efficientnet"
    from safetensors.torch import load_file

    shipped = load_file(str(out / "model.safetensors"))
    assert shipped["classifier.weight"].shape == (3, state["classifier.weight"].shape[1])
    assert torch.allclose(shipped["conv_stem.weight"], state["conv_stem.weight"], atol=1e-6)


def test_init_timm_with_grayscale_targets_folds_the_first_convolution(tmp_path, effnet_weights, target):
    from train.commands import prepare_model

    info = open_labeled(target, "--data", None).target
    model, config = prepare_model(info, "timm:test_efficientnet", "resnet18", 32, in_chans=1,
                                  init_weights=effnet_weights[0])
    assert config.in_chans == 1 and model.conv_stem.weight.shape[1] == 1
    assert torch.allclose(model.conv_stem.weight[:, 0], effnet_weights[1]["conv_stem.weight"].sum(1), atol=1e-5)


def one_class(root):
    for i in range(2):
        path = root / "train" / "only" / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (20, 20), (50 * i, 0, 0)).save(path)
    return root


@pytest.mark.parametrize("args, expected", [
    (["--data", "{photos}", "--opt", "adamx"], "--opt adamx: not an optimizer timm knows; closest: adamax, adam"),
    (["--data", "{one}", "--mixup", "0.2"], "--mixup 0.2: --data {one} has one class, so there is nothing to mix"),
    (["--data", "{photos}", "--cutmix", "1", "--batch-size", "3"], "--batch-size must be even (not 3)"),
    (["--data", "{photos}", "--lr", "0.1", "--lr-base", "0.1"], "--lr 0.1 and --lr-base 0.1: give one"),
    (["--data", "{photos}", "--val-split", "0.2"],
     "--val-split 0.2: class 'a' has 2 training image(s), so it would get no validation image; pass at least 0.5"),
    (["--data", "{photos}", "--init", "timm:test_efficientnet"],
     "--init timm:test_efficientnet: could not fetch timm's pretrained weights (LocalEntryNotFoundError); without "
     "network access pass a local state dict with --init-weights FILE"),
    (["--data", "{photos}", "--init", "timm:test_efficientnet", "--init-weights", "{resnet}"],
     "--init-weights {resnet}: does not fit test_efficientnet (first mismatched key 'conv_stem.weight' is missing "
     "from the file); pass weights of test_efficientnet"),
    (["--data", "{photos}", "--init-weights", "{resnet}"], "--init-weights {resnet}: only for --init timm:NAME"),
    (["--data", "hf:nobody/no-such-set"], "--data hf:nobody/no-such-set: datasets could not load it"),
])
def test_bad_input_is_one_line_and_leaves_no_run_folder(cli, photos, timm_weights, tmp_path, monkeypatch, args,
                                                        expected):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # as on a node without network
    names = {"photos": photos, "one": one_class(tmp_path / "one"), "resnet": timm_weights}
    args = [a.format(**names) for a in args]
    if "--init" not in args:
        args += ["--init", "none"]
    before = sorted(tmp_path.rglob("*"))
    result = cli(pttrain, ["finetune", *args, "--arch", "test_resnet", "--out", tmp_path / "run", *FAST])
    lines = result.stderr.strip().splitlines()
    assert result.exit_code != 0 and len(lines) == 1 and expected.format(**names) in lines[0], result.stderr
    assert sorted(tmp_path.rglob("*")) == before


def test_auto_policy_can_pick_by_channels_and_input_size(monkeypatch, photos):
    from train.commands import choose_augment
    from train.data import transforms

    monkeypatch.setattr(transforms, "AUTO_POLICY", {"grayscale": "glyph", "rgb": {0: "glyph", 64: "natural"}})
    assert [transforms.auto_policy(3, s) for s in (32, 63, 64, 224)] == ["glyph", "glyph", "natural", "natural"]
    assert transforms.auto_policy(1, 224) == "glyph"
    target = open_labeled(photos, "--data", None).target
    assert choose_augment("auto", target, 224) == "natural" and choose_augment("glyph", target, 224) == "glyph"


def test_val_and_test_parts_index_their_classes_by_name(photos, tmp_path):
    """A part may lack a class (its labels still name the right one), but not hold a class train/ lacks."""
    from ptcommon.cli import InputError
    from train.data.folder import labeled_split

    part = labeled_split(photos, "test", classes=["a", "b", "c", "d"])
    assert part.targets == [0, 1, 2] and part.classes == ["a", "b", "c", "d"]
    assert labeled_split(photos, "test", classes=["c", "b", "a"]).targets == [2, 1, 0]
    with pytest.raises(InputError, match=r"test/c is not one of the 2 classes \(a, b\); rename or remove it"):
        labeled_split(photos, "test", classes=["a", "b"])
