"""The writing side: bad output locations, a full disk and runaway sizes each cost one line."""

import errno
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from conftest import ROOT
from generate import jobs as generation_jobs
from generate.cli import main as ptgen
from train.cli import main as pttrain

TRAIN = ["--arch", "test_resnet", "--epochs", "1", "--min-steps", "0", "--batch-size", "4", "--img-size", "16", "--quiet"]


def writing_commands(fx, out):
    """Every command that writes, with `out` where its output goes."""
    return {
        "synth": (ptgen, ["synth", "--model", fx["tiny_model"], "--classes", 2, "--per-class", 1, "--out", out]),
        "pseudo": (ptgen, ["pseudo", "--model", fx["tiny_model"], "--classifier", fx["classifier"], "--target",
                           fx["target"], "--out", out]),
        "inspect --grid": (ptgen, ["inspect", fx["labeled_shards"], "--grid", out]),
        "pp": (pttrain, ["pp", "--shards", fx["labeled_shards"], "--out", out, *TRAIN]),
        "finetune": (pttrain, ["finetune", "--data", fx["target"], "--init", "none", "--out", out, *TRAIN]),
        "pssl": (pttrain, ["pssl", "--data", fx["target"], "--unlabeled", fx["pseudo_shards"], "--init", "none",
                           "--out", out, *TRAIN]),
        "kd": (pttrain, ["kd", "--data", fx["target"], "--teacher", fx["classifier"], "--out", out, *TRAIN]),
        "eval --json": (pttrain, ["eval", "--run", fx["classifier"], "--data", fx["target"], "--json", out]),
        "data digits": (pttrain, ["data", "digits", "--out", out]),
    }


COMMANDS = list(writing_commands({k: "x" for k in ("tiny_model", "classifier", "target", "labeled_shards",
                                                    "pseudo_shards")}, "x"))


@pytest.fixture()
def fx(tiny_model, classifier, target, labeled_shards, pseudo_shards):
    return {"tiny_model": tiny_model, "classifier": classifier, "target": target, "labeled_shards": labeled_shards,
            "pseudo_shards": pseudo_shards}


def one_line(result) -> str:
    """A refusal before any work: the whole of stderr is one line."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.stderr
    return lines[0]


def error_line(result) -> str:
    """A stop during the work: after the start lines, one error line and no traceback."""
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "Traceback" not in result.output, result.stderr
    return errors[0]


@pytest.mark.parametrize("name", COMMANDS)
def test_an_output_under_a_file_is_refused_by_name(name, fx, cli, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("mine")
    out = blocker / "out"
    command, args = writing_commands(fx, out)[name]
    line = one_line(cli(command, args))
    assert f"{out}: cannot be created: {blocker} is a file, not a folder" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


@pytest.mark.parametrize("name", COMMANDS)
def test_a_location_that_takes_no_writes_is_refused(name, fx, cli, tmp_path):
    out = Path("/proc/ptgen-test/out.png" if name in ("inspect --grid", "eval --json") else "/proc/ptgen-test")
    command, args = writing_commands(fx, out)[name]
    line = one_line(cli(command, args))
    assert f"{out}: cannot write in /proc" in line
    assert not out.exists()


@pytest.mark.parametrize("name", ["synth", "pp", "data digits", "eval --json"])
def test_a_read_only_mount_is_refused_even_as_root(name, fx, cli, tmp_path, monkeypatch):
    """Permission bits cannot tell (root passes them); the probe write does. The failure a read-only
    mount gives is what the probe sees here."""
    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(tempfile, "mkdtemp", read_only)
    out = tmp_path / "mount" / ("out.json" if name == "eval --json" else "out")
    command, args = writing_commands(fx, out)[name]
    line = one_line(cli(command, args))
    assert f"{out}: cannot write in {tmp_path} (Read-only file system)" in line
    assert not (tmp_path / "mount").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root passes permission bits")
def test_a_folder_without_write_permission_is_refused(fx, cli, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    line = one_line(cli(ptgen, ["synth", "--model", fx["tiny_model"], "--out", locked / "out"]))
    assert f"cannot write in {locked} (Permission denied)" in line


def test_a_full_disk_stops_synth_in_one_line_and_the_rerun_resumes(tiny_model, cli, tmp_path, monkeypatch):
    import generate.writer as writer

    args = ["synth", "--model", tiny_model, "--classes", 3, "--per-class", 4, "--shard-size", 4, "--quiet"]
    assert cli(ptgen, [*args, "--out", tmp_path / "whole"]).exit_code == 0

    real_fsync, calls = writer.os.fsync, []

    def fsync_fills_the_disk(fd):
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(writer.os, "fsync", fsync_fills_the_disk)
    out = tmp_path / "out"
    line = error_line(cli(ptgen, [*args, "--out", out]))
    assert f"--out {out}: no space left on the device while writing its shards" in line
    assert "the rest of the job needs about" in line and "rerun the same command" in line
    names = sorted(p.name for p in out.iterdir())
    assert "synth-000000.tar" in names and "synth-000001.tar" not in names
    assert not [n for n in names if n.endswith(".tmp")]  # no partial shard, visible or hidden

    monkeypatch.setattr(writer.os, "fsync", real_fsync)
    result = cli(ptgen, [*args, "--out", out])
    assert result.exit_code == 0 and "(1 already done)" in result.output
    for shard in sorted((tmp_path / "whole").glob("*.tar")):
        assert (out / shard.name).read_bytes() == shard.read_bytes()


def test_a_full_disk_at_a_checkpoint_stops_training_in_error_line(target, cli, tmp_path, monkeypatch):
    import torch

    def save_fills_the_disk(obj, f, *a, **kw):
        Path(f).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", save_fills_the_disk)
    run = tmp_path / "run"
    line = error_line(cli(pttrain, ["finetune", "--data", target, "--init", "none", "--out", run, *TRAIN]))
    assert f"--out {run}: no space left on the device while writing checkpoint.pt" in line
    assert not [p.name for p in run.iterdir() if "checkpoint" in p.name or p.name.endswith(".tmp")]
    assert not (run / "model.safetensors").exists()


def test_a_full_disk_at_the_final_weights_leaves_no_finished_looking_run(target, cli, tmp_path, monkeypatch):
    import train.models

    def save_fills_the_disk(state, path):
        Path(path).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(train.models, "save_file", save_fills_the_disk)
    run = tmp_path / "run"
    line = error_line(cli(pttrain, ["finetune", "--data", target, "--init", "none", "--out", run, *TRAIN]))
    assert "no space left on the device while writing model.safetensors" in line
    assert not (run / "model.safetensors").exists() and (run / "checkpoint.pt").exists()
    monkeypatch.undo()
    assert cli(pttrain, ["finetune", "--data", target, "--init", "none", "--out", run, "--resume", *TRAIN]).exit_code == 0
    assert (run / "model.safetensors").exists()


def test_a_runaway_size_waits_for_yes_and_writes_nothing(cli, tmp_path):
    out = tmp_path / "big"
    line = one_line(cli(ptgen, ["synth", "--classes", 1000, "--per-class", 10**8, "--out", out]))
    assert "this job writes 100,000,000,000 images, up to 409.6 TB" in line and "--yes" in line
    assert not out.exists()


def test_a_runaway_duration_stops_after_the_first_batch(tiny_model, cli, tmp_path, monkeypatch):
    monkeypatch.setattr(generation_jobs, "CONFIRM_SECONDS", 1)
    out = tmp_path / "long"
    result = cli(ptgen, ["synth", "--model", tiny_model, "--per-class", 10**5, "--batch-size", 8, "--out", out])
    line = error_line(result)
    assert "at the first batch's" in line and "remaining images take" in line and "--yes" in line
    assert not list(out.glob("*.tar")) and not list(out.glob(".*.tmp"))


def test_a_huge_plan_starts_its_first_shard_within_seconds(tiny_model, tmp_path):
    """10^11 images with --yes: the plan is lazy, so the first shard is being written at once."""
    out = tmp_path / "huge"
    cmd = [sys.executable, "-m", "generate", "synth", "--model", str(tiny_model), "--per-class", str(2 * 10**10),
           "--out", str(out), "--yes", "--quiet"]
    started = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while not (out / ".synth-000000.tar.tmp").exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() - started < 60, "no shard started within 60 s"
            time.sleep(0.2)
    finally:
        proc.kill()
        _, err = proc.communicate()
    assert "100,000,000,000 images" in err and "100,000,000 shards" in err and "TB on disk" in err


@pytest.mark.parametrize("name", ["synth", "pp", "data digits"])
def test_a_file_where_the_output_folder_should_be_is_refused(name, fx, cli, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("mine")
    command, args = writing_commands(fx, blocker)[name]
    line = one_line(cli(command, args))
    assert "--out" in line and str(blocker) in line and "is a file" in line
    assert blocker.read_text() == "mine"


def test_an_aborted_shard_leaves_no_temporary_file_even_when_closing_fails(tmp_path):
    from generate.writer import SampleRecord, ShardWriter, sample_bytes

    writer = ShardWriter(tmp_path / "synth-000000.tar")
    writer.write(sample_bytes(SampleRecord("000000000", 1, {}), "png", b"png bytes"))

    def full(*args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    writer._file.close = full  # the flush on close fails again, as on a full disk
    writer.abort()
    assert list(tmp_path.iterdir()) == []
