"""`ptgen pseudo --strength S`: look-alikes grown from the target images (SDEdit) on the built-in world
with the digits target and on a tiny random DiT: the same bytes at any batch size and split, each
look-alike nearest its own target, today's images at S = 1, what the records say, and the refusals."""

import hashlib
import io
import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import webdataset as wds
from click.testing import CliRunner
from PIL import Image

from generate.cli import main as ptgen
from generate.pseudo import start_image, target_images
from ptcommon.runfolder import ModelConfig, create_model
from tiny_models import save_tiny_dit
from train.cli import main as pttrain
from train.models import save_run

pytestmark = pytest.mark.usefixtures("one_thread")

BUILTIN = "builtin:glyphs-1k"
# The images `ptgen pseudo --target DIGITS --per-target 2` wrote before --strength existed
# (DIGITS: `pttrain data digits --labels-per-class 1`): a SHA-256 over the .png members' names and bytes.
FROM_NOISE_PNGS = "30b45fc2d109a23c6c9f4e618540de17e45228df40bed9e6edbb703a49caab44"


def run(*args):
    return CliRunner().invoke(ptgen, [str(a) for a in args])


def pseudo(target, out, *extra, model=BUILTIN, per_target=2):
    result = run("pseudo", "--model", model, "--target", target, "--out", out, "--per-target", per_target,
                 "--shard-size", 8, "--quiet", *extra)
    assert result.exit_code == 0, result.output + result.stderr
    return out


def samples(folder) -> list[dict]:
    return list(wds.WebDataset(sorted(str(p) for p in folder.glob("pseudo-*.tar")), shardshuffle=False))


def tars(folder) -> list[bytes]:
    return [p.read_bytes() for p in sorted(folder.glob("*.tar"))]


def distances(folder, target) -> tuple[np.ndarray, np.ndarray]:
    """Per sample: the mean squared pixel difference (pixels in [0, 1]) to its own target image and,
    averaged, to the other targets' images, all at the generator's size and channels."""
    header = json.loads((folder / "dataset.json").read_text())
    size, channels = header["image_size"], header["channels"]
    found = target_images(target)
    refs = np.stack([(start_image(item, size, channels).numpy() + 1) / 2 for item in found.items])
    own, others = [], []
    for sample in samples(folder):
        j = found.keys.index(json.loads(sample["json"])["target_key"])
        pixels = np.asarray(Image.open(io.BytesIO(sample["png"])), dtype=np.float32) / 255
        d = ((refs - pixels.reshape(size, size, channels).transpose(2, 0, 1)) ** 2).mean(axis=(1, 2, 3))
        own.append(d[j])
        others.append(np.delete(d, j).mean())
    return np.array(own), np.array(others)


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    out = tmp_path_factory.mktemp("digits") / "d"
    result = CliRunner().invoke(pttrain, ["data", "digits", "--out", str(out), "--labels-per-class", "1"])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def lookalikes(digits, tmp_path_factory):
    """20 look-alikes of the built-in world at S = 0.5: 2 for each of the 10 digits."""
    return pseudo(digits, tmp_path_factory.mktemp("s05") / "out", "--strength", 0.5)


@pytest.fixture(scope="module")
def from_noise(digits, tmp_path_factory):
    return pseudo(digits, tmp_path_factory.mktemp("s1") / "out", "--strength", 1)


def test_lookalikes_are_the_same_bytes_at_any_batch_size_and_split(lookalikes, digits, tmp_path):
    again = tmp_path / "again"
    for rank in (1, 0):
        pseudo(digits, again, "--strength", 0.5, "--batch-size", 3, "--rank", rank, "--world", 2)
    assert tars(again) == tars(lookalikes) and len(tars(again)) == 3


def test_each_lookalike_is_nearest_its_own_target(lookalikes, from_noise, digits):
    own, others = distances(lookalikes, digits)
    assert (own < others).all(), (own, others)
    # From noise, the samples owe the targets nothing but their soft label: much farther.
    assert own.mean() < 0.6 * distances(from_noise, digits)[0].mean()


@pytest.mark.parametrize("scheduler", ["DDIMScheduler", "EulerDiscreteScheduler"])
def test_other_schedulers_start_from_the_target_too(scheduler, digits, tmp_path):
    """DDIM counts no steps, Euler's pure noise is scaled by init_noise_sigma (about 1000 here):
    add_noise at the first step run gives both the noise level their steps expect."""
    from ptcommon.builtin import resolve

    model = tmp_path / "model"
    shutil.copytree(resolve(BUILTIN, "generator", "--model"), model)
    config_path = model / "scheduler" / "scheduler_config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**config, "_class_name": scheduler}))
    own, others = distances(pseudo(digits, tmp_path / "out", "--strength", 0.3, model=model, per_target=1), digits)
    assert (own < others).all(), (own, others)


def test_strength_1_samples_from_noise_as_before(from_noise, digits, tmp_path):
    pngs = hashlib.sha256(b"".join(f"{s['__key__']}.png".encode() + s["png"] for s in samples(from_noise)))
    assert pngs.hexdigest() == FROM_NOISE_PNGS
    default = pseudo(digits, tmp_path / "default")
    assert tars(default) == tars(from_noise)
    config_hash = [json.loads((f / "dataset.json").read_text())["config_hash"] for f in (default, from_noise)]
    assert config_hash[0] == config_hash[1]


def test_strength_goes_into_the_config_hash(lookalikes, from_noise):
    hashes = {json.loads((f / "dataset.json").read_text())["config_hash"] for f in (lookalikes, from_noise)}
    assert len(hashes) == 2


def test_records_carry_the_target_class_and_strength(lookalikes, from_noise):
    for folder, strength in ((lookalikes, 0.5), (from_noise, None)):
        records = [json.loads(s["json"]) for s in samples(folder)]
        assert all(r["target_class"] == r["target_key"].split("/")[1] for r in records)
        assert all(r.get("strength") == strength for r in records)
        manifest = pq.read_table(folder / "manifest.parquet").to_pydict()
        assert manifest["target_class"] == [r["target_class"] for r in records]


def test_a_target_without_class_folders_records_no_class(tmp_path):
    root = tmp_path / "loose"
    (root / "train").mkdir(parents=True)
    for i in range(2):
        Image.new("L", (16, 16), 60 * i).save(root / "train" / f"{i}.png")
    out = pseudo(root, tmp_path / "out", "--strength", 0.5, per_target=1)
    assert [json.loads(s["json"])["target_class"] for s in samples(out)] == [None, None]


@pytest.fixture(scope="module")
def dit_world(tmp_path_factory):
    """A tiny random DiT (8 px RGB, 10 classes), a classifier over its classes and 4 RGB targets."""
    root = tmp_path_factory.mktemp("dit")
    save_tiny_dit(root / "model")
    torch.manual_seed(0)
    config = ModelConfig("test_resnet", 10, [f"tiny class {i}" for i in range(10)], 8, 3, [0.5] * 3, [0.5] * 3,
                         list(range(10)))
    save_run(root / "classifier", create_model(config), config)
    draw = torch.Generator().manual_seed(1)
    for name in ("a/1.png", "a/2.png", "b/3.png", "b/4.png"):
        path = root / "target" / "train" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(torch.randint(0, 256, (12, 12, 3), generator=draw, dtype=torch.uint8).numpy()).save(path)
    return root


def test_dit_lookalikes_are_the_same_bytes_at_any_batch_size(dit_world, tmp_path):
    """Through the VAE's encoder and DPM-Solver from the step S names. Random weights make no image
    nearer its own target than the others (the random VAE does not even give its input back), so
    nearness is checked on the built-in world only."""
    args = ("--classifier", dit_world / "classifier", "--strength", 0.5, "--steps", 4)
    one = pseudo(dit_world / "target", tmp_path / "one", *args, model=dit_world / "model", per_target=3)
    two = pseudo(dit_world / "target", tmp_path / "two", *args, "--batch-size", 2, model=dit_world / "model",
                 per_target=3)
    assert tars(one) == tars(two)
    noise = pseudo(dit_world / "target", tmp_path / "noise", *args[:2], "--steps", 4, model=dit_world / "model",
                   per_target=3)
    assert tars(noise) != tars(one)
    records = [json.loads(s["json"]) for s in samples(one)]
    assert [r["target_class"] for r in records] == ["a"] * 6 + ["b"] * 6
    assert {r["strength"] for r in records} == {0.5}


def test_encoding_is_the_inverse_of_decoding_in_scale_and_shift():
    """The start latents are the VAE's mode, shifted and scaled as decode_latents undoes them."""
    from generate.generator import decode_latents, encode_images
    from tiny_models import tiny_vae

    torch.manual_seed(0)
    vae = tiny_vae().eval()
    vae.register_to_config(scaling_factor=0.5, shift_factor=0.25)
    x = torch.rand(3, 3, 8, 8) * 2 - 1
    with torch.no_grad():
        ours = decode_latents(vae, encode_images(vae, x, batch=2))
        theirs = vae.decode(vae.encode(x).latent_dist.mode()).sample
    assert torch.allclose(ours, theirs, atol=1e-5)


@pytest.mark.parametrize("case, expected", [
    ("zero", "--strength 0: give a number in (0, 1]"),
    ("above-one", "--strength 1.5: give a number in (0, 1]"),
    ("noise", "--strength 0.5: noise:1000x16x1 has no model, so nothing can start from an image"),
    ("unreadable", "train/3/broken.png: cannot read this image"),
    ("no-images", "train/ holds no images"),
])
def test_bad_input_is_one_line_and_writes_nothing(case, expected, digits, tmp_path):
    target, model, strength = digits, BUILTIN, {"zero": 0, "above-one": 1.5}.get(case, 0.5)
    if case == "noise":
        model = "noise:1000x16x1"
    elif case in ("unreadable", "no-images"):
        target = tmp_path / "target"
        shutil.copytree(digits, target)
        if case == "unreadable":
            (target / "train" / "3" / "broken.png").write_bytes(b"not an image")
        else:
            shutil.rmtree(target / "train")
            (target / "train").mkdir()
    out = tmp_path / "out"
    result = run("pseudo", "--model", model, "--target", target, "--out", out, "--strength", strength, "--quiet")
    lines = result.stderr.strip().splitlines()
    assert result.exit_code != 0 and len(lines) == 1 and expected in lines[0], result.stderr
    assert not out.exists()


def test_biggan_refuses_to_start_from_an_image(digits, tmp_path):
    pytest.importorskip("pytorch_pretrained_biggan")
    from tiny_models import save_tiny_biggan

    model = save_tiny_biggan(tmp_path / "biggan", num_classes=1000)
    out = tmp_path / "out"
    result = run("pseudo", "--model", model, "--target", digits, "--out", out, "--strength", 0.5, "--quiet")
    lines = result.stderr.strip().splitlines()
    assert result.exit_code != 0 and len(lines) == 1, result.stderr
    assert "--strength 0.5" in lines[0] and "is a BigGAN" in lines[0] and "no way back from an image" in lines[0]
    assert not out.exists()


def test_contact_sheet_shows_each_target_beside_its_lookalikes(lookalikes, digits, tmp_path):
    sheet = tmp_path / "sheet.png"
    result = run("inspect", lookalikes, "--grid", sheet, "--target", digits, "--rows", 4, "--cols", 3)
    assert result.exit_code == 0, result.output + result.stderr
    assert Image.open(sheet).size[1] > 100
