"""The BigGAN backend on a tiny random BigGAN in pytorch-pretrained-biggan's folder layout: which
folders it claims, weights without unpickling, soft labels, seeds, truncation, and the CLI."""

import json
import pickle
import shutil
import sys

import numpy as np
import pytest
import torch

from generate.backends import backend_for
from generate.backends.biggan import BigGANGenerator, convert_to_safetensors, main, noise, stats_truncation
from generate.cli import main as ptgen
from ptcommon.cli import InputError
from ptcommon.shards import read_samples
from tiny_models import save_tiny_biggan

# The backend and the builder import the package only when used, so the imports above work without it.
pytest.importorskip("pytorch_pretrained_biggan")


@pytest.fixture(scope="module", autouse=True)
def biggan(tmp_path_factory):
    """The tiny BigGAN folder; while this module runs, torch uses one thread (tensors this small
    gain nothing from intra-op threads, which only contend on shared cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield save_tiny_biggan(tmp_path_factory.mktemp("biggan") / "model")
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def gen(biggan):
    return BigGANGenerator(biggan)


def _copy(biggan, tmp_path, name="copy"):
    return shutil.copytree(biggan, tmp_path / name)


def _one_line(err) -> str:
    message = err.value.format_message()
    assert "\n" not in message
    return message


def test_the_registry_picks_biggan_and_describes_it(biggan, cli):
    assert backend_for(biggan) is BigGANGenerator
    assert BigGANGenerator.describe(biggan) == {"num_classes": 10, "image_size": 32, "channels": 3}
    info = json.loads(cli(ptgen, ["models", biggan, "--json"]).output)
    assert info["backend"] == "biggan" and info["num_classes"] == 10 and info["image_size"] == 32


def test_run_folders_and_diffusers_folders_are_not_claimed(biggan, classifier, tiny_model, tmp_path):
    # A pttrain run folder also has config.json (arch, num_classes, ...) beside model.safetensors.
    assert (classifier / "config.json").exists() and not BigGANGenerator.claims(classifier)
    with pytest.raises(InputError, match="not a generator folder"):
        backend_for(classifier)
    assert not BigGANGenerator.claims(tiny_model)
    indexed = _copy(biggan, tmp_path, "indexed")
    (indexed / "model_index.json").write_text(json.dumps({"_class_name": "DiTPipeline"}))
    with_unet = _copy(biggan, tmp_path, "with_unet")
    (with_unet / "unet").mkdir()
    assert not BigGANGenerator.claims(indexed) and not BigGANGenerator.claims(with_unet)


def test_without_the_package_a_folder_is_refused_in_one_line(biggan, monkeypatch):
    monkeypatch.setitem(sys.modules, "pytorch_pretrained_biggan", None)  # as if not installed
    assert backend_for(biggan) is BigGANGenerator  # claiming reads config.json alone
    with pytest.raises(InputError) as err:
        BigGANGenerator(biggan)
    assert "needs the biggan extra: pip install -e '.[biggan]'" in _one_line(err)


def test_metadata(gen):
    assert (gen.num_classes, gen.image_size, gen.channels) == (10, 32, 3)
    assert gen.class_names == [f"class_{i}" for i in range(10)]
    assert not gen.supports_guidance
    assert (gen.defaults.steps, gen.defaults.guidance) == (1, 1.0)
    fingerprint = gen.fingerprint()
    assert fingerprint["truncation"] == 0.4 and len(fingerprint["weights_sha256"]) == 64
    assert fingerprint["config"]["z_dim"] == 8
    json.dumps(fingerprint)


def test_ptgen_json_names_classes_and_sets_the_truncation(gen, biggan, tmp_path):
    folder = _copy(biggan, tmp_path)
    names = [f"thing {i}" for i in range(10)]
    (folder / "ptgen.json").write_text(json.dumps({"class_names": names, "truncation": 0.6}))
    named = BigGANGenerator(folder)
    assert named.class_names == names and named.truncation == 0.6
    # The truncation changes the images, so it changes the fingerprint; the folder's place does not.
    assert named.fingerprint() != gen.fingerprint()
    assert BigGANGenerator(folder, truncation=0.4).fingerprint() == gen.fingerprint()
    image = gen.sample(torch.tensor([4]), [9], steps=1, guidance=1.0)
    assert not np.array_equal(named.sample(torch.tensor([4]), [9], steps=1, guidance=1.0), image)

    (folder / "ptgen.json").write_text(json.dumps({"class_names": names[:9]}))
    with pytest.raises(InputError) as err:
        BigGANGenerator(folder)
    assert "names 9 classes but the BigGAN has 10" in _one_line(err)
    for bad in (0.0, 0.01, 1.5):
        with pytest.raises(InputError, match=rf"truncation {bad} must lie in \[0.02, 1\]"):
            BigGANGenerator(biggan, truncation=bad)


def test_bin_under_weights_only_and_safetensors_give_identical_images(gen, biggan, tmp_path, capsys):
    condition, seeds = torch.tensor([0, 5, 9]), [1, 2, 3]
    expected = gen.sample(condition, seeds, steps=1, guidance=1.0)

    # Published checkpoints predate torch's zip format: the legacy format loads under weights_only too.
    legacy = _copy(biggan, tmp_path, "legacy")
    state = torch.load(legacy / "pytorch_model.bin", weights_only=True)
    torch.save(state, legacy / "pytorch_model.bin", _use_new_zipfile_serialization=False)
    np.testing.assert_array_equal(BigGANGenerator(legacy).sample(condition, seeds, 1, 1.0), expected)

    folder = _copy(biggan, tmp_path)
    assert main(["convert", str(folder)]) == 0
    assert capsys.readouterr().out.strip() == str(folder / "model.safetensors")
    (folder / "pytorch_model.bin").unlink()  # so that only the safetensors file can have been read
    np.testing.assert_array_equal(BigGANGenerator(folder).sample(condition, seeds, 1, 1.0), expected)


@pytest.mark.parametrize("zipped", [True, False])
def test_weights_that_would_run_code_are_refused(biggan, tmp_path, cli, zipped):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return open, (str(marker), "w")

    folder = tmp_path / "evil"
    folder.mkdir()
    shutil.copy(biggan / "config.json", folder)
    weights = folder / "pytorch_model.bin"
    if zipped:
        torch.save({"embeddings.weight": Payload()}, weights)
    else:
        weights.write_bytes(pickle.dumps({"embeddings.weight": Payload()}, protocol=2))

    with pytest.raises(InputError) as err:
        BigGANGenerator(folder)
    message = _one_line(err)
    assert f"--model {folder}: pytorch_model.bin is not a plain state dict" in message
    assert "refusing to unpickle it" in message
    with pytest.raises(InputError, match="refusing to unpickle it"):
        convert_to_safetensors(folder)
    result = cli(ptgen, ["synth", "--model", folder, "--classes", 1, "--per-class", 1, "--out", tmp_path / "out"])
    assert result.exit_code == 2 and "refusing to unpickle it" in result.stderr
    assert not marker.exists() and not (folder / "model.safetensors").exists() and not (tmp_path / "out").exists()


def test_incomplete_or_inconsistent_folders_are_refused(biggan, tmp_path):
    folder = _copy(biggan, tmp_path)
    (folder / "pytorch_model.bin").unlink()
    with pytest.raises(InputError) as err:
        BigGANGenerator(folder)
    assert "no pytorch_model.bin or model.safetensors" in _one_line(err)
    with pytest.raises(SystemExit) as exit_:
        main(["convert", str(folder)])
    assert exit_.value.code == 2

    folder = _copy(biggan, tmp_path, "resized")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "output_dim": 64}))
    with pytest.raises(InputError, match="output_dim 64 but its layers upsample 4 px to 32"):
        BigGANGenerator(folder)
    (folder / "config.json").write_text(json.dumps({**config, "num_classes": 12}))
    with pytest.raises(InputError) as err:
        BigGANGenerator(folder)
    assert "the weights do not fit config.json" in _one_line(err)


def test_one_hot_soft_label_equals_hard_label_and_a_mixture_differs(gen):
    hard = gen.sample(torch.tensor([3, 7]), [11, 11], steps=1, guidance=1.0)
    soft = gen.sample(torch.eye(10)[[3, 7]], [11, 11], steps=1, guidance=1.0)
    assert hard.dtype == np.uint8 and hard.shape == (2, 32, 32, 3)
    np.testing.assert_array_equal(hard, soft)
    p = torch.zeros(1, 10)
    p[0, 3] = p[0, 7] = 0.5
    mixed = gen.sample(p, [11], steps=1, guidance=1.0)[0]
    assert not np.array_equal(mixed, hard[0]) and not np.array_equal(mixed, hard[1])
    assert not np.array_equal(hard[0], hard[1])


def test_each_image_depends_only_on_its_seed(gen):
    condition = torch.tensor([1, 2, 3])
    seeds = [7, 2**40 + 7, 2**63 - 1]  # ptgen's per-sample seeds have 63 bits; RandomState takes 32
    together = gen.sample(condition, seeds, steps=1, guidance=1.0)
    one = gen.sample(condition[:1], seeds[:1], steps=1, guidance=1.0)
    two = gen.sample(condition[1:], seeds[1:], steps=1, guidance=1.0)
    np.testing.assert_array_equal(together, np.concatenate([one, two]))
    assert not np.array_equal(gen.sample(condition[:1], [8], steps=1, guidance=1.0), one)


def test_noise_is_the_packages_own_and_keeps_all_64_bits_of_a_seed():
    from pytorch_pretrained_biggan import truncated_noise_sample

    np.testing.assert_array_equal(noise([7], 8, 0.4), truncated_noise_sample(1, 8, 0.4, seed=7))
    z = noise([7, 2**40 + 7, 7], 8, 0.4)
    assert z.shape == (3, 8) and z.dtype == np.float32 and np.abs(z).max() <= 0.8
    np.testing.assert_array_equal(z[0], z[2])
    assert not np.array_equal(z[0], z[1])  # no wrap-around onto the low 32 bits


def test_the_model_uses_the_statistics_of_the_truncation_asked_for():
    from pytorch_pretrained_biggan.model import BigGANBatchNorm

    # One feature whose row k of statistics has mean k: the output at x = 0 reads back which rows were used.
    norm = BigGANBatchNorm(1, n_stats=51, eps=0.0, conditional=False)
    with torch.no_grad():
        norm.running_means.copy_(torch.arange(51.0)[:, None])
        norm.weight.fill_(1.0)
        norm.bias.zero_()
    zero = torch.zeros(1, 1, 1, 1)
    # 0.14, 0.28, 0.56, 0.58 and 0.94 land on a neighbouring row by float division alone; off the
    # grid the package's weights are mirrored.
    for truncation in (0.02, 0.14, 0.28, 0.4, 0.56, 0.58, 0.94, 1.0, 0.405, 0.5 + 1 / 300):
        row = -norm(zero, stats_truncation(truncation, 51)).item()
        assert row == pytest.approx(truncation * 50, abs=1e-5), truncation
    assert stats_truncation(0.4, 51) == 0.4  # where the package reads it right, it gets it unchanged


def test_guidance_and_bad_conditions_are_refused(gen):
    with pytest.raises(ValueError, match="null class"):
        gen.sample(torch.tensor([1]), [0], steps=1, guidance=2.0)
    with pytest.raises(ValueError, match="shape"):
        gen.sample(torch.ones(1, 9) / 9, [0], steps=1, guidance=1.0)
    with pytest.raises(ValueError, match="class ids"):
        gen.sample(torch.tensor([10]), [0], steps=1, guidance=1.0)
    with pytest.raises(ValueError, match="seeds"):
        gen.sample(torch.tensor([1, 2]), [0], steps=1, guidance=1.0)


def test_synth_and_pseudo_through_the_cli(biggan, classifier, target, cli, tmp_path):
    out = tmp_path / "shards"
    synth = ["synth", "--model", biggan, "--classes", 2, "--per-class", 2, "--shard-size", 3, "--quiet"]
    result = cli(ptgen, [*synth, "--out", out])
    assert result.exit_code == 0, result.output
    header = json.loads((out / "dataset.json").read_text())
    assert header["channels"] == 3 and header["image_size"] == 32 and header["count"] == 4
    samples = list(read_samples(sorted(out.glob("*.tar"))))
    assert sorted(s.label for s in samples) == [0, 0, 1, 1]
    assert all(s.image.mode == "RGB" and s.image.size == (32, 32) for s in samples)
    # The shard contract: the batch size changes no byte.
    other = tmp_path / "batch1"
    assert cli(ptgen, [*synth, "--out", other, "--batch-size", 1]).exit_code == 0
    for shard in sorted(out.glob("*.tar")):
        assert (other / shard.name).read_bytes() == shard.read_bytes()

    # The classifier's 5 classes are source ids 0..4, all among the generator's 10.
    pseudo = tmp_path / "pseudo"
    result = cli(ptgen, ["pseudo", "--model", biggan, "--classifier", classifier, "--target", target,
                         "--out", pseudo, "--per-target", 2, "--quiet"])
    assert result.exit_code == 0, result.output
    header = json.loads((pseudo / "dataset.json").read_text())
    assert header["count"] == 6 and header["channels"] == 3 and not header["labeled"]


def test_guidance_is_refused_in_one_line(biggan, cli, tmp_path):
    result = cli(ptgen, ["synth", "--model", biggan, "--classes", 2, "--per-class", 2, "--guidance", 2,
                         "--out", tmp_path / "out"])
    assert result.exit_code == 2 and "has no null class, so guidance must be 1 or less" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()
