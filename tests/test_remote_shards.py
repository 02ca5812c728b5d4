"""Shards anywhere, against real servers on loopback: synth --out s3:// on two ranks, killed and
resumed, gives the bytes of a local run; pp trains on the same batches from S3, HTTP and disk."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from conftest import ROOT, run_module
from generate.cli import main as ptgen
from servers import fresh_s3, http_folder, moto_s3
from train.cli import main as pttrain
from train.data.shards import CorruptCounter, ShardSet
from train.data.transforms import Preprocess

# 5 classes x 8 = 40 images in 7 shards of 6, sampled 4 at a time.
ARGS = ["--per-class", 8, "--shard-size", 6, "--batch-size", 4, "--dtype", "fp32", "--quiet"]
TRAIN = ["--arch", "test_resnet", "--img-size", "16", "--min-steps", "0", "--epochs", 1, "--batch-size", 4,
         "--quiet"]


@pytest.fixture(scope="module")
def s3():
    with moto_s3():
        fs = fresh_s3()
        fs.mkdir("bucket")
        yield fs


@pytest.fixture(scope="module")
def local(tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "shards"
    result = CliRunner().invoke(ptgen, ["synth", "--model", str(tiny_model), "--out", str(out), *map(str, ARGS)])
    assert result.exit_code == 0, result.output
    return out


def synth(model, out, *extra):
    return [sys.executable, "-m", "generate", "synth", "--model", str(model), "--out", out, *map(str, ARGS),
            *map(str, extra)]


def objects(fs, prefix):
    return {p.rsplit("/", 1)[-1]: fs.cat_file(p) for p in fs.find(prefix)}


def test_synth_to_s3_on_two_ranks_killed_and_resumed_gives_the_local_bytes(s3, tiny_model, local):
    url = "s3://bucket/synth"
    # Rank 1 is killed once its first shard has landed; sampling one image at a time (the same
    # images: each has its own noise) leaves it part-way.
    rank1 = synth(tiny_model, url, "--rank", 1, "--world", 2, "--batch-size", 1)
    proc = subprocess.Popen(rank1, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        s3.invalidate_cache()
        if any(p.endswith(".tar") for p in s3.find("bucket/synth")):
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    s3.invalidate_cache()
    landed = [p for p in s3.find("bucket/synth") if p.endswith(".tar")]
    assert 1 <= len(landed) < 3, f"the kill landed after {len(landed)} of rank 1's 3 shards"
    assert not s3.exists("bucket/synth/manifest.parquet")

    resumed = subprocess.run(synth(tiny_model, url, "--rank", 1, "--world", 2), cwd=ROOT,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"({len(landed)} already done)" in resumed.stdout
    rank0 = run_module("-m", "generate", *synth(tiny_model, url, "--rank", 0, "--world", 2)[3:], timeout=300)
    assert rank0.returncode == 0 and "folder complete" in rank0.stdout, rank0.stderr[-2000:]
    assert "staged in" in rank0.stderr  # the start line says where each shard waits, and how much space it takes

    s3.invalidate_cache()
    remote = objects(s3, "bucket/synth")
    expected = {p.name: p.read_bytes() for p in local.glob("synth-*.tar")}
    assert {n: b for n, b in remote.items() if n.endswith(".tar")} == expected
    for name in ("manifest.parquet", "_info.json", "synth-000003.parquet"):
        found = next(p for p in local.rglob(name))
        assert remote[name] == found.read_bytes(), name
    # dataset.json keeps the batch the folder was started with (killed rank 1's), which decides no byte.
    header, ours = json.loads(remote["dataset.json"]), json.loads((local / "dataset.json").read_text())
    assert header.pop("batch_size") == 1 and ours.pop("batch_size") == 4 and header == ours


@pytest.fixture(scope="module")
def served(s3, local):
    """The local folder uploaded to S3 and served over HTTP."""
    s3.put(str(local) + "/", "bucket/served", recursive=True)
    with http_folder(local.parent) as base:
        yield {"s3": "s3://bucket/served", "http": f"{base}/{local.name}"}


def batches(spec):
    data = ShardSet(spec)
    pipeline = data.pipeline(Preprocess(16, 1, (0.5,), (0.5,)).transform(True), 4, train=True, seed=3,
                             with_labels=True, corrupt=CorruptCounter(False), batches_per_worker=5)
    torch.manual_seed(0)
    return list(pipeline)


@pytest.mark.parametrize("where", ["s3", "http"])
def test_shards_read_from_a_url_give_the_batches_read_from_disk(served, local, where):
    ours, theirs = batches(local), batches(served[where])
    assert len(ours) == 5
    assert all(torch.equal(a[0], b[0]) and torch.equal(torch.as_tensor(a[1]), torch.as_tensor(b[1]))
               for a, b in zip(ours, theirs))


def test_pp_from_s3_and_https_trains_the_weights_of_pp_from_disk(cli, served, local, tmp_path):
    weights = {}
    for where, shards in (("disk", local), ("s3", served["s3"]), ("http", served["http"])):
        out = tmp_path / where
        result = cli(pttrain, ["pp", "--shards", shards, "--out", out, "--workers", 1, *TRAIN])
        assert result.exit_code == 0, result.output + result.stderr
        weights[where] = load_file(str(out / "model.safetensors"))
        assert json.loads((out / "train.json").read_text())["shards"] == str(shards)
    for where in ("s3", "http"):
        assert all(torch.equal(weights["disk"][k], weights[where][k]) for k in weights["disk"]), where
