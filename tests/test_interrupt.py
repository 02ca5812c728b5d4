"""A Ctrl-C stops a multi-process run with a plain exit (130, or the launcher's own code), never a C++
abort, even on loaded cores; it leaves the checkpoint (or the finished shards) intact and nothing
running at interpreter exit; and the run then goes on to its end with --resume (a rerun, for ptgen).

Each rank runs under tests/rank_at_exit.py, which reports the threads still alive when the
interpreter is about to finalize: a thread running torch code then (gloo's workers, the shard
writer) is what aborts a process at exit, and only sometimes, so the report is checked on every run."""

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from conftest import ROOT
import two_ranks
from rank_at_exit import MARK
from two_ranks import free_job_id, srun_task
from train.cli import main as pttrain
from train.runs import CHECKPOINT_FILE, LOCK_FILE

pytestmark = pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads threads from /proc (Linux)")

RANK = [sys.executable, str(ROOT / "tests" / "rank_at_exit.py")]
EPOCHS = 16  # one step each: enough that an interrupt lands mid-run, few enough to finish on resume
LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
# Native threads that may not outlive a command: gloo's workers and transport loop, the TCP store's.
GROUP_THREADS = ("pt_gloo", "gloo", "pt_tcpstore")
# Python threads that may: tqdm's monitor (a library's progress bar starts it), which only sleeps and
# looks at its bars, in Python.
IDLE_THREADS = {"tqdm_monitor"}
ABORT_SIGNS = ("terminate called", "Signal 6", "SIGABRT", "core dumped")


def finetune(data, out, *extra):
    return two_ranks.finetune(data, out, EPOCHS, *extra)


def clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "TORCHELASTIC_"))
           and k not in LAUNCH_VARIABLES}
    return {**env, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **extra}


class Launched:
    """A process started in a session of its own, as a terminal runs a job: its children (ranks,
    DataLoader workers) share its process group, which is what a Ctrl-C signals."""

    def __init__(self, args, log: Path, env: dict):
        self.log = log
        with open(log, "w") as err:
            self.proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err,
                                         start_new_session=True)

    def ctrl_c(self) -> None:
        os.killpg(self.proc.pid, signal.SIGINT)

    def wait(self) -> int:
        try:
            return self.proc.wait(120)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            pytest.fail(f"still running 120 s after its interrupt:\n{self.stderr[-3000:]}")

    @property
    def stderr(self) -> str:
        return self.log.read_text()


@contextmanager
def loaded_cores():
    """Every core this process may use kept busy: the ranks stop on a machine with no time to spare,
    where a thread of theirs may run late."""
    cores = len(os.sched_getaffinity(0))
    loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(cores)]
    try:
        yield
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()


def wait_until(ready, launched: list[Launched], what: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        for one in launched:
            if one.proc.poll() is not None:
                pytest.fail(f"ended (exit {one.proc.returncode}) before {what}:\n{one.stderr[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} after {timeout:.0f} s")
        time.sleep(0.02)


def interrupt(launched: list[Launched], ready, what: str) -> list[int]:
    """Ctrl-C every one of LAUNCHED once READY, on loaded cores; their exit codes."""
    wait_until(ready, launched, what)
    with loaded_cores():
        for one in launched:
            one.ctrl_c()
        return [one.wait() for one in launched]


def assert_stopped_cleanly(stderr: str, ranks: int, prog: str) -> None:
    """Every rank said it was interrupted, none aborted, and none left a thread at interpreter exit."""
    assert not any(sign in stderr for sign in ABORT_SIGNS), stderr[-4000:]
    assert stderr.count(f"{prog}: interrupted") == ranks, stderr[-4000:]
    reports = [line for line in stderr.splitlines() if line.startswith(MARK)]
    assert len(reports) == ranks, stderr[-4000:]
    for line in reports:
        native, python = line[len(MARK):].split(" python ")
        assert not [n for n in native.split()[1].split(",") if n.startswith(GROUP_THREADS)], line
        assert set(python.strip().split(",")) <= {"-", *IDLE_THREADS}, line


def checkpoint_step(run: Path) -> int:
    """The step of the run's checkpoint, which must load; no temporary file of one is left beside it."""
    state = torch.load(run / CHECKPOINT_FILE, weights_only=True)
    assert not list(run.glob(f".{CHECKPOINT_FILE}.*")), sorted(p.name for p in run.iterdir())
    assert not (run / LOCK_FILE).exists()
    return state["step"]


def has_checkpoint(run: Path):
    return lambda: (run / CHECKPOINT_FILE).exists()


def resume_to_the_end(cli, data, run: Path, stopped_at: int) -> None:
    """A run stopped part-way goes on with --resume on one process (its global batch kept by
    accumulation) to its last step."""
    assert 0 < stopped_at < EPOCHS
    result = cli(pttrain, [*finetune(data, run), "--resume"])
    assert result.exit_code == 0, result.output + result.stderr
    assert (run / "model.safetensors").exists()
    state = torch.load(run / CHECKPOINT_FILE, weights_only=True)
    assert state["step"] == EPOCHS and state["samples_seen"] == EPOCHS * 4


def torchrun(args: list[str]) -> list[str]:
    # --standalone: a free port of torchrun's choosing.
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *RANK[1:],
            *args]


def test_ctrl_c_stops_a_torchrun_run_and_it_resumes(cli, validated, tmp_path):
    run = tmp_path / "run"
    launched = Launched(torchrun(["train", *finetune(validated, run)]), tmp_path / "torchrun.log", clean_env())
    code, = interrupt([launched], has_checkpoint(run), "a checkpoint")
    # torchrun forwards the Ctrl-C to its ranks and ends with an exit code of its own, not by a signal.
    assert code > 0, launched.stderr[-4000:]
    assert_stopped_cleanly(launched.stderr, 2, "pttrain")
    resume_to_the_end(cli, validated, run, checkpoint_step(run))


def srun_step(args: list[str], log_dir: Path, name: str) -> list[Launched]:
    """The two tasks of an srun step on one node, as srun starts them: SLURM's variables, no torchrun's."""
    job = free_job_id(os.getpid())
    return [Launched([*RANK, *args], log_dir / f"{name}{rank}.log", clean_env(**srun_task(rank, 2, job)))
            for rank in range(2)]


def test_ctrl_c_stops_an_srun_step_with_loader_workers_and_it_resumes(cli, validated, tmp_path):
    run = tmp_path / "run"
    # One DataLoader worker a rank: a forked process, which the Ctrl-C reaches too. The checkpoint that
    # lets the interrupt go comes just before the first validation, whose loader forks its worker then.
    tasks = srun_step(["train", *finetune(validated, run), "--workers", "1"], tmp_path, "task")
    codes = interrupt(tasks, has_checkpoint(run), "a checkpoint")
    assert codes == [130, 130], "\n".join(t.stderr[-2000:] for t in tasks)
    for task in tasks:
        assert_stopped_cleanly(task.stderr, 1, "pttrain")
    resume_to_the_end(cli, validated, run, checkpoint_step(run))


SYNTH = ["--per-class", "8", "--shard-size", "6", "--batch-size", "4", "--dtype", "fp32", "--quiet"]  # 7 shards


def test_ctrl_c_stops_two_synth_ranks_and_a_rerun_gives_the_uninterrupted_bytes(cli, tiny_model, tmp_path):
    from generate.cli import main as ptgen

    def synth(out, *extra):
        # Sixteen sampling steps slow the ranks enough to stop them part-way.
        return ["synth", "--model", str(tiny_model), "--out", str(out), *SYNTH, "--steps", "16", *extra]

    reference = tmp_path / "reference"
    assert cli(ptgen, synth(reference)).exit_code == 0
    out = tmp_path / "shards"
    ranks = [Launched([*RANK, "generate", *synth(out, "--rank", str(r), "--world", "2")], tmp_path / f"synth{r}.log",
                      clean_env()) for r in range(2)]
    codes = interrupt(ranks, lambda: any(out.glob("synth-*.tar")), "a finished shard")
    assert codes == [130, 130], "\n".join(r.stderr[-2000:] for r in ranks)
    for rank in ranks:
        assert_stopped_cleanly(rank.stderr, 1, "ptgen")
    assert len(list(out.glob("synth-*.tar"))) < 7 and not (out / "manifest.parquet").exists()
    assert not list(out.glob(".*.tmp"))  # the shard being written went with the stop
    for rank in (1, 0):
        result = cli(ptgen, synth(out, "--rank", str(rank), "--world", "2"))
        assert result.exit_code == 0, result.output
    assert "folder complete" in result.output
    files = sorted(p.name for p in reference.iterdir() if p.is_file())
    assert sorted(p.name for p in out.iterdir() if p.is_file()) == files
    for name in files:
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name


DEMO = '''
import os, signal, sys, time
import click
from ptcommon.cli import Group

signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, wherever the tests run

@click.group(cls=Group, name="demo")
def main():
    pass

@main.command()
def fork():
    """A Ctrl-C that Python handles in a fork hook (DataLoader workers fork), where it can only be dropped."""
    def hook():
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(100):
            pass
    os.register_at_fork(after_in_parent=hook)
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    time.sleep(5)
    print("ran on")

@main.command()
def twice():
    """A Ctrl-C, then the launcher's copy of it while the command stops."""
    try:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)
        print("ran on")
    finally:
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(100):
            time.sleep(0.001)
        print("stopped", flush=True)

main()
'''


@pytest.mark.parametrize("command, out", [("fork", ""), ("twice", "stopped\n")])
def test_a_ctrl_c_is_neither_dropped_nor_repeated(tmp_path, command, out):
    script = tmp_path / "demo.py"
    script.write_text(DEMO)
    proc = subprocess.run([sys.executable, str(script), command], cwd=ROOT, capture_output=True, text=True,
                          env=clean_env(), timeout=60)
    assert (proc.returncode, proc.stdout) == (130, out), proc.stderr
    assert proc.stderr.strip() == "demo: interrupted"


def test_a_command_in_process_leaves_the_interrupt_handling_as_it_found_it(cli):
    handler, hook = signal.getsignal(signal.SIGINT), sys.unraisablehook
    assert cli(pttrain, ["--version"]).exit_code == 0
    assert signal.getsignal(signal.SIGINT) is handler and sys.unraisablehook is hook
