"""The writing side in parallel: any number of encoder threads, and any sampling batch (including
one halved after an out-of-memory), give the bytes of one encoder at one batch; a failure stops
the run in one line and leaves no partial shard."""

import os

import click
import numpy as np
import pytest
import torch

from generate.cli import main as ptgen
from generate.models import load_generator
from generate.plan import sample_seed
from generate.runner import generate_shards
from generate.synth import SynthJob, SynthSettings

ARGS = ["--per-class", 5, "--shard-size", 7, "--dtype", "fp32", "--quiet"]  # 25 images, 4 shards


def shard_bytes(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.glob("synth-*.tar"))}


def synth(cli, model, out, *extra):
    result = cli(ptgen, ["synth", "--model", model, "--out", out, *ARGS, *extra])
    assert result.exit_code == 0, result.output
    return result


@pytest.mark.parametrize("image_format", ["png", "jpg", "webp"])
def test_encoder_count_and_batch_leave_the_bytes_alone(cli, tiny_model, tmp_path, image_format):
    one = tmp_path / "one"
    synth(cli, tiny_model, one, "--image-format", image_format, "--encode-workers", 1, "--batch-size", 25)
    many = tmp_path / "many"
    synth(cli, tiny_model, many, "--image-format", image_format, "--encode-workers", 2, "--batch-size", 3)
    assert len(shard_bytes(one)) == 4
    assert shard_bytes(many) == shard_bytes(one)
    assert (many / "manifest.parquet").read_bytes() == (one / "manifest.parquet").read_bytes()


def test_ranks_with_encoders_match_one_process(cli, tiny_model, tmp_path):
    one = tmp_path / "one"
    synth(cli, tiny_model, one, "--encode-workers", 1)
    split = tmp_path / "split"
    for rank in (1, 0):
        synth(cli, tiny_model, split, "--encode-workers", 2, "--batch-size", 4, "--rank", rank, "--world", 2)
    assert shard_bytes(split) == shard_bytes(one)


def test_more_encoders_than_cores_are_capped_in_one_line(cli, tiny_model, tmp_path):
    from generate.runner import rank_cores

    cores = rank_cores()
    result = synth(cli, tiny_model, tmp_path / "out", "--encode-workers", cores + 5)
    assert (f"--encode-workers {cores + 5}: this process may keep {cores} cores busy (its share of the node's); "
            f"encoding with {cores}") in result.stderr


def test_no_encoders_is_refused(cli, tiny_model, tmp_path):
    result = cli(ptgen, ["synth", "--model", tiny_model, "--out", tmp_path / "out", "--encode-workers", 0])
    assert result.exit_code != 0 and "'--encode-workers': 0 is not in the range x>=1" in result.stderr
    assert not (tmp_path / "out").exists()


def test_default_encoders_share_the_node(monkeypatch):
    from generate.runner import default_encode_workers

    for name in [n for n in os.environ if n.startswith("SLURM_") or n in ("RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE")]:
        monkeypatch.delenv(name)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)))
    assert default_encode_workers() == 15  # one process: all its cores, less one for sampling
    monkeypatch.setenv("SLURM_STEP_ID", "0")
    monkeypatch.setenv("SLURM_PROCID", "9")
    monkeypatch.setenv("SLURM_LOCALID", "1")
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "11")
    monkeypatch.setenv("SLURM_STEP_TASKS_PER_NODE", "4(x2),3")
    monkeypatch.setenv("SLURM_NODEID", "2")
    assert default_encode_workers() == 4  # 3 tasks on this node share its 16 cores
    # srun binds each task to its --cpus-per-task: the mask is already this task's share.
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "8")
    assert default_encode_workers() == 7
    monkeypatch.delenv("SLURM_CPUS_PER_TASK")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)))
    for name, value in (("RANK", "0"), ("WORLD_SIZE", "8"), ("LOCAL_WORLD_SIZE", "8")):  # torchrun's, first
        monkeypatch.setenv(name, value)
    assert default_encode_workers() == 1


class _Tight:
    """Makes a loaded generator behave as on a device with room for `room` images a call: larger
    batches raise torch's own out-of-memory error, as a GPU (or the CPU allocator) would."""

    def __init__(self, generator, room):
        base = type(generator)

        def sample(this, condition, seeds, steps, guidance, **options):
            if len(seeds) > room:
                raise torch.OutOfMemoryError(f"tried to allocate for {len(seeds)} images")
            return base.sample(this, condition, seeds, steps, guidance, **options)

        generator.__class__ = type("Tight" + base.__name__, (base,), {"sample": sample})
        self.generator = generator


class _Unencodable:
    """Makes a loaded generator return 4-channel pixels (which JPEG cannot hold) for the batch
    holding sample `bad`, as a backend with a bug might."""

    def __init__(self, generator, bad_seed):
        base = type(generator)

        def sample(this, condition, seeds, steps, guidance, **options):
            images = base.sample(this, condition, seeds, steps, guidance, **options)
            if bad_seed in seeds:
                return np.repeat(images[..., :1], 4, axis=3)
            return images

        generator.__class__ = type("Unencodable" + base.__name__, (base,), {"sample": sample})
        self.generator = generator


def settings(batch_size, image_format="png"):
    return SynthSettings(model="tiny", steps=2, guidance=1.0, seed=0, shard_size=7, image_format=image_format,
                         dtype="fp32", compiled=False, batch_size=batch_size, class_ids=(0, 1, 2, 3, 4), per_class=5)


def test_out_of_memory_halves_the_batch_and_keeps_the_bytes(tiny_model, tmp_path, capsys):
    roomy = generate_shards(SynthJob(settings(7), load_generator(str(tiny_model))), tmp_path / "roomy",
                            progress=False)
    assert roomy.batch_size == 7
    tight = _Tight(load_generator(str(tiny_model)), room=5).generator
    stats = generate_shards(SynthJob(settings(7), tight), tmp_path / "tight", encode_workers=2, progress=False)
    assert stats.complete and stats.batch_size == 3  # 7 -> 3, then kept for every later batch
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == ["ptgen: out of memory at a batch of 7; going on at 3 (each image keeps its own noise)"]
    assert shard_bytes(tmp_path / "tight") == shard_bytes(tmp_path / "roomy")


def test_out_of_memory_at_one_image_stops_in_one_line(tiny_model, tmp_path):
    tight = _Tight(load_generator(str(tiny_model)), room=0).generator
    expected = r"out of memory even at one image \(sample 0\): the model does not fit this device at --dtype fp32"
    with pytest.raises(click.ClickException, match=expected):
        generate_shards(SynthJob(settings(4), tight), tmp_path / "out", progress=False)
    assert not list((tmp_path / "out").glob("*.tar")) and not list((tmp_path / "out").glob(".*.tmp"))


def test_a_stop_at_out_of_memory_leaves_a_folder_that_a_rerun_finishes(tiny_model, tmp_path):
    """Out of memory even at one image, in the second shard: the first stays committed, and a rerun
    with the room (a smaller batch, another device) finishes the folder with the bytes of one run."""
    roomy = tmp_path / "roomy"
    generate_shards(SynthJob(settings(4), load_generator(str(tiny_model))), roomy, progress=False)
    full_from = {sample_seed(0, i) for i in range(7, 25)}  # the memory runs out from the second shard on
    generator = load_generator(str(tiny_model))
    base = type(generator)

    def sample(this, condition, seeds, steps, guidance, **options):
        if full_from & set(seeds):
            raise torch.OutOfMemoryError("tried to allocate")
        return base.sample(this, condition, seeds, steps, guidance, **options)

    generator.__class__ = type("Filling" + base.__name__, (base,), {"sample": sample})
    out = tmp_path / "out"
    with pytest.raises(click.ClickException, match=r"out of memory even at one image \(sample 7\)"):
        generate_shards(SynthJob(settings(4), generator), out, encode_workers=2, progress=False)
    assert [p.name for p in out.glob("*.tar")] == ["synth-000000.tar"] and not list(out.glob(".*.tmp"))
    rerun = generate_shards(SynthJob(settings(4), load_generator(str(tiny_model))), out, progress=False)
    assert rerun.complete and rerun.shards_skipped == 1
    assert shard_bytes(out) == shard_bytes(roomy)
    assert (out / "manifest.parquet").read_bytes() == (roomy / "manifest.parquet").read_bytes()


def test_an_encoder_failure_stops_in_one_line_without_a_partial_shard(tiny_model, tmp_path):
    bad = 10  # in the second shard (7..13), after the first is committed
    generator = _Unencodable(load_generator(str(tiny_model)), sample_seed(0, bad)).generator
    out = tmp_path / "out"
    with pytest.raises(click.ClickException) as caught:
        generate_shards(SynthJob(settings(3, "jpg"), generator), out, encode_workers=2, progress=False)
    message = caught.value.format_message()
    assert "\n" not in message
    assert message.startswith(f"--image-format jpg: sample {bad} could not be encoded (")
    names = sorted(p.name for p in out.iterdir())
    assert "synth-000000.tar" in names and "synth-000001.tar" not in names
    assert not [n for n in names if n.endswith(".tmp")]


def test_quality_is_hashed_and_refused_where_it_means_nothing(cli, tiny_model, tmp_path):
    import json

    default = tmp_path / "default"
    synth(cli, tiny_model, default, "--image-format", "jpg")
    same = tmp_path / "same"
    synth(cli, tiny_model, same, "--image-format", "jpg", "--quality", 95)
    lower = tmp_path / "lower"
    synth(cli, tiny_model, lower, "--image-format", "jpg", "--quality", 40)
    config = {name: json.loads((tmp_path / name / "dataset.json").read_text()) for name in ("default", "same", "lower")}
    assert config["same"]["config_hash"] == config["default"]["config_hash"]
    assert shard_bytes(same) == shard_bytes(default)
    assert config["lower"]["config_hash"] != config["default"]["config_hash"] and config["lower"]["quality"] == 40
    assert shard_bytes(lower) != shard_bytes(default)
    # A folder of one quality refuses another, as any config clash.
    clash = cli(ptgen, ["synth", "--model", tiny_model, "--out", lower, *ARGS, "--image-format", "jpg"])
    assert clash.exit_code != 0 and "differs in quality null here vs 40 there" in clash.stderr


@pytest.mark.parametrize("args, expected", [
    (["--image-format", "png", "--quality", "90"], "--quality 90: png is lossless and has no quality; give "
                                                   "--quality with --image-format jpg or webp, or drop it"),
    (["--quality", "90"], "--quality 90: png (what --image-format auto chose for this model) is lossless"),
    (["--image-format", "webp", "--quality", "101"], "'--quality': 101 is not in the range 1<=x<=100"),
])
def test_bad_quality_is_one_line(cli, tiny_model, tmp_path, args, expected):
    out = tmp_path / "out"
    result = cli(ptgen, ["synth", "--model", tiny_model, "--out", out, "--quiet", *args])
    assert result.exit_code != 0 and expected in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not out.exists()


def test_auto_format_by_size_and_channels():
    from generate.writer import auto_format

    assert auto_format(16, 1) == "png"  # the built-in world: one tar block in any format, and lossless
    assert auto_format(12, 3) == "png"  # 432 raw bytes: still one block
    assert auto_format(256, 1) == "png"  # grayscale stays lossless
    assert auto_format(256, 3) == "jpg"


def test_auto_format_keeps_the_hash_of_the_format_it_chose(cli, tiny_model, tmp_path):
    import json

    synth(cli, tiny_model, tmp_path / "auto")
    synth(cli, tiny_model, tmp_path / "png", "--image-format", "png")
    auto, png = (json.loads((tmp_path / name / "dataset.json").read_text()) for name in ("auto", "png"))
    assert auto["image_format"] == "png" and auto["config_hash"] == png["config_hash"]
    assert shard_bytes(tmp_path / "auto") == shard_bytes(tmp_path / "png")


def test_a_resumes_estimate_counts_only_the_shards_still_to_write(tiny_model, tmp_path):
    """The first batch's estimate on a resume: the images of the shards not in the folder, whichever
    of them comes first (here the first of 4 shards of 7, deleted after a whole run)."""
    job = SynthJob(settings(7), load_generator(str(tiny_model)))
    generate_shards(job, tmp_path / "out", progress=False)
    (tmp_path / "out" / job.plan.shard_name(0)).unlink()
    left = []
    generate_shards(job, tmp_path / "out", progress=False, on_first_batch=lambda rate, n, screened: left.append(n))
    assert left == [0]  # the first batch is the deleted shard's 7 images: none left after it
