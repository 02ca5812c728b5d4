"""Shards anywhere, against real servers on loopback: synth --out s3:// on two ranks, killed and
resumed, gives the bytes of a local run; pp trains on the same batches from S3, HTTP and disk."""

import json
import os
import re
import signal
import socket
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


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def refused(result, pattern):
    """One line, exit 2."""
    message = result.stderr.strip()
    assert result.exit_code == 2 if hasattr(result, "exit_code") else result.returncode == 2, message
    assert len(message.splitlines()) == 1 and re.search(pattern, message), message


@pytest.mark.parametrize("spec, pattern", [
    ("pipe:cat /etc/passwd", r"the scheme pipe: is not accepted"),
    ("ftp://127.0.0.1/shards", r"the scheme ftp: is not accepted"),
    ("gs://bucket/shards", r"needs its fsspec back-end, which is not installed; pip install -e '\.\[gcs\]'"),
    ("s3://bucket/none-{000000..000002}.tar", r"matches no object \(3 names"),
    ("s3://no-such-bucket/shards", r"--shards s3://no-such-bucket/shards: no dataset.json"),
])
def test_bad_urls_are_refused_in_one_line_before_a_run_folder(cli, s3, tmp_path, spec, pattern):
    out = tmp_path / "run"
    refused(cli(pttrain, ["pp", "--shards", spec, "--out", out, *TRAIN]), pattern)
    assert not out.exists()


def test_a_host_that_does_not_answer_is_named_with_the_back_ends_reason(cli, tmp_path):
    url = f"http://127.0.0.1:{closed_port()}/shards"
    refused(cli(pttrain, ["pp", "--shards", url, "--out", tmp_path / "run", *TRAIN]),
            rf"--shards {url}: cannot be reached \(\w+: .*Connect")


def test_an_unreachable_endpoint_and_missing_credentials_are_one_line_each(s3, tmp_path):
    args = ["-m", "train", "pp", "--shards", "s3://bucket/served", "--out", str(tmp_path / "run"),
            *map(str, TRAIN)]
    gone = run_module(*args, env={**os.environ, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{closed_port()}"},
                      timeout=120)
    refused(gone, r"--shards s3://bucket/served: cannot be reached \(EndpointConnectionError: Could not connect")
    anonymous = {k: v for k, v in os.environ.items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    nobody = run_module(*args, env=anonymous, timeout=120)
    refused(nobody, r"no credentials for s3:// \(.*\); s3 looks for them in AWS_ACCESS_KEY_ID")
    assert not (tmp_path / "run").exists()


def test_out_on_a_read_only_bucket_is_refused_before_any_sampling(s3, tiny_model, tmp_path):
    import boto3
    from moto import settings

    s3.mkdir("readonly")
    iam = boto3.client("iam")
    iam.create_user(UserName="reader")
    iam.put_user_policy(UserName="reader", PolicyName="read", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["s3:Get*", "s3:List*"],
                                                 "Resource": "*"}]}))
    key = iam.create_access_key(UserName="reader")["AccessKey"]
    reader = {**os.environ, "AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}
    settings.INITIAL_NO_AUTH_ACTION_COUNT = 0  # moto checks every request against IAM from here on
    try:
        result = run_module("-m", "generate", *synth(tiny_model, "s3://readonly/synth")[3:], env=reader, timeout=120)
    finally:
        settings.INITIAL_NO_AUTH_ACTION_COUNT = float("inf")
    refused(result, r"--out s3://readonly/synth: access refused \(Access Denied\)")
    assert "ptgen:" not in result.stderr.replace("ptgen: error", "")  # no start line: nothing was sampled
    assert s3.ls("readonly", refresh=True) == []


@pytest.mark.parametrize("name", ["../other/x.tar", "/etc/passwd", "s3://elsewhere/x.tar", "a/../../x"])
def test_a_folder_names_no_file_outside_its_own_prefix(s3, name):
    from ptcommon.cli import InputError
    from ptcommon.storage import Location

    with pytest.raises(InputError, match="not a file inside it"):
        Location("s3://bucket/served", "--shards").child(name)


def test_pseudo_to_s3_gives_the_local_bytes(s3, tiny_model, classifier, target, tmp_path):
    args = ["pseudo", "--model", tiny_model, "--classifier", classifier, "--target", target, "--per-target", 4,
            "--shard-size", 5, "--quiet"]
    here = tmp_path / "pseudo"
    for out in (here, "s3://bucket/pseudo"):
        result = CliRunner().invoke(ptgen, [str(a) for a in [*args, "--out", out]])
        assert result.exit_code == 0, result.output
    remote = objects(s3, "bucket/pseudo")
    mine = {p.name: p.read_bytes() for p in here.iterdir() if p.is_file()}
    assert {n for n in mine if n.endswith(".tar")} == {n for n in remote if n.endswith(".tar")} != set()
    for name in [n for n in mine if n.endswith((".tar", ".parquet", ".safetensors"))]:
        assert remote[name] == mine[name], name


def test_only_the_first_upload_of_a_name_lands(s3):
    from ptcommon.storage import Location

    folder = Location("s3://bucket/exclusive", "--out")
    assert folder.create_bytes("f", b"first") and not folder.create_bytes("f", b"second")
    assert folder.read_bytes("f") == b"first"


def test_a_rank_conditions_on_the_soft_labels_the_bucket_kept(s3, tmp_path):
    """Ranks upload their soft labels unless the folder has them: a rank whose upload another's
    came before (its own computation rounding differently, say) takes the folder's copy."""
    from safetensors.torch import save_file

    from generate.soft_labels import SoftLabels, shared_soft_labels
    from ptcommon.cli import InputError
    from ptcommon.shards import SOFT_LABELS_FILE
    from ptcommon.storage import Location

    key = {"classifier_sha256": "c", "temperature": 1.0}
    mine = SoftLabels(torch.tensor([[0.25, 0.75]]), torch.tensor([0.75]))
    theirs = {"probs": torch.tensor([[0.5, 0.5]]), "confidence": torch.tensor([0.5])}
    first = tmp_path / "first.safetensors"
    save_file(theirs, str(first), metadata={"key": json.dumps(key, sort_keys=True)})
    out = Location("s3://bucket/labels", "--out")
    out.write_bytes(SOFT_LABELS_FILE, first.read_bytes())  # the other rank's, uploaded first
    staging = tmp_path / "staging"
    staging.mkdir()
    labels = shared_soft_labels(out, staging, key, lambda: mine)
    assert torch.equal(labels.probs, theirs["probs"]) and torch.equal(labels.confidence, theirs["confidence"])
    assert (staging / SOFT_LABELS_FILE).read_bytes() == out.read_bytes(SOFT_LABELS_FILE) == first.read_bytes()

    other_key = tmp_path / "other.safetensors"  # another run's, with other settings: refused
    save_file(theirs, str(other_key), metadata={"key": json.dumps({**key, "temperature": 2.0}, sort_keys=True)})
    clash = Location("s3://bucket/labels-clash", "--out")
    clash.write_bytes(SOFT_LABELS_FILE, other_key.read_bytes())
    (tmp_path / "clash").mkdir()
    with pytest.raises(InputError, match="another run wrote its soft_labels.safetensors meanwhile"):
        shared_soft_labels(clash, tmp_path / "clash", key, lambda: mine)

    alone = Location("s3://bucket/labels-alone", "--out")  # the first rank: its own, uploaded
    (tmp_path / "alone").mkdir()
    labels = shared_soft_labels(alone, tmp_path / "alone", key, lambda: mine)
    assert torch.equal(labels.probs, mine.probs)
    assert alone.read_bytes(SOFT_LABELS_FILE) == (tmp_path / "alone" / SOFT_LABELS_FILE).read_bytes()
