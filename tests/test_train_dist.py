"""Several processes: a run started as a 2-task srun step (gloo, on CPU) is one DDP run, and resumes on
1 process with the same global batch; the run folder belongs to one job at a time."""

import json
import multiprocessing
import os
import random
import shutil
import socket

import pytest
import torch

import two_ranks
from two_ranks import free_job_id, srun_task
from train.cli import main as pttrain
from train.runs import LOCK_FILE, RunLock
from train.trainer import Trainer

EPOCHS = 6


def finetune(target, out, *extra):
    return two_ranks.finetune(target, out, EPOCHS, *extra)


def srun_task_until(rank: int, world: int, job: int, args: list[str], stop: int) -> None:
    """Task RANK of a WORLD-task srun step on one node running ARGS, stopped (as if the job were killed)
    after step STOP's checkpoint. No MASTER_ADDR/PORT: the launcher derives them."""
    for name in [n for n in os.environ if n.startswith("SLURM_") or n in ("RANK", "WORLD_SIZE", "MASTER_ADDR",
                                                                         "MASTER_PORT", "LOCAL_RANK")]:
        del os.environ[name]
    os.environ.update(srun_task(rank, world, job), OMP_NUM_THREADS="1")
    checkpoint = Trainer._checkpoint

    def interrupt(self):
        checkpoint(self)
        if self.step == stop:
            raise KeyboardInterrupt

    Trainer._checkpoint = interrupt
    try:
        pttrain.main(args, standalone_mode=False)
    except KeyboardInterrupt:
        pass


@pytest.fixture(scope="module")
def started_on_two(validated, tmp_path_factory):
    """A finetune run on 2 processes, stopped after step 3 of 6."""
    out = tmp_path_factory.mktemp("dist") / "run"
    spawn = multiprocessing.get_context("spawn")
    job = free_job_id(random.randrange(20000))
    procs = [spawn.Process(target=srun_task_until, args=(r, 2, job, finetune(validated, out), 3)) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(240)
    assert [p.exitcode for p in procs] == [0, 0]
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert (state["step"], state["world_size"], state["launcher"], state["global_batch"]) == (3, 2, "slurm", 4)
    return out


def test_a_run_started_on_two_processes_resumes_on_one(cli, validated, started_on_two, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(started_on_two, out)
    result = cli(pttrain, [*finetune(validated, out), "--resume", "--tensorboard"])
    assert result.exit_code == 0, result.output + result.stderr
    record = json.loads((out / "train.json").read_text())
    assert (record["world_size"], record["launcher"], record["global_batch"]) == (1, "none", 4)
    assert record["settings"]["accum_steps"] == 2 and record["samples_seen"] == 6 * 4
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in rows if "loss" in r]
    assert steps == list(range(1, 7))  # 1-3 on two processes, 4-6 on one
    assert all(r["images_per_s"] > 0 and 0 <= r["data_wait"] <= 1 for r in rows if "loss" in r)
    # The one validation image, scored after every epoch: after epochs 1 and 2 on two processes by the
    # rank whose slice holds it (the stop came before epoch 3's), then on one; the test image at the end.
    assert [(r["step"], r["val_n"]) for r in rows if "val_n" in r] == [(1, 1), (2, 1), (4, 1), (5, 1), (6, 1)]
    assert record["test_n"] == 1
    assert not (out / LOCK_FILE).exists()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "tensorboard")).Reload()
    assert [e.step for e in events.Scalars("loss")] == [4, 5, 6] and "images_per_s" in events.Tags()["scalars"]


@pytest.mark.parametrize("extra, expected", [
    (["--accum-steps", "1"], "--batch-size 2 x 1 process(es) x --accum-steps 1 cannot keep it; on 1 process(es) "
                             "keep it with --batch-size 4 --accum-steps 1, --batch-size 2 --accum-steps 2, "
                             "--batch-size 1 --accum-steps 4"),
    (["--batch-size", "3"], "the run's global batch is 4 samples a step and --batch-size 3 x 1 process(es)"),
])
def test_a_resume_that_cannot_keep_the_global_batch_is_refused(cli, validated, started_on_two, tmp_path, extra,
                                                               expected):
    out = tmp_path / "run"
    shutil.copytree(started_on_two, out)
    before = sorted(p.name for p in out.iterdir())
    result = cli(pttrain, [*finetune(validated, out), "--resume", *extra])
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.stderr
    assert sorted(p.name for p in out.iterdir()) == before  # nothing written, no lock left behind


def test_a_second_job_on_a_run_folder_in_use_is_refused(cli, target, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    holder = RunLock(out)
    holder.acquire()  # the first job, running
    try:
        result = cli(pttrain, finetune(target, out))
        assert result.exit_code != 0
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and f"--out {out}: is in use by another job (pid {os.getpid()} on" in lines[0]
        assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]
    finally:
        holder.release()


def test_a_killed_jobs_forked_children_do_not_hold_its_lock(tmp_path):
    import signal
    import subprocess
    import sys

    # A job that took the lock, then forked a child that outlives it (as DataLoader workers do).
    job = subprocess.Popen([sys.executable, "-c", (
        "import os, sys, time\n"
        "from pathlib import Path\n"
        "from train.runs import RunLock\n"
        f"RunLock(Path({str(tmp_path)!r})).acquire()\n"
        "child = os.fork()\n"
        "if child == 0:\n"
        "    time.sleep(30); os._exit(0)\n"
        "print(child, flush=True); time.sleep(60)\n")], stdout=subprocess.PIPE, text=True)
    child = int(job.stdout.readline())
    try:
        job.send_signal(signal.SIGKILL)
        job.wait()
        RunLock(tmp_path).acquire()  # at once, while the child still lives
    finally:
        os.kill(child, signal.SIGKILL)


def test_the_lock_file_of_a_killed_job_does_not_block_its_folder(cli, target, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    # What a killed job leaves: the file naming it, with no process holding the lock.
    (out / LOCK_FILE).write_text(json.dumps({"pid": 999999, "host": socket.gethostname(), "since": "then"}))
    result = cli(pttrain, finetune(target, out, "--epochs", "2"))
    assert result.exit_code == 0, result.output + result.stderr
    assert (out / "model.safetensors").exists() and not (out / LOCK_FILE).exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
@pytest.mark.parametrize("command", ["eval", "finetune"])
def test_device_cuda_without_a_gpu_is_one_line(cli, target, tmp_path, command):
    args = (["eval", "--run", "builtin:glyphs-1k", "--data", target] if command == "eval"
            else finetune(target, tmp_path / "run"))
    result = cli(pttrain, [*args, "--device", "cuda"])
    assert result.exit_code != 0 and result.stderr.strip() == (
        "pttrain: error: --device cuda: no GPU is visible to this process; pass --device cpu")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("amp, recorded", [("auto", "off"), ("bf16", "bf16"), ("fp16", "fp16")])
def test_amp_is_recorded_and_fp16_trains_with_a_scaler(cli, target, tmp_path, amp, recorded):
    out = tmp_path / "run"
    result = cli(pttrain, [*finetune(target, out, "--epochs", "2", "--accum-steps", "2"), "--amp", amp])
    assert result.exit_code == 0, result.output + result.stderr
    record = json.loads((out / "train.json").read_text())
    assert record["amp"] == recorded and record["global_batch"] == 4  # auto: off on CPU, fp32
    if amp == "fp16":
        assert torch.load(out / "checkpoint.pt", weights_only=True)["scaler"] is not None


def test_slurm_variables_that_disagree_stop_the_run_in_one_line(cli, target, tmp_path, monkeypatch):
    for name in [n for n in os.environ if n.startswith("SLURM_") or n in ("RANK", "WORLD_SIZE")]:
        monkeypatch.delenv(name)
    for name, value in (("SLURM_STEP_ID", "0"), ("SLURM_PROCID", "2"), ("SLURM_STEP_NUM_TASKS", "2")):
        monkeypatch.setenv(name, value)
    result = cli(pttrain, finetune(target, tmp_path / "run"))
    assert result.exit_code != 0 and result.stderr.strip() == (
        "pttrain: error: SLURM's variables disagree: SLURM_PROCID 2 is not below the step's 2 tasks; launch with "
        "srun inside the allocation (or unset the SLURM_* variables to run one process)")
    assert not (tmp_path / "run").exists()


def test_a_file_system_without_locks_runs_unlocked_and_says_so(cli, target, tmp_path, monkeypatch):
    import errno
    import fcntl

    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    out = tmp_path / "run"
    result = cli(pttrain, finetune(target, out, "--epochs", "2"))
    assert result.exit_code == 0, result.output + result.stderr
    assert f"warning: --out {out}: this file system takes no locks (No locks available)" in result.stderr
    assert (out / "model.safetensors").exists() and not (out / LOCK_FILE).exists()
