"""What the multi-process tests share: a tiny finetune on 2 processes, and the variables srun gives
each task of a 2-task step on one node."""

from __future__ import annotations

import socket

from ptcommon.launcher import PORT_BASE

FAST = ["--arch", "test_resnet", "--img-size", "16", "--min-steps", "0", "--quiet", "--workers", "0"]


def finetune(data, out, epochs: int, *extra) -> list[str]:
    """3 training images in batches of 2 on each of 2 processes: a global batch of 4, one step an
    epoch; a checkpoint (and the logged means' collective) after every step."""
    return ["finetune", "--data", str(data), "--init", "none", "--epochs", str(epochs), "--batch-size", "2",
            "--checkpoint-every", "1", "--out", str(out), *FAST, *extra]


def free_job_id(start: int = 0) -> int:
    """A SLURM job id whose master port (ptcommon/launcher.py derives it from the id) is free here."""
    for job in range(start % 997, 20000, 997):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", PORT_BASE + job))
                return job
            except OSError:
                continue
    raise RuntimeError("no free port")


def srun_task(rank: int, world: int, job: int) -> dict[str, str]:
    """The SLURM variables of task RANK of a WORLD-task srun step on one node (no MASTER_ADDR/PORT:
    the launcher derives them from the job id)."""
    return dict(SLURM_STEP_ID="0", SLURM_PROCID=str(rank), SLURM_LOCALID=str(rank), SLURM_NODEID="0",
                SLURM_STEP_NUM_TASKS=str(world), SLURM_STEP_TASKS_PER_NODE=str(world),
                SLURM_STEP_NODELIST="localhost", SLURM_JOB_ID=str(job))
