"""The noise generator (`--model noise:CLASSESxSIZE[xCHANNELS]`), and bad folders at any scale: a gap
in the shard numbering, a manifest part that does not match its shard, a truncated last shard. Each
is one line naming the shard and what a rerun does, and the rerun repairs the folder to the same bytes."""

import hashlib
import json
import shutil

import numpy as np
import pytest
import torch

from generate.backends.noise import NoiseGenerator, noise_image
from generate.cli import main as ptgen
from ptcommon.cli import InputError
from train.data.shards import ShardSet

# 7 classes x 3 = 21 images of 24 px RGB (JPEG, by --image-format auto) in 6 shards of 4, the last short.
SPEC, PER_CLASS, SHARD_SIZE = "noise:7x24", 3, 4


def synth(cli, out, *extra, spec=SPEC):
    result = cli(ptgen, ["synth", "--model", spec, "--out", out, "--per-class", PER_CLASS, "--shard-size", SHARD_SIZE,
                         "--quiet", *extra])
    assert result.exit_code == 0, result.output
    return result


def folder_bytes(folder):
    """Every file of a shard folder, by its path inside it; of dataset.json its config hash (the batch
    size it records decides no byte)."""
    files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
    files["dataset.json"] = json.loads(files["dataset.json"])["config_hash"]
    return files


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    from click.testing import CliRunner

    out = tmp_path_factory.mktemp("noise") / "ref"
    args = ["synth", "--model", SPEC, "--out", out, "--per-class", PER_CLASS, "--shard-size", SHARD_SIZE,
            "--batch-size", 5, "--quiet"]
    assert CliRunner().invoke(ptgen, [str(a) for a in args]).exit_code == 0
    return out


def test_an_image_is_its_seed_alone():
    gen = NoiseGenerator("noise:4x5x1")
    one = gen.sample(torch.tensor([0, 1, 2]), [7, 8, 9], steps=1, guidance=1.0)
    other = gen.sample(torch.tensor([3]), [8], steps=1, guidance=1.0)
    assert one.shape == (3, 5, 5, 1) and one.dtype == np.uint8
    assert (one[1] == other[0]).all() and not (one[0] == one[1]).all()
    # PCG64's raw stream, pinned: a NumPy that changed it would change every noise folder's bytes.
    assert hashlib.sha256(noise_image(12345, 32, 3).tobytes()).hexdigest()[:16] == "9feff8f679ac8e85"
    assert NoiseGenerator("noise:4x5").fingerprint() == NoiseGenerator("noise:4x5x3").fingerprint()


def test_noise_shards_are_the_same_at_two_batch_sizes_and_in_two_ranks(cli, tmp_path, reference):
    header = json.loads((reference / "dataset.json").read_text())
    assert (header["count"], header["num_shards"], header["image_format"], header["channels"]) == (21, 6, "jpg", 3)
    assert header["model_fingerprint"]["spec"] == "noise:7x24x3"
    synth(cli, tmp_path / "b2", "--batch-size", 2)
    assert folder_bytes(tmp_path / "b2") == folder_bytes(reference)
    ranks = tmp_path / "ranks"
    assert "still missing" in synth(cli, ranks, "--rank", 1, "--world", 2, "--batch-size", 3).output
    assert "folder complete" in synth(cli, ranks, "--rank", 0, "--world", 2).output
    assert folder_bytes(ranks) == folder_bytes(reference)


def test_gray_noise_and_its_listing(cli, tmp_path):
    synth(cli, tmp_path / "gray", spec="noise:3x8x1")
    header = json.loads((tmp_path / "gray" / "dataset.json").read_text())
    assert (header["channels"], header["image_size"], header["image_format"], header["count"]) == (1, 8, "png", 9)
    assert ShardSet(tmp_path / "gray").channels == 1
    listing = cli(ptgen, ["models"]).output
    assert "noise  no folder: --model noise:CLASSESxSIZE[xCHANNELS]" in listing


def test_pseudo_samples_of_noise_rehearse_a_pseudo_job(cli, tmp_path, target, classifier):
    """ptgen pseudo with noise in place of the generator: the source classifier still scores the
    targets on the generator's device."""
    out = tmp_path / "pseudo"
    result = cli(ptgen, ["pseudo", "--model", "noise:5x8x1", "--classifier", classifier, "--target", target,
                         "--per-target", 2, "--out", out, "--quiet"])
    assert result.exit_code == 0, result.output + result.stderr
    assert ShardSet(out, labeled=False).count == 6


@pytest.mark.parametrize("spec, expected", [
    ("noise:abc", "--model noise:abc: expected noise:CLASSESxSIZE[xCHANNELS], e.g. noise:1000x32"),
    ("noise:0x32", "--model noise:0x32: 0 classes; give at least 1"),
    ("noise:10x0", "--model noise:10x0: images of 0 px; give at least 1"),
    ("noise:10x8x2", "--model noise:10x8x2: 2 channels; give 1 (gray) or 3 (RGB)"),
    ("noise:10x8x", "--model noise:10x8x: expected noise:CLASSESxSIZE[xCHANNELS]"),
])
def test_bad_noise_specs_are_one_line(cli, tmp_path, spec, expected):
    result = cli(ptgen, ["synth", "--model", spec, "--out", tmp_path / "out", "--quiet"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"ptgen: error: {expected}"), result.stderr
    assert not (tmp_path / "out").exists()


def damage(folder, case):
    """One bad folder: the shard that suffers, and what `ptgen inspect` and a reader say about it."""
    if case == "gap":
        (folder / "synth-000002.tar").unlink()
        return "synth-000002.tar", "missing: 1 shard (synth-000002.tar); rerun the same ptgen command: it writes only"
    if case == "part of another shard":
        shutil.copy(folder / "_parts" / "synth-000001.parquet", folder / "_parts" / "synth-000003.parquet")
        return "synth-000003.tar", ("damaged: synth-000003.tar: its manifest part _parts/synth-000003.parquet "
                                    "describes synth-000001.tar; rerun the same ptgen command: it writes this "
                                    "shard again")
    last = folder / "synth-000005.tar"
    size = last.stat().st_size
    with open(last, "r+b") as file:  # a kill that left the last shard cut short
        file.truncate(size // 2 + 7)
    return "synth-000005.tar", (f"damaged: synth-000005.tar: {size // 2 + 7:,} bytes, {size:,} when written "
                                "(truncated); rerun the same ptgen command: it writes this shard again, byte for byte")


@pytest.mark.parametrize("case", ["gap", "part of another shard", "truncated last shard"])
def test_a_bad_folder_is_one_line_and_a_rerun_repairs_it(cli, tmp_path, reference, case):
    folder = tmp_path / "copy"
    shutil.copytree(reference, folder)
    shard, expected = damage(folder, case)
    lines = cli(ptgen, ["inspect", folder]).output.splitlines()
    assert [line for line in lines if line.startswith(("missing:", "damaged:"))] == [
        next(line for line in lines if line.startswith(expected))]
    if case != "part of another shard":  # a reader checks the shards, which the manifest describes
        with pytest.raises(InputError, match=f"{shard}.*rerun the same ptgen command"):
            ShardSet(folder, "--shards")
    rerun = synth(cli, folder, "--batch-size", 5)
    assert "in 1 shards (5 already done)" in rerun.output
    if case != "gap":
        assert f"ptgen: {shard}:" in rerun.stderr and "writing it again" in rerun.stderr
    assert folder_bytes(folder) == folder_bytes(reference)
