"""--augment: the glyph policy (unchanged) and the natural one (timm's), and how auto picks between them."""

import json
import shutil

import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from train.cli import main as pttrain
from train.commands import TargetInfo, choose_augment, open_labeled, prepare_model, run_augment
from train.data.shards import ShardSet
from train.data import transforms
from train.data.transforms import Preprocess, weak_and_strong
from train.kd import paired_views
from train.seeding import seed_everything

TINY = ["--arch", "test_resnet", "--img-size", 16, "--min-steps", 0, "--quiet"]
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def halves(mode: str, size=(20, 14)) -> Image.Image:
    """Dark left half, bright right half: a flip shows."""
    image = Image.new(mode, size, 30 if mode == "L" else (30, 60, 90))
    image.paste(220 if mode == "L" else (220, 180, 140), (size[0] // 2, 0, size[0], size[1]))
    return image


def image_folder(root, mode: str):
    """An ImageFolder of 2 classes (JPEGs of several sizes in MODE): 3 train and 1 test image each."""
    for split, count in (("train", 3), ("test", 1)):
        for cls, colour in (("red", (200, 40, 30)), ("sky", (90, 150, 230))):
            for i in range(count):
                path = root / split / cls / f"{i}.jpg"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (24 + 4 * i, 20), colour).convert(mode).save(path)
    return root


@pytest.fixture(scope="module")
def rgb_target(tmp_path_factory):
    return image_folder(tmp_path_factory.mktemp("rgb") / "data", "RGB")


@pytest.fixture(scope="module")
def gray_target(tmp_path_factory):
    return image_folder(tmp_path_factory.mktemp("gray") / "data", "L")


@pytest.fixture(scope="module")
def rgb_shards(labeled_shards, tmp_path_factory):
    """The tiny labeled shards, declared RGB at 24 px in their dataset.json (as a DiT's declare 3 and 256)."""
    out = tmp_path_factory.mktemp("rgb-shards") / "shards"
    shutil.copytree(labeled_shards, out)
    header = json.loads((out / "dataset.json").read_text())
    (out / "dataset.json").write_text(json.dumps({**header, "channels": 3, "image_size": 24}))
    return out


def trained(cli, tmp_path, *args) -> tuple[dict, dict]:
    """Run pttrain ARGS into a fresh folder; its train.json and config.json."""
    out = tmp_path / "run"
    result = cli(pttrain, [*args, "--out", out, *TINY])
    assert result.exit_code == 0, result.output + result.stderr
    return json.loads((out / "train.json").read_text()), json.loads((out / "config.json").read_text())


def auto(data) -> str:
    return choose_augment("auto", open_labeled(data, "--data", policy=None).target)


def test_auto_reads_the_channels_of_folders_and_shards(target, rgb_target, labeled_shards, rgb_shards, monkeypatch):
    """Grayscale images and 1-channel shards are one kind, RGB images and 3-channel shards the other."""
    monkeypatch.setattr(transforms, "AUTO_POLICY", {"grayscale": "glyph", "rgb": "natural"})
    assert auto(target) == "glyph" and auto(labeled_shards) == "glyph"
    assert auto(rgb_target) == "natural" and auto(rgb_shards) == "natural"
    assert ShardSet(rgb_shards).channels == 3


def test_auto_picks_what_was_measured(target, rgb_target, labeled_shards, rgb_shards):
    """docs/results.md (augment_policy): glyph won on digits and did not lose on RGB photo patches."""
    assert transforms.AUTO_POLICY == {"grayscale": "glyph", "rgb": "glyph"}
    assert {auto(data) for data in (target, labeled_shards, rgb_target, rgb_shards)} == {"glyph"}
    assert choose_augment("natural", TargetInfo(["a"], 1, 16)) == "natural"
    assert choose_augment("glyph", TargetInfo(["a"], 3, 256)) == "glyph"


def old_glyph(pre: Preprocess, augment: bool, strong: bool = False):
    """The glyph policy as the code built it before --augment existed, written out step by step."""
    steps = [v2.ToImage(), v2.Resize((pre.image_size, pre.image_size), antialias=True)]
    if augment:
        steps.append(v2.RandomAffine(degrees=8, translate=(0.08, 0.08), scale=(0.9, 1.1)))
    if strong:
        steps.append(v2.RandAugment(num_ops=2, magnitude=9))
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(pre.mean), list(pre.std))]
    if strong:
        steps.append(v2.RandomErasing(p=1.0, scale=(0.02, 0.15), value=0))
    pipeline = v2.Compose(steps)
    return lambda image: pipeline(image.convert(pre.mode))


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("augment, strong", [(False, False), (True, False), (True, True)])
def test_glyph_policy_is_bit_for_bit_the_old_one(channels, augment, strong):
    pre = Preprocess(16, channels, (0.5,) * channels, (0.5,) * channels)
    for seed in range(5):
        for image in (halves("L"), halves("RGB")):
            torch.manual_seed(seed)
            new = pre.transform(augment, strong)(image)
            torch.manual_seed(seed)
            assert torch.equal(new, old_glyph(pre, augment, strong)(image))


def test_glyph_distillation_views_are_the_old_ones():
    student, teacher = Preprocess(32, 1, (0.5,), (0.5,)), Preprocess(16, 1, (0.5,), (0.5,))
    jitter = v2.RandomAffine(degrees=8, translate=(0.08, 0.08), scale=(0.9, 1.1))
    torch.manual_seed(3)
    new = paired_views(student, teacher)(halves("RGB"))
    torch.manual_seed(3)
    moved = jitter(halves("RGB").convert("L"))
    old = (old_glyph(student, False)(moved), old_glyph(teacher, False)(moved))
    assert all(torch.equal(a, b) for a, b in zip(new, old))


def natural(channels: int, size: int = 16) -> Preprocess:
    mean = IMAGENET_MEAN if channels == 3 else [0.449]
    std = IMAGENET_STD if channels == 3 else [0.226]
    return Preprocess(size, channels, tuple(mean), tuple(std), policy="natural", interpolation="bicubic",
                      crop_pct=0.95)


@pytest.mark.parametrize("channels", [1, 3])
def test_natural_policy_crops_and_flips_in_training_and_is_deterministic_in_evaluation(channels):
    pre, image = natural(channels), halves("RGB")
    evaluate = pre.transform(augment=False)
    assert torch.equal(evaluate(image), evaluate(image)) and evaluate(image).shape == (channels, 16, 16)
    left_darker = []
    train = pre.transform(augment=True)
    seed_everything(0, "views")  # timm's crops draw from Python's random, flips and colours from torch
    outputs = [train(image) for _ in range(40)]
    for x in outputs:
        assert x.shape == (channels, 16, 16)
        left_darker.append(bool(x[:, :, :8].mean() < x[:, :, 8:].mean()))
    assert any(left_darker) and not all(left_darker)  # some views are mirrored
    assert len({x.sum().item() for x in outputs}) > 30  # views differ in crop and colours
    names = {type(t).__name__ for stage in pre.to_tensor(augment=True).transforms for t in stage.transforms}
    assert {"RandomResizedCropAndInterpolation", "RandomHorizontalFlip", "ColorJitter"} <= names


@pytest.mark.parametrize("channels", [1, 3])
def test_natural_strong_and_distillation_views(channels):
    pre = natural(channels)
    weak, strong = weak_and_strong(pre)(halves("RGB"))
    assert weak.shape == strong.shape == (channels, 16, 16) and not torch.equal(weak, strong)
    student, teacher = paired_views(pre, Preprocess(12, 1, (0.5,), (0.5,)))(halves("L"))
    assert student.shape == (channels, 16, 16) and teacher.shape == (1, 12, 12)


@pytest.mark.parametrize("channels, mean", [(3, IMAGENET_MEAN), (1, [sum(IMAGENET_MEAN) / 3])])
def test_a_new_natural_model_normalises_with_its_architectures_statistics(channels, mean):
    info = TargetInfo(["a", "b"], channels, 24)
    _, config = prepare_model(info, "none", "resnet18", 32, augment="natural")
    assert config.mean == pytest.approx(mean) and len(config.std) == channels
    _, config = prepare_model(info, "none", "resnet18", 32, augment="glyph")
    assert config.mean == [0.5] * channels and config.std == [0.5] * channels


def test_auto_on_grayscale_images_records_glyph(cli, target, tmp_path):
    record, config = trained(cli, tmp_path, "finetune", "--data", target, "--init", "none", "--epochs", 1)
    assert (record["augment"], record["augment_flag"]) == ("glyph", "auto")
    assert config["mean"] == [0.5] and config["in_chans"] == 1


def test_natural_on_a_grayscale_target_trains_and_evaluates(cli, gray_target, tmp_path):
    assert choose_augment("auto", open_labeled(gray_target, "--data", policy=None).target) == "glyph"
    record, config = trained(cli, tmp_path, "finetune", "--data", gray_target, "--init", "none", "--epochs", 2,
                             "--batch-size", 2, "--augment", "natural")
    assert (record["augment"], record["augment_flag"]) == ("natural", "natural")
    assert config["in_chans"] == 1 and config["image_size"] == 16
    assert run_augment(str(tmp_path / "run")) == "natural"  # pttrain eval scores it through natural's eval view
    result = cli(pttrain, ["eval", "--run", tmp_path / "run", "--data", gray_target])
    assert result.exit_code == 0, result.stderr
    assert result.output.strip().splitlines()[-1].endswith("n=2")


@pytest.mark.parametrize("flag, policy", [("auto", "glyph"), ("natural", "natural")])
def test_rgb_images_and_shards_train_with_the_policy_recorded(cli, rgb_target, rgb_shards, tmp_path, flag, policy):
    for args in (["finetune", "--data", rgb_target, "--init", "none", "--batch-size", 4],
                 ["pp", "--shards", rgb_shards, "--batch-size", 8]):
        record, config = trained(cli, tmp_path / args[0], *args, "--epochs", 1, "--augment", flag)
        assert (record["augment"], record["augment_flag"]) == (policy, flag)
        assert config["in_chans"] == 3
